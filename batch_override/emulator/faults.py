"""Deterministic fault injection: the same seed gives the same faults, in any request order.

Each eligible request (past auth, throttle and validation) draws ``u`` in [0, 1) from a hash of
``(seed, media, attempt, hash)``, where ``attempt`` counts earlier eligible requests for that
``(media, hash)``. Because the draw depends on what is asked and how often, not on when or in what
order, a concurrent client meets the same faults on every run: a chaos test that fails can be
replayed. The bands of ``u`` are consecutive::

    [0, fail)                          -> FAIL: a 500, 502 or 503 (which one is also drawn)
    [fail, fail+drop)                  -> DROP: connection closed, nothing recorded
    [fail+drop, fail+drop+after)       -> DROP_AFTER_RECORD: the override is applied, then the
                                          connection is closed without a response
    the rest                           -> NONE

The trap DROP_AFTER_RECORD models: the client cannot tell it from DROP, so it must retry, and the
retry is answered "already submitted" — which the client has to treat as success.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

_DRAW_SCALE = float(1 << 64)


class Fault(enum.Enum):
    NONE = "none"
    FAIL = "fail"
    DROP = "drop"
    DROP_AFTER_RECORD = "drop_after_record"


class Failure(enum.Enum):
    """Which 5xx a FAIL answers: Laravel's own 500, its maintenance 503, or a proxy's HTML 502."""

    SERVER_ERROR = 500
    BAD_GATEWAY = 502
    SERVICE_UNAVAILABLE = 503


_FAILURES = tuple(Failure)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Decides the fault of one request; pure, so it holds no counters (the caller counts attempts)."""

    seed: int = 0
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    drop_after_record_rate: float = 0.0

    @property
    def active(self) -> bool:
        """False when no fault can happen, so the server can skip hashing altogether."""
        return self.fail_rate + self.drop_rate + self.drop_after_record_rate > 0

    def decide(self, media: str, content_hash: str, attempt: int) -> tuple[Fault, Failure]:
        """The fault for the ``attempt``-th (from 0) eligible request for ``(media, content_hash)``.

        The ``Failure`` is meaningful only with ``Fault.FAIL``.
        """
        # attempt sits before the hash, the only free-form part, so no two inputs share an encoding.
        digest = hashlib.blake2b(
            f"{self.seed}\0{media}\0{attempt}\0{content_hash}".encode("utf-8", "surrogatepass"),
            digest_size=16,
        ).digest()
        u = int.from_bytes(digest[:8], "big") / _DRAW_SCALE
        failure = _FAILURES[int.from_bytes(digest[8:], "big") % len(_FAILURES)]
        if u < self.fail_rate:
            return Fault.FAIL, failure
        u -= self.fail_rate
        if u < self.drop_rate:
            return Fault.DROP, failure
        u -= self.drop_rate
        if u < self.drop_after_record_rate:
            return Fault.DROP_AFTER_RECORD, failure
        return Fault.NONE, failure

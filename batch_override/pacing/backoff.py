"""The one backoff: how long to wait before the ``n``-th try again, for retries, outage probes and
429s that say nothing of when to come back.

:class:`Backoff` is an immutable policy value (urllib3's ``Retry``, tenacity's ``wait_*``): ``base``
seconds doubling per try up to ``cap``, with one jitter rule, *equal jitter* (AWS, "Exponential
Backoff And Jitter"): a delay drawn evenly from the upper half, ``[ceiling/2, ceiling]``.  Why not
full jitter (``[0, ceiling]``), which spreads a herd best: a retry a few milliseconds after a 5xx
or a timeout meets the same trouble and spends one of the row's ``--max-retries`` for nothing; the
floor keeps every wait at least half its step while the other half still breaks up senders that
failed together.

The trap: :meth:`ceiling` is the unjittered step.  The pacer holds *every* sender until one
deadline on a bare 429, so it has no herd of its own to spread and waits the whole step (a shorter
wait would only invite the next 429).  The exponent stops growing at 60, so a long outage never
overflows a float.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """``base`` seconds, doubling per try, never over ``cap``; ``rng`` draws the jitter (inject a
    seeded one in tests; it takes no part in equality)."""

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def ceiling(self, n: int) -> float:
        """The unjittered wait before try ``n`` (0-based): ``min(cap, base * 2**n)``."""
        return float(min(self.cap, self.base * 2 ** min(max(n, 0), 60)))

    def delay(self, n: int) -> float:
        """The wait before try ``n`` (0-based), with equal jitter: in ``[ceiling/2, ceiling]``."""
        return self.ceiling(n) * self.rng.uniform(0.5, 1.0)

"""The retry decision: what a sender does with a row after each answer (deciding, not doing).

:func:`decide` and :func:`give_up` are pure: the sender performs the step (backoff, wait,
record, stop), so the rules can be tested without a server or a clock.  The trap: a transient
failure during an outage costs the row no retry (the breaker paces everyone then); otherwise a
ten-minute outage would turn every row in flight into ``failed``.
"""

from __future__ import annotations

import dataclasses
import enum
import time

from ..outcome import Action, ErrorCode, Outcome, Verdict


class Step(enum.Enum):
    FINISH = "finish"  # record this answer: the row is done
    BACK_OFF = "back_off"  # wait Backoff.delay(retries - 1), then send again
    AGAIN = "again"  # send again; the pacer or the breaker says when
    STOP = "stop"  # record this answer and stop the run (401, 403, wrong URL...)


def decide(action: Action, *, retries: int, max_retries: int, in_outage: bool) -> tuple[Step, int]:
    """The next step after an answer with ``action``, and the row's retry count after it."""
    if action is Action.RETRY:
        if in_outage:
            return Step.AGAIN, retries
        retries += 1
        return (Step.FINISH if retries > max_retries else Step.BACK_OFF), retries
    if action is Action.THROTTLED:
        return Step.AGAIN, retries
    if action is Action.ABORT:
        return Step.STOP, retries
    return Step.FINISH, retries


def give_up(verdict: Verdict, *, first_seen: float, now: float, days: float | None) -> Verdict:
    """The verdict a finished row is recorded with: ``verdict``, unless it is ``not_ready`` and the
    row's key was first seen (unix time ``first_seen``) over ``days`` before ``now``
    (``--give-up-after``): then ``rejected`` / ``gave_up``, so resume stops sending it.

    The trap: ``first_seen`` is NaN for a key no earlier trusted run ledgered (its first try is
    now), and NaN never counts as old, so a row is never given up on its first run.
    """
    if verdict.outcome is not Outcome.NOT_READY or days is None or not now - first_seen > days * 86400:
        return verdict
    since = time.strftime("%Y-%m-%d", time.gmtime(first_seen))
    message = f"not ready since {since}; gave up after {days:g} days (--give-up-after): {verdict.message}"
    return dataclasses.replace(
        verdict, outcome=Outcome.REJECTED, error_code=ErrorCode.GAVE_UP, message=message
    )

"""The retry decision: what a sender does with a row after each answer (deciding, not doing).

:func:`decide` is pure: the sender performs the step (backoff, wait, record, stop), so the rules
can be tested without a server or a clock.  The trap: a transient failure during an outage costs
the row no retry (the breaker paces everyone then); otherwise a ten-minute outage would turn every
row in flight into ``failed``.
"""

from __future__ import annotations

import enum

from ..outcome import Action


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

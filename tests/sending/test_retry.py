"""The retry decision and the backoff, asked directly."""

from __future__ import annotations

import random

import pytest

from batch_override.outcome import Action
from batch_override.sending.retry import Step, backoff_delay, decide


@pytest.mark.parametrize(
    ("action", "retries", "in_outage", "expected"),
    [
        (Action.DONE, 0, False, (Step.FINISH, 0)),
        (Action.ABORT, 2, False, (Step.STOP, 2)),
        (Action.THROTTLED, 1, False, (Step.AGAIN, 1)),
        (Action.RETRY, 0, False, (Step.BACK_OFF, 1)),
        (Action.RETRY, 2, False, (Step.BACK_OFF, 3)),
        (Action.RETRY, 3, False, (Step.FINISH, 4)),  # max_retries 3 spent
        (Action.RETRY, 3, True, (Step.AGAIN, 3)),  # an outage costs the row no retry
    ],
)
def test_the_retry_decision(
    action: Action, retries: int, in_outage: bool, expected: tuple[Step, int]
) -> None:
    assert decide(action, retries=retries, max_retries=3, in_outage=in_outage) == expected


def test_backoff_doubles_from_base_up_to_the_cap_with_jitter_and_never_overflows() -> None:
    rng = random.Random(7)
    for n, full in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0), (10_000, 30.0)]:
        delay = backoff_delay(n, base=0.5, cap=30.0, rng=rng)
        assert full / 2 <= delay <= full

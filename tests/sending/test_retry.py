"""The retry decision and the backoff, asked directly."""

from __future__ import annotations

import pytest

from batch_override.outcome import Action
from batch_override.sending.retry import Step, decide


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


@pytest.mark.parametrize("action", list(Action))
def test_every_action_has_a_step_and_only_a_transient_failure_spends_a_retry(action: Action) -> None:
    step, retries = decide(action, retries=1, max_retries=5, in_outage=False)
    assert isinstance(step, Step)
    assert retries == (2 if action is Action.RETRY else 1)


def test_an_outage_never_finishes_a_row_however_many_failures_it_sees() -> None:
    # The trap: in an outage each failure would otherwise cost a retry, and a long outage would
    # turn every row in flight into failed.
    retries = 0
    for _ in range(100):
        step, retries = decide(Action.RETRY, retries=retries, max_retries=3, in_outage=True)
        assert step is Step.AGAIN
    assert retries == 0


def test_a_throttled_row_is_sent_again_even_with_its_retries_spent() -> None:
    assert decide(Action.THROTTLED, retries=3, max_retries=3, in_outage=False) == (Step.AGAIN, 3)


def test_max_retries_0_finishes_a_row_at_its_first_transient_failure() -> None:
    assert decide(Action.RETRY, retries=0, max_retries=0, in_outage=False) == (Step.FINISH, 1)

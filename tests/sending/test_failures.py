"""The failure window the senders consult, asked directly."""

from __future__ import annotations

from batch_override.sending.failures import FailureThreshold


def test_a_failure_window_of_zero_judges_each_row_alone_instead_of_dividing_by_zero() -> None:
    window = FailureThreshold(0, 0.5)
    assert window.add(False) is None
    assert window.add(True) is not None


def test_the_failure_window_judges_nothing_until_full_then_the_last_rows_only() -> None:
    window = FailureThreshold(4, 0.5)
    assert [window.add(True) for _ in range(3)] == [None, None, None]
    reason = window.add(True)
    assert reason is not None and "100% of the last 4 rows" in reason
    for _ in range(2):
        window.add(False)
    assert window.add(False) is None  # 1 of the last 4 failed: 25%
    assert window.add(True) is None  # 2 of 4: 50% is not over 0.5


def test_the_oldest_row_leaves_the_window_as_a_new_one_comes() -> None:
    window = FailureThreshold(3, 0.5)
    assert [window.add(f) for f in (False, True, False)] == [None, None, None]  # full at 33%
    reason = window.add(True)  # the first row left: True, False, True -> 67%
    assert reason is not None and reason.startswith("67% of the last 3 rows failed or were rejected")
    assert "--max-failure-rate 0.5" in reason
    assert window.add(False) is None  # False, True, False -> 33%


def test_a_negative_window_is_taken_as_one_row() -> None:
    window = FailureThreshold(-5, 0.0)
    assert window.add(False) is None
    reason = window.add(True)
    assert reason is not None and "of the last 1 rows" in reason

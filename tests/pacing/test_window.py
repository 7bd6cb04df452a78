"""The server's window, learned from answers: the estimate the bounds allow, and where the client
stands in the current window.  Pure: times are plain numbers, no clock, no server."""

from __future__ import annotations

import pytest

from batch_override.pacing.window import DEFAULT_WINDOW, ServerWindow, WindowLearner


def test_before_any_window_ends_the_estimate_is_the_guess_doubled_each_time_it_is_outlived() -> None:
    learner = WindowLearner()
    assert (learner.estimate, learner.known) == (DEFAULT_WINDOW, False)
    seen = []
    for _ in range(6):
        learner.outlived(learner.estimate + 0.5)
        seen.append(learner.estimate)
    assert seen == [120, 240, 480, 960, 1920, 3840]  # an hour window found in six steps
    assert not learner.known


def test_once_a_window_ended_the_estimate_is_the_longest_whole_second_up_to_the_upper_bound() -> None:
    # The docstring's case: a 15 s Laravel window first seen to last between 13.3 and 15 s.
    learner = WindowLearner()
    learner.longer(13.3)
    assert learner.estimate == DEFAULT_WINDOW  # a lower bound alone proves no end
    learner.shorter(15.0)
    assert learner.known
    assert learner.estimate == 15  # not 14: 38 requests a window instead of 36


def test_bounds_only_tighten_so_the_estimate_settles() -> None:
    learner = WindowLearner()
    learner.shorter(16.0)
    learner.longer(14.2)
    assert learner.estimate == 16
    learner.shorter(17.0)  # looser than what is known: ignored
    learner.longer(3.0)
    assert (learner.lo, learner.hi, learner.estimate) == (14.2, 16.0, 16)
    learner.shorter(15.0)
    assert learner.estimate == 15


def test_contradicting_bounds_follow_the_newest_instead_of_getting_stuck() -> None:
    # The trap: the server changed its throttle.  A window longer than the old upper bound
    # forgets that bound; an upper bound under the old lower bound forgets that one.
    learner = WindowLearner()
    learner.shorter(15.0)
    learner.longer(20.0)
    assert (learner.known, learner.estimate) == (False, 21)
    learner.shorter(10.0)
    assert (learner.lo, learner.hi, learner.estimate) == (0.0, 10.0, 10)


def test_a_window_not_in_whole_seconds_gets_the_safe_bound_not_a_second_above_it() -> None:
    learner = WindowLearner()
    learner.shorter(10.0)
    learner.longer(10.5)  # crossed by less than a second: both bounds stand
    assert learner.estimate == 10.5


def test_hold_waits_for_the_openers_answer_then_until_the_window_ends() -> None:
    window = ServerWindow(WindowLearner(guess=10.0))
    window.sent(0, at=0.0)
    assert window.hold(0.0, cap=2, next_seq=1) == 0.0  # under the cap: go now
    window.sent(1, at=0.01)
    assert window.hold(0.01, cap=2, next_seq=2) is None  # the window is dated by its opener's answer
    assert window.counted(0, sent=0.0, counted=1, now=0.1) is False  # no window has ended yet
    assert window.hold(0.1, cap=2, next_seq=2) == pytest.approx(10.0)
    assert window.hold(10.2, cap=2, next_seq=2) == 0.0  # over by the estimate: a new window
    assert window.used == 0


def test_a_count_covers_the_later_sends_still_in_flight_without_counting_them_twice() -> None:
    window = ServerWindow(WindowLearner())
    for seq in range(3):
        window.sent(seq, at=seq / 100)
    window.answered(0)
    window.counted(0, sent=0.0, counted=1, now=0.1)
    assert window.used == 3  # 1 counted, and sends 1 and 2 may be counted yet
    window.answered(1)
    window.counted(1, sent=0.01, counted=2, now=0.11)
    window.answered(2)
    window.counted(2, sent=0.02, counted=3, now=0.12)
    assert window.used == 3  # three sends, three in the window


def test_an_opener_after_the_previous_window_bounds_its_length() -> None:
    learner = WindowLearner()
    window = ServerWindow(learner)
    window.sent(0, at=0.0)
    window.counted(0, sent=0.0, counted=1, now=0.05)
    window.sent(1, at=14.0)
    window.counted(1, sent=14.0, counted=2, now=14.05)  # still counted 13.95 s after the opener's answer
    window.sent(2, at=15.2)
    assert window.counted(2, sent=15.2, counted=1, now=15.25) is True  # the first window seen to end
    assert (learner.lo, learner.hi) == pytest.approx((13.95, 15.25))
    assert learner.estimate == 15

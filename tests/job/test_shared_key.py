"""Sharing the key (issue 17): the server's count is the truth, other traffic's share is left to it.

The real :class:`Pacer` on a virtual clock (``pacer_sim``) against a fixed window that other
traffic shares; judged on the windows after the pacer has learnt the window (the first few go by
at the minute's guess while the count's restarts show the length).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import pytest

from tests.job.pacer_sim import Job, Throttle, bursts, simulate_jobs, steady


def _ours(server: Throttle, skip: int) -> list[int]:
    return [len(w) for w in server.windows[skip:-1]]


@pytest.mark.parametrize(
    ("limit", "decay", "floor", "seconds", "skip"),
    [(100, 1.0, False, 30.0, 10), (40, 15.0, True, 300.0, 4)],
    ids=["1s", "15s-laravel-floor"],
)
def test_a_steady_neighbour_keeps_its_share_and_the_job_takes_the_rest(
    limit: int, decay: float, floor: bool, seconds: float, skip: int
) -> None:
    neighbour = 0.2 * limit / decay  # 20 % of the limit, already running when the job starts
    server = Throttle(limit, decay, floor=floor, other=steady(neighbour, start=-decay * 1.3))
    (run,) = simulate_jobs([Job(sends=10_000)], server, until=seconds)
    free = limit * 0.9 - 0.2 * limit
    ours = _ours(server, skip)
    assert sum(ours) / len(ours) >= 0.85 * free
    assert run.share_429 <= 0.01
    assert server.other_share_429 <= 0.02
    assert max(run.pauses()) <= 3.0


@pytest.mark.parametrize(
    ("limit", "decay", "floor", "seconds", "skip"),
    [(100, 1.0, False, 30.0, 10), (40, 15.0, True, 450.0, 6)],
    ids=["1s", "15s-laravel-floor"],
)
def test_a_bursting_neighbour_leaves_the_rest_of_the_budget_to_the_job(
    limit: int, decay: float, floor: bool, seconds: float, skip: int
) -> None:
    burst = int(0.4 * limit)  # 40 % of the limit at once, each window
    server = Throttle(limit, decay, floor=floor, other=bursts(burst, decay, start=-decay * 1.3))
    (run,) = simulate_jobs([Job(sends=10_000)], server, until=seconds)
    free = limit * 0.9 - burst
    ours = _ours(server, skip)
    assert sum(ours) / len(ours) >= 0.8 * free
    assert run.share_429 <= 0.02
    assert server.other_share_429 <= 0.05


@pytest.mark.parametrize(
    ("limit", "decay", "floor", "rows", "start"),
    # 15 s: keeping the share of the job that ended for the whole window after left 13 of 40
    # unused there (0.79); it is free from where that job stopped in its last window (0.86).
    [(100, 1.0, False, 1500, 5.0), (40, 15.0, True, 150, 20.0)],
    ids=["1s", "15s-laravel-floor"],
)
def test_two_jobs_on_one_key_share_the_quota_without_429s_or_a_minute_asleep(
    limit: int, decay: float, floor: bool, rows: int, start: float
) -> None:
    server = Throttle(limit, decay, floor=floor)
    first, second = simulate_jobs([Job(sends=rows), Job(sends=rows, start=start)], server)
    assert first.statuses.count(429) + second.statuses.count(429) <= 0.02 * 2 * rows
    assert max(second.pauses()) < 2 * decay  # never the minute's guess asleep
    # Windows after the second job started, while both (or the one left) send; the last, in
    # which the rows ran out, left out.  Rate used (bench/field.py): what they took over the
    # time from the first one's start to the last one's, so time between windows counts too.
    windows = [len(w) for w in server.windows[2:-1]]
    assert sum(windows) / len(windows) >= 0.8 * limit
    span = server.opened[-1] - server.opened[2]
    assert sum(windows) / span >= 0.8 * limit / decay


@pytest.mark.parametrize(
    ("limit", "decay", "floor", "rows", "start", "pause"),
    # The second job's start offsets that did worst while it paced the first one's leftover over
    # the minute's guess: asleep 39-61 s, 0.68-0.71 of the limit per window (15 s), 0.21-0.62
    # rate used (1 s); now 0.82-0.86 and 0.83-0.89.
    [
        *[(40, 15.0, True, 150, start, 15.0) for start in (9.0, 12.5, 19.0, 22.5, 29.5)],
        *[(100, 1.0, False, 900, start, 3.0) for start in (4.3, 4.6, 4.9, 5.3)],
    ],
    ids=lambda v: f"{v:g}" if isinstance(v, float) else None,
)
def test_a_second_job_learns_a_window_the_first_fills_without_sleeping_the_minutes_guess(
    limit: int, decay: float, floor: bool, rows: int, start: float, pause: float
) -> None:
    server = Throttle(limit, decay, floor=floor)
    first, second = simulate_jobs([Job(sends=rows), Job(sends=rows, start=start)], server, latency=0.01)
    assert first.statuses.count(429) + second.statuses.count(429) <= 0.02 * 2 * rows
    assert max(second.pauses()) < pause
    windows = [len(w) for w in server.windows[2:-1]]
    assert sum(windows) / len(windows) >= 0.8 * limit
    assert sum(windows) / (server.opened[-1] - server.opened[2]) >= 0.8 * limit / decay


@pytest.mark.parametrize(
    ("limit", "decay", "floor", "full_from"),
    # 15 s: the window that shows the length was caught up with the budget less the last window's
    # others (4 of 40).  1 s: the first estimate is 10 s (the job sent once a guessed minute's
    # share), and its catch-up paced 15 a second through the ten 1 s windows after it.
    [(100, 1.0, False, 3), (40, 15.0, True, 2)],
    ids=["1s", "15s-laravel-floor"],
)
def test_a_job_started_into_a_window_an_earlier_run_left_full_paces_in_full_once_the_length_shows(
    limit: int, decay: float, floor: bool, full_from: int
) -> None:
    left = [-0.5 * decay] * int(0.8 * limit)  # the earlier run's last 80 % of the limit
    server = Throttle(limit, decay, floor=floor, other=iter([*left, math.inf]))
    (run,) = simulate_jobs([Job(sends=10_000)], server, until=20 * decay)
    assert run.share_429 == 0
    windows = [len(w) for w in server.windows[full_from : full_from + 5]]
    assert min(windows) >= 0.94 * 0.9 * limit


def test_a_stuck_remaining_is_ignored_with_one_warning_and_never_a_pause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A broken proxy says Remaining: 0 on every accepted answer.
    def stuck(_now: float, _seq: int) -> tuple[int, dict[str, str]]:
        return 201, {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0"}

    with caplog.at_level(logging.WARNING, logger="batch_override"):
        (run,) = simulate_jobs([Job(sends=60)], stuck, until=120.0)
    warnings = [r for r in caplog.records if "X-RateLimit-Remaining" in r.getMessage()]
    assert len(warnings) == 1
    assert max(run.pauses()) <= 5.0
    assert len(run.sends) == 60


def test_a_penalty_longer_than_the_window_does_not_change_the_pace_once_over() -> None:
    # 100 per 1 s, then a downgrade to 20 per 1 s whose first 429 asks for 30 s (a WAF's penalty).
    fast, slow = Throttle(100, 1.0), Throttle(20, 1.0)
    penalty = {"until": 0.0}

    def server(now: float, _seq: int) -> tuple[int, Mapping[str, str]]:
        if now < 10.0:
            return fast.hit(now, 0.0)
        if penalty["until"] == 0.0:
            penalty["until"] = now + 30.0
            return 429, {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "Retry-After": "30"}
        return slow.hit(now, 0.0)

    (run,) = simulate_jobs([Job(sends=100_000)], server, until=60.0)
    over = penalty["until"]
    assert over > 0
    after = [t for t in run.sends if over + 5.0 <= t < over + 15.0]
    assert len(after) / 10.0 >= 0.85 * 18
    assert slow.throttled <= 2

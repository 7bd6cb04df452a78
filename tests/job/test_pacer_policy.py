"""The pacer as a policy: a simulated Laravel throttle on a virtual clock, no sleeping, no network."""

from __future__ import annotations

import logging

import pytest

from batch_override.config import Rate
from batch_override.emulator.network import Latency
from batch_override.pacing.pacer import WINDOW_MARGIN, Pacer
from batch_override.pacing.rate_headers import HeaderReader, retry_after_seconds
from batch_override.pacing.window import WindowLearner
from tests.job.pacer_sim import Throttle, bursts, max_in_tenth, simulate


def _complete(server: Throttle) -> list[int]:
    return [len(w) for w in server.windows[1:-1]]


@pytest.mark.parametrize(
    ("limit", "decay", "floor"),
    [(50, 1.0, False), (40, 15.0, True), (40, 15.0, False), (60, 60.0, False), (60, 60.0, True)],
    ids=["1s", "15s-laravel-floor", "15s", "60s", "60s-laravel-floor"],
)
def test_auto_learns_the_window_and_keeps_the_headroom_evenly_spaced(
    limit: int, decay: float, floor: bool
) -> None:
    server = Throttle(limit, decay, floor=floor)
    run = simulate(None, server, sends=limit * 6)
    assert server.throttled == 0
    assert run.pacer.period == decay
    windows = _complete(server)
    assert 0.855 <= sum(windows) / len(windows) / limit <= 0.925
    assert max(windows) <= limit
    assert max_in_tenth(run.sends, decay) <= max(1, 0.15 * limit)


def test_a_one_second_window_shows_itself_within_two_requests() -> None:
    server = Throttle(50, 1.0)
    run = simulate(None, server, sends=3)
    assert run.pacer.period == 1.0
    # Paced as if a minute until then (stretched by the margin for windows outlasting their estimate).
    assert run.sends[1] - run.sends[0] == pytest.approx(60 * (1 + WINDOW_MARGIN) / 45)


@pytest.mark.parametrize(
    ("limit", "decay", "floor", "full"),
    # The budget less one: the window margin paces 45 over 1.01 s, not 1 s.
    [(50, 1.0, False, 44), (40, 15.0, True, 35), (100, 1.0, False, 88)],
    ids=["1s", "15s-laravel-floor", "1s-200ms-away"],
)
def test_the_window_after_the_one_that_shows_the_length_is_paced_in_full(
    limit: int, decay: float, floor: bool, full: int
) -> None:
    # A sender asleep on the minute's guess wakes as soon as an answer sets the pace: it must not
    # sleep 60 / 45 s through the next window.  200 ms away the window opens a round trip before
    # its pace is known: the pacer catches up in it (73 of 90 without).
    server = Throttle(limit, decay, floor=floor)
    latency = 0.2 if limit == 100 else 0.05
    simulate(None, server, sends=limit * 3, latency=latency)
    assert min(len(w) for w in server.windows[1:3]) >= full


@pytest.mark.parametrize("latency", [0.2, 0.43])
def test_the_window_that_shows_the_length_is_caught_up_evenly_and_spills_nothing(latency: float) -> None:
    # 0.43 s away, 0.58 s of the window are left when its length shows: 1.25 times the pace
    # fits 64 of the 89 in them.  The next window is paced in full from the first one's end.
    server = Throttle(100, 1.0)
    run = simulate(None, server, sends=400, latency=latency)
    second, third = (len(w) for w in server.windows[1:3])
    assert second >= (88 if latency == 0.2 else 64)
    assert 88 <= third <= 91
    assert server.throttled == 0
    assert max_in_tenth(run.sends, 1.0) <= 15


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_long_tailed_network_fills_its_windows_without_holding(seed: int) -> None:
    # 150 ms median, 1.5 s p99: counts arrive far out of order.  Counting the later sends that
    # overtook a request twice (in its count and as still to come) put 110 into windows of 90
    # and held the pacer up to 1.5 s at the end of windows (60-85 of 90 here).
    server = Throttle(100, 1.0)
    run = simulate(None, server, sends=1200, latency=Latency(0.15, 1.5, seed=seed).draw)
    windows = _complete(server)
    assert server.throttled == 0
    assert sum(windows[1:]) / len(windows[1:]) / 100 >= 0.88
    assert max(b - a for a, b in zip(run.sends[100:], run.sends[101:], strict=False)) < 0.1


def test_a_minute_window_is_paced_right_from_the_first_request() -> None:
    server = Throttle(60, 60.0)
    run = simulate(None, server, sends=10)
    gaps = [b - a for a, b in zip(run.sends[1:], run.sends[2:], strict=False)]
    assert gaps == pytest.approx([60 * (1 + WINDOW_MARGIN) / 54] * len(gaps))


def test_an_hour_window_never_gets_more_than_the_limit() -> None:
    server = Throttle(100, 3600.0)
    run = simulate(None, server, sends=400)
    assert max(len(w) for w in server.windows) <= 100
    assert run.share_429 <= 0.01
    assert 3500 <= run.pacer.period <= 3900


@pytest.mark.parametrize("headroom", [0.0, 0.1])
def test_headroom_zero_uses_the_whole_limit_with_few_429s(headroom: float) -> None:
    server = Throttle(40, 15.0, floor=True)
    simulate(None, server, sends=320, headroom=headroom)
    windows = _complete(server)
    assert sum(windows) / len(windows) / 40 >= (0.95 if headroom == 0 else 0.855)
    assert server.throttled / 320 <= 0.02


def test_a_far_server_is_paced_at_the_target_without_pausing_at_window_ends() -> None:
    server = Throttle(100, 1.0)
    run = simulate(None, server, sends=900, latency=0.2)
    windows = _complete(server)
    assert server.throttled == 0
    assert sum(windows) / len(windows) / 100 >= 0.855
    assert max(b - a for a, b in zip(run.sends[20:], run.sends[21:], strict=False)) < 0.02


def test_an_explicit_rate_is_paced_exactly_without_headers() -> None:
    run = simulate(Rate(20, 1.0), Throttle(1000, 1.0, headers=False), sends=201)
    assert run.sends[-1] - run.sends[0] == pytest.approx(10.0)


def test_auto_without_headers_paces_sixty_a_minute_with_no_stall() -> None:
    run = simulate(None, Throttle(1000, 1.0, headers=False), sends=121)
    assert run.sends[-1] - run.sends[0] == pytest.approx(120.0)
    assert max(b - a for a, b in zip(run.sends, run.sends[1:], strict=False)) <= 1.0 + 1e-9


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_says_nothing_of_the_rate_headers(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    # The server authenticates before its throttle counts: a refusal carries no X-RateLimit headers.
    pacer = Pacer(None)
    with caplog.at_level(logging.WARNING, logger="batch_override"):
        pacer.observe(pacer.grant(0.0), status, {})
    assert not pacer.fallback
    assert caplog.records == []
    pacer.observe(pacer.grant(1.0), 201, {})  # an answer the throttle passed: now it is evidence
    assert pacer.fallback


def test_a_429_without_headers_backs_off_doubling_and_goes_on() -> None:
    run = simulate(None, lambda t, n: (429, {}) if n <= 3 else (201, {}), sends=6, latency=0.0)
    gaps = [b - a for a, b in zip(run.sends, run.sends[1:], strict=False)]
    assert gaps[:3] == pytest.approx([0.5, 1.0, 2.0])
    assert run.statuses[3:] == [201, 201]


@pytest.mark.parametrize("value", ["99999999999999999999", "-5", "2.5", "lots", "1000000001"], ids=str)
def test_absurd_limit_headers_are_ignored_with_one_warning(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"X-RateLimit-Limit": value, "X-RateLimit-Remaining": "3"}
    with caplog.at_level(logging.WARNING, logger="batch_override"):
        run = simulate(None, lambda t, n: (201, headers), sends=4, latency=0.0)
    assert run.pacer.fallback  # as if absent: 60/min
    assert run.sends == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert sum("X-RateLimit-Limit" in r.getMessage() for r in caplog.records) == 1


def test_a_retry_after_http_date_is_honoured() -> None:
    now = 1_700_000_000.0
    headers = {"Retry-After": "Tue, 14 Nov 2023 22:13:27 GMT"}  # 7 s after `now`
    assert retry_after_seconds(headers, now) == pytest.approx(7.0)
    assert retry_after_seconds({"Retry-After": "Tue, 14 Nov 2023 22:00:00 GMT"}, now) == 0.0


@pytest.mark.parametrize("value", ["soon", "-3", "1.5", "1" * 30])
def test_an_absurd_retry_after_is_treated_as_absent(value: str) -> None:
    assert HeaderReader().retry_after({"Retry-After": value}) is None


def test_the_reset_header_stands_in_for_a_missing_retry_after() -> None:
    assert retry_after_seconds({"X-RateLimit-Reset": "1700000012"}, 1_700_000_000.0) == 12.0


def test_a_retry_after_teaches_the_window_length() -> None:
    learner = WindowLearner()
    learner.longer(3599.0)
    assert learner.estimate == 3600.0
    learner.shorter(3600.4)
    assert learner.estimate == 3600.0


def test_the_learner_follows_a_server_that_shortens_its_window() -> None:
    learner = WindowLearner()
    learner.longer(59.0)
    learner.shorter(60.2)
    assert learner.estimate == 60.0
    learner.shorter(10.1)  # contradicts the old lower bound: the newest evidence wins
    assert learner.estimate <= 11.0


@pytest.mark.parametrize("fraction", [0.05, 0.35, 0.65, 0.95])
def test_a_laravel_window_is_not_learned_a_second_short(fraction: float) -> None:
    # A 15 s window that expires at floor(first hit + 15) first shows as lasting between 13.3 and
    # 15 s; pacing it as 14 s puts 38 into a window on a budget of 36.
    server = Throttle(40, 15.0, floor=True)
    simulate(None, server, sends=112, epoch=1_700_000_000 + fraction)
    windows = _complete(server)
    assert sum(windows) / len(windows) / 40 <= 0.925


@pytest.mark.parametrize("skew", [-60.0, 60.0])
def test_a_retry_after_date_from_a_skewed_server_clock_teaches_the_same_window_as_seconds(
    skew: float,
) -> None:
    # Other traffic bursts into a 10 s window; the 429s say when it ends as an HTTP date on a
    # clock 60 s off ours, with a Date header on that clock. Read against our clock (60 s behind:
    # every wait 0 s) the pacer learnt a 5 s window and 26 of 59 requests were answered 429.
    def run(skew: float | None) -> tuple[int, float]:
        server = Throttle(10, 10.0, skew=skew, other=bursts(4, 10.0, 5.0))
        done = simulate(Rate(2, 1.0), server, sends=60)
        return server.throttled, done.pacer.period

    seconds_throttled, seconds_period = run(None)
    dated_throttled, dated_period = run(skew)
    assert dated_period == seconds_period == 10.0
    assert dated_throttled <= seconds_throttled + 1


def test_a_limit_alternating_between_two_replicas_tells_each_pace_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two replicas behind one balancer, configured 60 and 100 per minute, answer in turn: the
    # pace flipped with every answer and each flip was an INFO line (8 lines for 9 requests).
    limits = iter([60, 100] * 10)

    def answer(_now: float, _seq: int) -> tuple[int, dict[str, str]]:
        limit = next(limits)
        return 201, {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(limit - 1)}

    with caplog.at_level(logging.INFO, logger="batch_override"):
        simulate(None, answer, sends=19)
    told = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pacing auto")]
    assert len(told) <= 2, told

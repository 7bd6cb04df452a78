"""Pacing: never more than the limit in any window, no initial burst, no 429 at the server's limit."""

from __future__ import annotations

import email.utils
import logging
import random
import time
from pathlib import Path

import pytest
from aiohttp import web

from batch_override.config import Rate
from batch_override.pacing.pacer import SlidingLog
from tests.job.support import Hit, always, like_the_api, most_in_any_span, run_rows, scripted, send_times
from tests.support import read_ledger, run_cli, sha, write_csv


@pytest.mark.parametrize("seed", range(5))
def test_the_sliding_log_never_allows_more_than_the_limit_in_any_window(seed: int) -> None:
    rng = random.Random(seed)
    log = SlidingLog(limit=7, period=1.0)
    now, sends = 0.0, []
    for _ in range(500):
        now += log.wait(now) + rng.choice([0.0, 0.0, rng.uniform(0, 0.3), rng.uniform(0, 2)])  # late wake-ups
        assert log.wait(now) == 0.0
        log.record(now)
        sends.append(now)
    for i in range(len(sends) - 7):
        assert sends[i + 7] - sends[i] >= 1.0 - 1e-9  # 8 sends never fit in one period


def test_the_sliding_log_spaces_sends_evenly_from_the_start() -> None:
    log = SlidingLog(limit=60, period=60.0)  # AsyncLimiter(60, 60) would let 60 go at once
    now = 100.0
    log.record(now)
    assert log.wait(now) == pytest.approx(1.0)
    log.record(now + 5.0)  # after a pause, no catch-up burst either
    assert log.wait(now + 5.0) >= 0.75


def test_late_wake_ups_do_not_push_the_schedule_back() -> None:
    log = SlidingLog(limit=50, period=1.0)
    now = 0.0
    for _ in range(100):
        now += log.wait(now) + 0.001  # every wake-up 1 ms late: a relative sleep loses 5 %
        log.record(now)
    assert now <= 100 * 0.02 + 0.002


async def test_auto_pacing_at_the_servers_limit_is_never_throttled(tmp_path: Path, emulator_factory) -> None:
    # Default headroom: the 10 % kept free absorbs the arrival jitter of a loaded machine; pacing
    # with no headroom at all is the pacer simulation's business (tests/job/pacer_sim.py).
    emulator = await emulator_factory(unknown="classified", rate_limit=(40, 1.0))
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(100)])
    result = await run_cli(
        "run", str(corrections), "--ledger", str(tmp_path / "l.csv"), "--api-url", emulator.url,
        "--rate", "auto", "--concurrency", "8",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    windows = emulator.stats()["windows"]
    assert sum(w["throttled"] for w in windows) == 0
    assert max(w["accepted"] for w in windows) <= 40
    assert set(read_ledger(tmp_path / "l.csv")["outcome"]) == {"submitted"}


@pytest.mark.parametrize(("rate", "limit"), [(Rate(4, 1.0), 4), (Rate(40, 1.0), 40)])
async def test_an_explicit_rate_is_never_exceeded_in_any_span(
    tmp_path: Path, emulator_factory, caplog: pytest.LogCaptureFixture, rate: Rate, limit: int
) -> None:
    # The promise is about the job's sends; the server's fixed windows see them a jittered round
    # trip later, so a window may count one more than the sends of any one second (never a 429
    # below the server's limit, which is 10 / 55 here).
    emulator = await emulator_factory(unknown="classified", rate_limit=(limit * 5 // 4 + 5, 1.0))
    rows = [(sha(i), "human") for i in range(3 * limit)]
    with caplog.at_level(logging.DEBUG, logger="batch_override"):
        summary, ledger = await run_rows(tmp_path, emulator.url, rows, rate=rate, concurrency=8)
    assert summary.exit_code == 0
    assert set(ledger["outcome"]) == {"submitted"}
    sent = send_times(caplog.records)
    assert len(sent) == len(rows) + 1  # and the preflight
    assert most_in_any_span(sent, 1.0) == limit
    assert sum(w["throttled"] for w in emulator.stats()["windows"]) == 0


async def test_auto_learns_a_three_second_window_evenly_without_a_429(
    tmp_path: Path, emulator_factory, caplog: pytest.LogCaptureFixture
) -> None:
    # The emulator's `--rate-limit 30/15s` pattern, shortened: a pacer that guesses a 1 s window
    # bursts the window's budget in its first second, then meets a 429 in every window.  How much
    # of each window is used is the benchmarks' and the pacer simulation's business (a loaded CI
    # machine once stalled a window to 40 of 54 here; tests/job/test_pacer_policy.py checks the
    # windows are paced in full on a virtual clock); this checks what no stall can excuse: the
    # window learnt, never a window over the budget, no 429.
    emulator = await emulator_factory(unknown="classified", rate_limit=(60, 3.0))
    with caplog.at_level(logging.INFO, logger="batch_override"):
        summary, _ = await run_rows(
            tmp_path, emulator.url, [(sha(i), "human") for i in range(120)], rate="auto"
        )
    assert summary.exit_code == 0
    assert any(r.getMessage().startswith("pacing auto: 54/3s") for r in caplog.records)
    windows = emulator.stats()["windows"]
    assert sum(w["throttled"] for w in windows) == 0
    complete = [w["accepted"] for w in windows][1:-1]
    assert complete and all(n <= 60 * 0.925 for n in complete)


async def test_an_explicit_rate_without_headers_sends_every_row_and_never_over_the_rate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # That the rate is delivered in full (not slowed for want of headers) is a matter of time,
    # checked on the virtual clock: test_pacer_policy.py's
    # test_an_explicit_rate_is_paced_exactly_without_headers.  Here: what no loaded machine changes.
    async with scripted(like_the_api(always(201, {"classification": "human", "type": "video"}))) as server:
        with caplog.at_level(logging.DEBUG, logger="batch_override"):
            summary, ledger = await run_rows(
                tmp_path, server.url, [(sha(i), "human") for i in range(41)], rate=Rate(20, 1.0),
                concurrency=8,
            )  # fmt: skip
    assert summary.exit_code == 0
    assert len(server.hits) == 1 + 41  # the preflight, then each row once
    assert set(ledger["outcome"]) == {"submitted"} and len(ledger) == 41
    assert most_in_any_span(send_times(caplog.records), 1.0) <= 20


async def test_a_first_429_without_headers_backs_off_and_sending_goes_on(tmp_path: Path) -> None:
    async def answer(_request: web.Request, _hit: Hit, n: int) -> web.StreamResponse:
        if len(server.hits) <= 2:
            return web.json_response({"message": "Too Many Attempts."}, status=429)  # a CDN's 429
        return web.json_response({"classification": "human", "type": "video"}, status=201)

    async with scripted(answer) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(0), "human")], rate="auto", preflight=False, backoff_base=0.05
        )
    assert summary.exit_code == 0
    assert list(ledger["outcome"]) == ["submitted"]
    assert summary.throttled == 2


@pytest.mark.parametrize("limit", ["99999999999999999999", "-1", "1.5", "many"])
async def test_absurd_rate_headers_are_ignored_with_one_warning(
    tmp_path: Path, limit: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"X-RateLimit-Limit": limit, "X-RateLimit-Remaining": "7"}
    async with scripted(
        like_the_api(always(201, {"classification": "human", "type": "video"}, headers))
    ) as server:
        summary, _ = await run_rows(
            tmp_path, server.url, [(sha(i), "human") for i in range(3)], rate=Rate(50, 1.0)
        )
    assert summary.exit_code == 0
    assert sum("X-RateLimit-Limit" in r.getMessage() for r in caplog.records) == 1


async def test_a_retry_after_http_date_is_waited_for(tmp_path: Path) -> None:
    async def answer(_request: web.Request, _hit: Hit, n: int) -> web.StreamResponse:
        if n == 0:
            when = email.utils.formatdate(time.time() + 3, usegmt=True)
            return web.json_response(
                {"message": "Too Many Attempts."}, status=429, headers={"Retry-After": when}
            )
        return web.json_response({"classification": "human", "type": "video"}, status=201)

    async with scripted(answer) as server:
        summary, _ = await run_rows(tmp_path, server.url, [(sha(0), "human")], preflight=False)
    assert summary.exit_code == 0
    first, second = server.hits
    assert second.at - first.at >= 1.9  # the date is whole seconds: at least 2 s of the 3 s remained


@pytest.mark.parametrize("header", ["Retry-After", "X-RateLimit-Reset"])
async def test_a_date_from_a_server_clock_ahead_of_ours_is_read_against_its_date_header(
    tmp_path: Path, header: str
) -> None:
    # The server's clock is 60 s ahead; its 429 says the window ends now (by its own Date). Read
    # against our clock that was a 60 s wait, over --max-wait 30: exit 5 for nothing.
    async def answer(_request: web.Request, _hit: Hit, n: int) -> web.StreamResponse:
        if n == 0:
            server_now = time.time() + 60
            when = email.utils.formatdate(server_now, usegmt=True)
            value = when if header == "Retry-After" else str(int(server_now))
            return web.json_response(
                {"message": "Too Many Attempts."}, status=429, headers={"Date": when, header: value}
            )
        return web.json_response({"classification": "human", "type": "video"}, status=201)

    async with scripted(answer) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(0), "human")], preflight=False, max_wait=30.0
        )
    assert summary.exit_code == 0
    assert list(ledger["outcome"]) == ["submitted"]
    assert len(server.hits) == 2


async def test_auto_concurrency_reaches_the_rate_of_a_far_server(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified", latency_ms=200)
    summary, _ = await run_rows(
        tmp_path,
        emulator.url,
        [(sha(i), "human") for i in range(300)],
        rate=Rate(150, 1.0),
        concurrency="auto",
    )
    assert summary.exit_code == 0
    # More in flight than a fixed 8 (which at 200 ms could never send over 40/s); Little's law
    # wants 30 in flight for the 150/s asked.  The rate itself is the simulation's to check, on a
    # virtual clock (tests/job/test_concurrency.py), not a loaded machine's.
    assert summary.concurrency["mode"] == "auto"
    assert 16 < summary.concurrency["peak_in_flight"] <= 64

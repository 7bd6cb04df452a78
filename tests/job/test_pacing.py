"""Pacing: never more than the limit in any window, no initial burst, no 429 at the server's limit."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from batch_override.pacing import SlidingLog
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


@pytest.mark.parametrize("rate", ["10/s", "auto"])
async def test_pacing_at_the_servers_limit_is_never_throttled(
    tmp_path: Path, emulator_factory, rate: str
) -> None:
    emulator = await emulator_factory(unknown="classified", rate_limit=(10, 1.0))
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(34)])
    result = await run_cli(
        "run", str(corrections), "--ledger", str(tmp_path / "l.csv"), "--api-url", emulator.url,
        "--rate", rate, "--headroom", "0", "--concurrency", "8",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    windows = emulator.stats()["windows"]
    assert sum(w["throttled"] for w in windows) == 0
    assert max(w["accepted"] for w in windows) == 10
    assert set(read_ledger(tmp_path / "l.csv")["outcome"]) == {"submitted"}


async def test_an_explicit_rate_below_the_servers_is_respected(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified", rate_limit=(10, 1.0))
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(12)])
    result = await run_cli(
        "run", str(corrections), "--ledger", str(tmp_path / "l.csv"), "--api-url", emulator.url,
        "--rate", "4/s", "--concurrency", "8",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert max(w["accepted"] for w in emulator.stats()["windows"]) <= 4

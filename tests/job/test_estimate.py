"""The estimate before sending: requests, the pace the preflight's X-RateLimit-Limit allows less
--headroom over the assumed window, the duration, and with a deadline the nights it needs."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from batch_override.config import Rate, RunConfig
from batch_override.job.estimate import estimate
from batch_override.pacing.pacer import Pacer
from tests.job.support import run_rows
from tests.support import run_against, sha, write_csv


def test_the_estimate_names_requests_pace_duration_and_the_nights_a_window_needs() -> None:
    config = RunConfig(input="x.csv", rate=Rate(54, 60.0), stop_at="06:00 UTC")
    ten_pm = dt.datetime(2026, 6, 10, 22, 0, tzinfo=dt.UTC).timestamp()
    made = estimate(config, None, 2_000_000, now=ten_pm)
    assert made.seconds == 2_000_000 / 0.9
    text = str(made)
    assert text.startswith("~2,000,000 requests at 54/min: ~26 days; with --stop-at 06:00 UTC nightly from")
    assert text.endswith(": ~78 nights")  # 8-hour nights


def test_without_a_preflight_answer_the_estimate_says_what_it_assumes() -> None:
    text = str(estimate(RunConfig(input="x.csv"), None, 120))
    assert text == "~120 requests at 60/min: ~2 min (no X-RateLimit-Limit seen: 60/min assumed)"


async def test_the_dry_run_estimate_matches_a_paced_run_within_10_percent(
    tmp_path: Path, emulator_factory: Any
) -> None:
    # A minute window, as Laravel's default and as the estimate assumes until a window ends.
    emulator = await emulator_factory(unknown="classified", rate_limit=(600, 60.0))
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(45)])
    ledger, summary_file = tmp_path / "l.csv", tmp_path / "s.json"
    auto = ("--rate", "auto", "--summary", str(summary_file))
    dry = await run_against(emulator.url, corrections, ledger, *auto, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(summary_file.read_text(encoding="utf-8"))
    # One answer cannot tell the window: the range from a one-second window to a minute.
    assert planned["estimate"].startswith("~46 requests at 535/s to 535/min: ~0s to ~5s")
    assert "window is not known" in planned["estimate"] and "estimate: ~46 requests" in dry.stdout
    assert emulator.stats()["overrides"] == 0 and emulator.stats()["requests"] == 1  # the preflight

    sent = await run_against(emulator.url, corrections, tmp_path / "sent.csv", *auto)
    assert sent.returncode == 0, sent.stderr
    real = json.loads(summary_file.read_text(encoding="utf-8"))
    # Said again when sending, with the count the dry run said and the summary counts (the preflight's).
    assert real["estimate"].startswith("~46 requests at 535/s to 535/min")
    assert real["requests"] == 46
    assert abs(real["duration_s"] - planned["estimate_s"]) <= 0.1 * real["duration_s"], (real, planned)


def _pacer_after_one_answer(limit: int) -> Pacer:
    """An auto pacer that has seen one answer: the limit is known, the window not yet."""
    pacer = Pacer(None, headroom=0.1)
    pacer.observe(
        pacer.grant(0.0), 400, {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(limit - 1)}
    )
    assert not pacer.model.learner.known
    return pacer


def test_before_a_window_ends_the_estimate_is_the_range_from_a_one_second_window_to_a_minute() -> None:
    config = RunConfig(input="x.csv", max_duration="5s")
    made = estimate(config, _pacer_after_one_answer(50), 2_000)
    # 45 a window (50 less 10%): 44.6/s for one second (with its 1% margin), 44.6/min for a minute.
    assert str(made) == (
        "~2,000 requests at 44.6/s to 44.6/min: ~45s to ~45 min; with --max-duration 5s per run: "
        "~9 to ~539 runs (the server's window is not known until one ends: 1s to 1m)"
    )
    assert made.seconds == 2_000 / made.rate  # the longest: what a planner must allow for


async def test_a_run_says_the_estimate_again_once_the_window_is_known_and_its_summary_has_both(
    tmp_path: Path, emulator_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = await emulator_factory(unknown="classified", rate_limit=(50, 1.0))
    rows = [(sha(i), "human") for i in range(30)]
    with caplog.at_level(logging.INFO, logger="batch_override"):
        summary, _ = await run_rows(tmp_path, emulator.url, rows, rate="auto")
    assert summary.exit_code == 0
    assert summary.estimate.startswith("~31 requests at 44.6/s to 44.6/min: ~1s to ~42s")
    assert summary.revised_estimate == "~31 requests at 44.6/s: ~1s"
    revised = [r.getMessage() for r in caplog.records if r.getMessage().startswith("estimate, ")]
    assert revised == ["estimate, the server's window now known to last 1s: ~31 requests at 44.6/s: ~1s"]
    assert "revised once the window was known: ~31 requests at 44.6/s: ~1s" in summary.render()


async def test_a_resume_estimates_only_the_rows_it_will_send(tmp_path: Path, emulator_factory: Any) -> None:
    emulator = await emulator_factory(unknown="classified")
    rows = [(sha(i), "human") for i in range(40)]
    first, _ = await run_rows(tmp_path, emulator.url, rows[:30])
    assert first.estimate.startswith("~31 requests at 1,000/s")  # the preflight too
    again, _ = await run_rows(tmp_path, emulator.url, rows)  # the 30 are in the ledger: 10 new
    assert again.outcomes["skipped"] == 30
    assert again.estimate.startswith("~11 requests at 1,000/s")

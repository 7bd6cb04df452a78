"""The estimate before sending: requests, the pace the preflight's X-RateLimit-Limit allows less
--headroom over the assumed window, the duration, and with a deadline the nights it needs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from batch_override.config import Rate, RunConfig
from batch_override.job.estimate import estimate
from tests.support import run_against, sha, write_csv


def test_the_estimate_names_requests_pace_duration_and_the_nights_a_window_needs() -> None:
    config = RunConfig(input="x.csv", rate=Rate(54, 60.0), stop_at="06:00 UTC")
    ten_pm = dt.datetime(2026, 6, 10, 22, 0, tzinfo=dt.UTC).timestamp()
    made = estimate(config, None, 2_000_000, now=ten_pm)
    assert made.seconds == 2_000_000 / 0.9
    text = str(made)
    assert text.startswith("~2,000,000 requests at 54/min: ~26 days; with --stop-at 06:00 UTC nightly from")
    assert text.endswith(": ~78 nights")  # 8-hour nights
    assert "up to 5 requests" in str(estimate(config, None, 5, up_to=True, now=ten_pm))


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
    assert planned["estimate"].startswith("~46 requests at 535/min: ~5s")
    assert "window is assumed" in planned["estimate"] and "estimate: ~46 requests" in dry.stdout
    assert emulator.stats()["overrides"] == 0 and emulator.stats()["requests"] == 1  # the preflight

    sent = await run_against(emulator.url, corrections, tmp_path / "sent.csv", *auto)
    assert sent.returncode == 0, sent.stderr
    real = json.loads(summary_file.read_text(encoding="utf-8"))
    assert real["estimate"].startswith("~45 requests at 535/min")  # said again when sending
    assert abs(real["duration_s"] - planned["estimate_s"]) <= 0.1 * real["duration_s"], (real, planned)

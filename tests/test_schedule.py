"""A run deadline: ``--max-duration`` and ``--stop-at`` stop the run as SIGTERM would, with exit 7,
rows left ``aborted`` / ``deadline``, and a rerun that resumes.  ``--stop-at`` is checked on an
injected clock across midnight and both DST changes of a year."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from batch_override.config import RunConfig
from batch_override.errors import UsageError
from batch_override.job.deadline import deadline_in
from batch_override.schedule import StopAt, parse_duration
from tests.support import latest, read_ledger, run_against, sha, write_csv

ROME = ZoneInfo("Europe/Rome")


def at(text: str, zone: dt.tzinfo = ROME) -> float:
    """The Unix time of ``2026-03-28 22:00``-style wall text in ``zone``."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def wall(unix: float, zone: dt.tzinfo = ROME) -> str:
    return dt.datetime.fromtimestamp(unix, zone).strftime("%Y-%m-%d %H:%M %Z")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7h30m", 27000.0), ("90m", 5400.0), ("3s", 3.0), ("1.5h", 5400.0), ("45", 45.0), ("1h 30m", 5400.0)],
)
def test_max_duration_reads_hours_minutes_and_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7x", "h", "3s and more", "-3s"])
def test_a_max_duration_that_is_not_a_duration_is_one_line_naming_the_option(text: str) -> None:
    with pytest.raises(UsageError, match="--max-duration"):
        RunConfig(input="x.csv", max_duration=text)


def test_stop_at_crosses_midnight_to_the_next_morning() -> None:
    six = StopAt.parse("06:00 Europe/Rome")
    assert wall(six.next_after(at("2026-06-10 22:00"))) == "2026-06-11 06:00 CEST"
    assert six.next_after(at("2026-06-10 22:00")) - at("2026-06-10 22:00") == 8 * 3600
    assert wall(six.next_after(at("2026-06-11 05:59"))) == "2026-06-11 06:00 CEST"
    # Exactly at the time, or just after it: the next day's (the trap the docs name).
    assert wall(six.next_after(at("2026-06-11 06:00"))) == "2026-06-12 06:00 CEST"


def test_stop_at_over_the_spring_forward_night_is_an_hour_shorter() -> None:
    six = StopAt.parse("06:00 Europe/Rome")  # 2026-03-29 02:00 CET -> 03:00 CEST
    assert six.next_after(at("2026-03-28 22:00")) - at("2026-03-28 22:00") == 7 * 3600
    assert wall(six.next_after(at("2026-03-28 22:00"))) == "2026-03-29 06:00 CEST"
    # A wall time the clocks skip is taken at its earlier instant: early, never an hour late.
    skipped = StopAt.parse("02:30 Europe/Rome").next_after(at("2026-03-28 22:00"))
    assert wall(skipped) == "2026-03-29 01:30 CET"


def test_stop_at_over_the_fall_back_night_is_an_hour_longer() -> None:
    six = StopAt.parse("06:00 Europe/Rome")  # 2026-10-25 03:00 CEST -> 02:00 CET
    assert six.next_after(at("2026-10-24 22:00")) - at("2026-10-24 22:00") == 9 * 3600
    twice = StopAt.parse("02:30 Europe/Rome").next_after(at("2026-10-24 22:00"))
    assert wall(twice) == "2026-10-25 02:30 CEST"  # the first of the two 02:30s


def test_stop_at_in_utc_and_in_the_machines_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    utc = StopAt.parse("06:00 UTC")
    start = at("2026-03-28 22:00", dt.UTC)
    assert utc.next_after(start) - start == 8 * 3600
    monkeypatch.setenv("TZ", "Europe/Rome")
    time.tzset()
    try:
        local = StopAt.parse("06:00")
        assert local.zone is None
        assert local.next_after(at("2026-03-28 22:00")) - at("2026-03-28 22:00") == 7 * 3600
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("start", "expected"),
    [("2026-03-28 22:00", "2026-03-29 01:30 CET"), ("2026-10-24 22:00", "2026-10-25 02:30 CEST")],
)
def test_a_local_stop_at_on_a_dst_night_takes_the_earlier_instant_as_a_named_zone_does(
    monkeypatch: pytest.MonkeyPatch, start: str, expected: str
) -> None:
    named = StopAt.parse("02:30 Europe/Rome").next_after(at(start))
    monkeypatch.setenv("TZ", "Europe/Rome")  # the machine's zone: what TZ or /etc/localtime says
    time.tzset()
    try:
        local = StopAt.parse("02:30").next_after(at(start))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert (wall(local), wall(named)) == (expected, expected)


@pytest.mark.parametrize("text", ["6", "24:00", "06:60", "06:00 Mars/Olympus", "six"])
def test_a_bad_stop_at_is_one_line_naming_the_option(text: str) -> None:
    with pytest.raises(UsageError, match="--stop-at"):
        StopAt.parse(text)


def test_with_both_deadlines_the_earlier_wins() -> None:
    config = RunConfig(input="x.csv", max_duration="7h30m", stop_at="06:00 Europe/Rome")
    assert deadline_in(config, at("2026-06-10 22:00")) == (8 * 3600 - 30 * 60, "--max-duration 7h30m")
    assert deadline_in(config, at("2026-06-11 00:00")) == (6 * 3600, "--stop-at 06:00 Europe/Rome")
    assert deadline_in(RunConfig(input="x.csv"), 0.0) is None


def test_a_job_file_sets_the_deadline(tmp_path: Path) -> None:
    from batch_override.cli.jobfile import load_job
    from batch_override.cli.options import JOB_KEYS

    job = tmp_path / "night.toml"
    job.write_text('[run]\nmax_duration = "7h30m"\nstop_at = "06:00 UTC"\n', encoding="utf-8")
    config = RunConfig.from_mapping({"input": "x.csv", **load_job(job, JOB_KEYS)})
    assert (config.max_duration, config.stop_at) == (27000.0, StopAt(6, 0, "UTC"))
    assert RunConfig.from_mapping({"input": "x.csv", "max_duration": 90}).max_duration == 90


async def test_max_duration_stops_a_paced_run_on_time_and_the_rerun_resumes(
    tmp_path: Path, emulator_factory: Any
) -> None:
    emulator = await emulator_factory(unknown="classified")
    rows = [(sha(i), "human") for i in range(60)]
    corrections = write_csv(tmp_path / "c.csv", rows)
    ledger, summary_file = tmp_path / "l.csv", tmp_path / "s.json"
    pace = ("--rate", "30/s", "--grace", "0.5", "--summary", str(summary_file))
    first = await run_against(emulator.url, corrections, ledger, *pace, "--max-duration", "1s")
    assert first.returncode == 7, first.stderr
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    assert summary["duration_s"] >= 1.0  # not before the deadline; and not a hang:
    assert summary["duration_s"] < 30
    assert summary["stop_reason"].startswith("deadline (--max-duration 1s) reached")
    state = latest(read_ledger(ledger))
    sent = state[state["outcome"] == "submitted"]
    left = state[state["outcome"] == "aborted"]
    # In flight at the deadline: aborted (deadline); never reached: counted not_attempted.
    # Never more than the pace allows in the second (the preflight took one); a slow machine
    # only sends fewer.
    assert 1 <= len(sent) <= 30 and len(sent) + len(left) + summary["not_attempted"] == 60
    assert set(left["error_code"]) <= {"deadline"} and summary["not_attempted"] > 0
    assert "exit 7" in first.stdout and "deadline" in first.stdout

    second = await run_against(emulator.url, corrections, ledger, "--summary", str(summary_file))  # unpaced
    assert second.returncode == 0, second.stderr
    state = latest(read_ledger(ledger))
    assert set(state["outcome"]) <= {"submitted", "skipped"} and len(state) == 60
    again = json.loads(summary_file.read_text(encoding="utf-8"))
    assert again["outcomes"] == {"skipped": len(sent), "submitted": 60 - len(sent)}
    # Only the rows in flight at the deadline were sent twice: rows + 2 preflights + those.
    assert emulator.stats()["requests"] == 60 + 2 + len(left)

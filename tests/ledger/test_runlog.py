"""The run log's record, asked directly: what a run wrote reads back and writes the same bytes, and
lines from other versions or from a person's hand read without an error."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from batch_override.config import RunConfig
from batch_override.errors import ExitCode
from batch_override.job.runner import run_job_async
from batch_override.ledger import runlog
from batch_override.ledger.runlog import RunRecord, RunSummary
from batch_override.summary import Summary
from tests.support import sha, write_csv

# The two records `make demo` wrote (paths and user made neutral): the format, written out.
STARTED: dict[str, Any] = {
    "api_url": "http://127.0.0.1:41593",
    "at": "2026-12-01T20:15:38.434Z",
    "columns": {"classification": "classification", "hash": "hash", "media": "media"},
    "dry_run": False,
    "event": "started",
    "input": "/srv/batch/corrections.csv",
    "input_rows": 279,
    "input_sha256": "426d6f379c865d8b9dbaabe1cbcc495effd38f5ac0fd8bf979e19256b7f8a509",
    "key_fingerprint": "ab0e91c2d5b5",
    "run_id": "20261201T201538Z-92beef",
    "tool_version": "0.1.0",
    "user_host": "ops@batch-host",
}
SUMMARY: dict[str, Any] = {
    "api_url": "http://127.0.0.1:41593",
    "concurrency": {"limit": 8, "max": 64, "mean_in_flight": 0.03, "mode": "auto", "peak_in_flight": 1},
    "dry_run": False,
    "duration_s": 8.511,
    "estimate": "",
    "estimate_s": None,
    "error_codes": {
        "conflicting_classifications": 7, "invalid_row": 8, "no_completed_request": 8,
        "no_longer_possible": 8, "no_request": 10, "not_classified": 12,
    },
    "exit_code": 1,
    "ledger": "out/demo.ledger.csv",
    "not_attempted": 0,
    "outcomes": {
        "already_submitted": 20, "conflict": 7, "duplicate": 9, "invalid": 8,
        "not_ready": 20, "rejected": 18, "submitted": 197,
    },
    "requests": 256,
    "requests_per_s": 30.08,
    "revised_estimate": "",
    "revised_estimate_s": None,
    "rows": 279,
    "run_id": "20261201T201538Z-92beef",
    "stop_reason": "",
    "throttled_429": 0,
}  # fmt: skip
FINISHED: dict[str, Any] = {
    **STARTED,
    "event": "finished",
    "at": "2026-12-01T20:15:46.900Z",
    "summary": SUMMARY,
}


def line(obj: object) -> str:
    return json.dumps(obj, sort_keys=True)


def test_a_record_a_run_wrote_reads_back_and_writes_the_same_bytes(tmp_path: Path) -> None:
    path = tmp_path / "l.csv.runs.jsonl"
    for obj in (STARTED, FINISHED):
        record = RunRecord.from_json(json.loads(line(obj)))
        assert record is not None
        runlog.append(path, record)
    assert path.read_text(encoding="utf-8") == line(STARTED) + "\n" + line(FINISHED) + "\n"
    assert [r.event for r in runlog.read_records(path)] == [runlog.STARTED, runlog.FINISHED]


def test_the_keys_written_are_the_run_logs_keys_of_today() -> None:
    record = RunRecord.from_json(FINISHED)
    assert record is not None and record.summary is not None
    assert set(record.to_json()) == set(FINISHED)
    assert set(record.summary.to_json()) == set(SUMMARY)
    started = RunRecord.from_json(STARTED)
    assert started is not None and set(started.to_json()) == set(STARTED)  # no "summary" key


def test_a_summary_logs_the_keys_and_plain_numbers_of_today() -> None:
    summary = Summary(run_id="r", ledger="l.csv", api_url="http://127.0.0.1:1", exit_code=ExitCode.ABORTED)
    summary.count("submitted", n=2)
    logged = RunSummary.of(summary).to_json()
    assert set(logged) == set(SUMMARY)
    assert line(logged) == line(summary.to_dict())  # the CLI's --summary JSON says the same
    assert '"exit_code": 3' in line(logged)


def test_unknown_keys_are_ignored_and_missing_ones_are_none() -> None:
    record = RunRecord.from_json({"run_id": "r", "event": "started", "someday": 1})
    assert record == RunRecord(event="started", run_id="r")
    old = RunRecord.from_json({"run_id": "r", "event": "finished", "summary": {"rows": 3, "new_figure": 1}})
    assert old is not None and old.summary is not None
    assert (old.summary.rows, old.summary.exit_code, old.summary.duration_s) == (3, None, None)
    assert "new_figure" not in old.summary.to_json()


def test_hand_written_values_are_read_leniently() -> None:
    record = RunRecord.from_json(
        {"run_id": "r", "event": "finished", "api_url": 5, "columns": {"hash": "sha", "media": None},
         "input_rows": "many", "summary": {"throttled_429": "4", "exit_code": "x", "duration_s": "long"}}
    )  # fmt: skip
    assert record is not None and record.summary is not None
    assert (record.api_url, record.columns, record.input_rows) == ("5", {"hash": "sha"}, 0)
    assert (record.summary.throttled_429, record.summary.exit_code, record.summary.duration_s) == (4, 0, None)


def test_lines_that_are_not_records_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "l.csv.runs.jsonl"
    path.write_text('[1]\n{"run_id": 7}\n{"torn": \n' + line(STARTED) + "\n", encoding="utf-8")
    assert [r.run_id for r in runlog.read_records(path)] == [STARTED["run_id"]]
    assert list(runlog.read_records(tmp_path / "missing.jsonl")) == []


async def test_a_run_logs_a_started_and_a_finished_record_with_todays_keys(tmp_path: Path) -> None:
    corrections = write_csv(tmp_path / "c.csv", [(sha(0), "human"), (sha(1), "artificial")])
    ledger = tmp_path / "l.csv"
    config = RunConfig(input=str(corrections), ledger=ledger, dry_run=True)  # nothing sent
    summary = await asyncio.wait_for(run_job_async(config, None), 30)
    started, finished = map(json.loads, runlog.runlog_path(ledger).read_text(encoding="utf-8").splitlines())
    assert (started["event"], finished["event"]) == ("started", "finished")
    assert set(started) == set(STARTED) and set(finished) == set(FINISHED)
    assert set(finished["summary"]) == set(SUMMARY)
    assert finished["summary"] == json.loads(json.dumps(summary.to_dict()))
    assert started["input"] == str(corrections.resolve()) and started["input_rows"] == 2

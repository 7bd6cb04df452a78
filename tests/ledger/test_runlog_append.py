"""The run log is append-safe: a torn last record costs that record alone, never the next run's."""

from __future__ import annotations

import json
from pathlib import Path

from batch_override.ledger import runlog


def _record(run_id: str, event: str = "started") -> dict[str, object]:
    return {
        "event": event,
        "run_id": run_id,
        "api_url": "http://127.0.0.1:1",
        "key_fingerprint": "fp",
        "at": "2026-12-01T10:00:00.000Z",
    }


def _typed(record: dict[str, object]) -> runlog.RunRecord:
    typed = runlog.RunRecord.from_json(record)
    assert typed is not None
    return typed


def test_a_record_appended_after_a_torn_one_starts_on_a_fresh_line_and_is_trusted(tmp_path: Path) -> None:
    path = tmp_path / "l.csv.runs.jsonl"
    runlog.append(path, _typed(_record("a")))
    whole = json.dumps(_record("a", "finished"), sort_keys=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(whole[: len(whole) // 2])  # a kill or ENOSPC mid-append
    runlog.append(path, _typed(_record("b")))
    assert path.read_text(encoding="utf-8").endswith("\n")
    assert [r["run_id"] for r in runlog.records(path)] == ["a", "b"]
    assert list(runlog.trusted_runs(path, "http://127.0.0.1:1", "fp")) == ["a", "b"]


def test_a_whole_last_record_that_lost_only_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "l.csv.runs.jsonl"
    path.write_text(json.dumps(_record("a")), encoding="utf-8")  # an editor dropped the newline
    runlog.append(path, _typed(_record("b")))
    assert [r["run_id"] for r in runlog.records(path)] == ["a", "b"]


def test_a_reader_loses_only_the_torn_record_of_a_line_glued_by_an_older_version(tmp_path: Path) -> None:
    path = tmp_path / "l.csv.runs.jsonl"
    torn = json.dumps(_record("a", "finished"), sort_keys=True)[:40]
    glued = json.dumps({**_record("b"), "columns": {"hash": "h"}}, sort_keys=True)
    path.write_text(json.dumps(_record("a")) + "\n" + torn + glued + "\n", encoding="utf-8")
    assert [(r["run_id"], r["event"]) for r in runlog.records(path)] == [("a", "started"), ("b", "started")]

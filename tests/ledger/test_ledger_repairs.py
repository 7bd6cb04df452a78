"""Ledgers as the field leaves them: re-saved by a spreadsheet (BOM, CRLF), a last line that lost
only its newline, carried names that collide with the ledger's own twice over."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

from batch_override import read_ledger
from batch_override.apikey import ApiKey
from batch_override.config import Rate, RunConfig
from batch_override.emulator import DEMO_API_KEY, Emulator
from batch_override.job.runner import run_job_async
from batch_override.ledger.format import COLUMNS, carried_names
from batch_override.ledger.writer import repair_torn_tail
from batch_override.report.run_report import add_parser
from batch_override.summary import Summary
from tests.support import line, run_command, sha, write_csv, write_ledger


async def _run(path: Path, emulator: Emulator, ledger: Path) -> Summary:
    config = RunConfig(
        input=str(path), ledger=ledger, api_url=emulator.url, rate=Rate(1000, 1.0), backoff_base=0.01
    )
    return await asyncio.wait_for(run_job_async(config, ApiKey(DEMO_API_KEY)), 30)


async def test_a_ledger_resaved_with_a_bom_and_crlf_resumes_and_reports(
    tmp_path: Path, emulator_factory: Any
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human", f"T-{i}") for i in range(3)],
                            ("hash", "classification", "ticket"))  # fmt: skip
    ledger = tmp_path / "l.csv"
    assert (await _run(corrections, emulator, ledger)).exit_code == 0
    text = ledger.read_text(encoding="utf-8")
    ledger.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))  # Excel's "CSV UTF-8"
    again = await _run(corrections, emulator, ledger)
    assert (again.exit_code, again.outcomes["skipped"]) == (0, 3)
    assert run_command(add_parser, "report", str(ledger), "--run", "all") == 0
    assert list(read_ledger(ledger).columns) == [*COLUMNS, "ticket"]


def test_a_last_line_that_lost_only_its_newline_is_kept_and_ended(tmp_path: Path) -> None:
    whole = line(0, "submitted", "r1", at="2026-01-01T00:00:00.123Z")
    ledger = write_ledger(tmp_path / "l.csv", [whole])
    ledger.write_bytes(ledger.read_bytes().rstrip(b"\n"))  # an editor dropped the final newline
    assert repair_torn_tail(ledger) == 0
    assert ledger.read_bytes().endswith(b".123Z\n")
    assert read_ledger(ledger)["outcome"].tolist() == ["submitted"]
    carried = write_ledger(tmp_path / "c.csv", [], ["ticket"])
    with open(carried, "ab") as fh:  # as the writer writes a sent row: every text cell quoted
        fh.write(b'0,"video","' + sha(0).encode() + b'","human","submitted","","",1,"","r1",'
                 b'"2026-01-01T00:00:00.123Z","T-0"')  # fmt: skip
    assert repair_torn_tail(carried) == 0
    assert read_ledger(carried)["ticket"].tolist() == ["T-0"]


def test_what_cannot_be_a_record_is_still_cut(tmp_path: Path) -> None:
    fields = ",".join(str(v) for v in line(1, "submitted", "r1", at="2026-01-01T00:00:00.123Z"))
    cases = {
        "a torn timestamp": ((), fields[:-3]),
        "too few fields": ((), "1,video,"),
        "an open quote in a carried cell": (("ticket",), fields + ',"T-'),
        "an unquoted carried cell": (("ticket",), fields + ",T-"),  # a tear cannot be told apart
    }
    for why, (carried, tail) in cases.items():
        first = line(0, "submitted", "r1", carried=["T-0"] * len(carried))
        ledger = write_ledger(tmp_path / "l.csv", [first], carried)
        before = ledger.read_bytes()
        ledger.write_bytes(before + tail.encode())
        assert repair_torn_tail(ledger) == len(tail), why
        assert ledger.read_bytes() == before, why


def test_the_input_prefix_is_applied_until_the_name_is_unique() -> None:
    assert carried_names(["row", "input_row", "note"]) == ("input_input_row", "input_row", "note")
    assert carried_names(["message", "input_message", "input_input_message"]) == (
        "input_input_input_message", "input_message", "input_input_message",
    )  # fmt: skip


async def test_carried_row_and_input_row_make_a_ledger_whose_retry_file_works(
    tmp_path: Path, emulator_factory: Any
) -> None:
    emulator = await emulator_factory(unknown="classified", states={("video", sha(1)): "not_classified"})
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human", "a", "b") for i in range(2)],
                            ("hash", "classification", "row", "input_row"))  # fmt: skip
    ledger = tmp_path / "l.csv"
    assert (await _run(corrections, emulator, ledger)).exit_code == 1
    frame = read_ledger(ledger)
    assert list(frame.columns) == [*COLUMNS, "input_input_row", "input_row"]
    retry = tmp_path / "retry.csv"
    assert run_command(add_parser, "report", str(ledger), "--retry-file", str(retry)) == 0
    header = next(csv.reader(retry.open(encoding="utf-8")))
    assert header[-2:] == ["input_input_row", "input_row"]  # a rerun of it writes the same header

"""A ledger and its run log are UTF-8: a byte that is not (a spreadsheet's cp1252 re-save, a hand
edit) is refused with exit 2 naming the file and the line, wherever in the file it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batch_override.errors import LedgerError
from batch_override.ledger import runlog
from batch_override.ledger.format import read_header
from batch_override.ledger.location import check_utf8
from batch_override.ledger.reader import LedgerFile
from tests.support import line, write_ledger


def cp1252_ledger(path: Path, bad_line: int, lines: int = 5) -> Path:
    """A ledger whose line ``bad_line`` (1 is the header) has a message re-saved as cp1252."""
    write_ledger(path, [line(i, "submitted", "R1", message="café") for i in range(lines)])
    text = path.read_bytes().split(b"\n")
    text[bad_line - 1] = text[bad_line - 1].replace("é".encode(), "é".encode("cp1252"))
    path.write_bytes(b"\n".join(text))
    return path


def test_the_header_is_read_whatever_bytes_the_lines_under_it_hold(tmp_path: Path) -> None:
    ledger = cp1252_ledger(tmp_path / "l.csv", bad_line=3)  # within the first 8 KiB
    header = read_header(ledger)
    assert header is not None and header[:2] == ["row", "media"]


@pytest.mark.parametrize("bad_line", [2, 4, 3000])
def test_a_line_that_is_not_utf8_is_named_wherever_it_is(tmp_path: Path, bad_line: int) -> None:
    ledger = cp1252_ledger(tmp_path / "l.csv", bad_line=bad_line, lines=max(5, bad_line))
    with pytest.raises(LedgerError) as raised:
        LedgerFile.open(ledger)
    column = ledger.read_bytes().split(b"\n")[bad_line - 1].index(b"\xe9") + 1
    assert str(raised.value) == (
        f"{ledger}: line {bad_line} is not UTF-8 (byte 0xe9 at byte {column} of the line); "
        "re-save the file as UTF-8"
    )
    assert raised.value.exit_code == 2


def test_a_header_that_is_not_utf8_is_line_1(tmp_path: Path) -> None:
    ledger = tmp_path / "l.csv"
    ledger.write_bytes("row,média\n".encode("cp1252"))
    with pytest.raises(LedgerError, match="line 1 is not UTF-8"):
        read_header(ledger)


def test_a_bom_and_utf8_text_are_read(tmp_path: Path) -> None:
    ledger = write_ledger(tmp_path / "l.csv", [line(0, "submitted", "R1", message="café ✓")])
    ledger.write_bytes(b"\xef\xbb\xbf" + ledger.read_bytes())
    assert LedgerFile.open(ledger).header[0] == "row"


def test_a_run_log_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "l.csv.runs.jsonl"
    whole = json.dumps({"event": "started", "run_id": "R1", "input": "x"}) + "\n"
    path.write_bytes(whole.encode() + whole.replace('"x"', '"caf\xe9"').encode("cp1252"))
    with pytest.raises(LedgerError, match=r"runs.jsonl: line 2 is not UTF-8"):
        list(runlog.records(path))


def test_a_torn_last_run_log_line_is_skipped_whatever_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "l.csv.runs.jsonl"
    whole = json.dumps({"event": "started", "run_id": "R1"}) + "\n"
    path.write_bytes(whole.encode() + b'{"event": "started", "run_id": "R2", "input": "caf\xc3')  # a kill
    assert [r["run_id"] for r in runlog.records(path)] == ["R1"]


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_the_line_named_does_not_depend_on_how_the_file_is_read(tmp_path: Path, chunk: int) -> None:
    ledger = cp1252_ledger(tmp_path / "l.csv", bad_line=4)
    with pytest.raises(LedgerError, match="line 4 is not UTF-8"):
        check_utf8(ledger, ledger.stat().st_size, chunk=chunk)
    check_utf8(ledger, ledger.read_bytes().index(b"\xe9"), chunk=chunk)  # the bytes before it are fine

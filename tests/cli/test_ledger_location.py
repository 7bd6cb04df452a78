"""Where a ledger cannot be (a special file, a place that cannot be written) and what it cannot
hold (bytes that are not UTF-8): each is one line and a documented exit code, never exit 70."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_override.cli import main as cli
from batch_override.config import RunConfig
from batch_override.errors import LedgerWriteError
from batch_override.job.runner import run_job_async
from batch_override.ledger.writer import LedgerLock
from tests.support import sha, write_csv


def corrections(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(5)])


def dry_run(tmp_path: Path, ledger: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """``run --dry-run`` in-process: its exit code and its stderr lines."""
    capsys.readouterr()
    code = cli.main(["run", str(corrections(tmp_path)), "--ledger", str(ledger), "--dry-run", "-q"])
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_ledger_re_saved_as_cp1252_exits_2_naming_the_line_in_run_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "l.csv"
    assert dry_run(tmp_path, ledger, capsys)[0] == 0
    lines = ledger.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"dry run", b"d\xe9j\xe0 vu")  # line 3: within the first 8 KiB
    ledger.write_bytes(b"\n".join(lines))
    wanted = f"{ledger}: line 3 is not UTF-8"

    code, err = dry_run(tmp_path, ledger, capsys)
    assert code == 2 and len(err) == 1 and wanted in err[0], err
    assert cli.main(["report", str(ledger)]) == 2
    (reported,) = capsys.readouterr().err.strip().splitlines()
    assert wanted in reported


def test_a_run_log_line_that_is_not_utf8_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "l.csv"
    assert dry_run(tmp_path, ledger, capsys)[0] == 0
    log = tmp_path / "l.csv.runs.jsonl"
    record = json.dumps({"event": "started", "run_id": "by-hand", "input": "caf\xe9"}) + "\n"
    with open(log, "ab") as fh:
        fh.write(record.encode("cp1252").replace(b"\\u00e9", b"\xe9"))
    code, err = dry_run(tmp_path, ledger, capsys)
    assert code == 2 and len(err) == 1 and f"{log}: line 3 is not UTF-8" in err[0], err


def test_a_fifo_as_ledger_exits_2_before_any_side_file_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "ledger"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so a run that opens it to write never blocks
    try:
        code, err = dry_run(tmp_path, fifo, capsys)
    finally:
        os.close(reader)
    assert code == 2 and len(err) == 1 and "is a FIFO (named pipe), not a regular file" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "ledger"]


def test_a_ledger_where_no_file_can_be_made_exits_6_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = dry_run(tmp_path, Path("/proc/batch-override-ledger.csv"), capsys)
    assert code == 6 and len(err) == 1 and "/proc/batch-override-ledger.csv" in err[0], err


@contextlib.contextmanager
def no_file_may_grow() -> Iterator[None]:
    """A real full disk for this process: RLIMIT_FSIZE 0 (Python ignores SIGXFSZ, so a write
    fails with EFBIG); only what runs inside the block writes files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


async def test_the_python_api_on_a_full_disk_raises_exit_6_holding_no_lock_while_it_is_kept(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "l.csv"
    config = RunConfig(input=str(corrections(tmp_path)), ledger=ledger, dry_run=True)
    with no_file_may_grow(), pytest.raises(LedgerWriteError) as raised:
        await asyncio.wait_for(run_job_async(config, None), 30)
    assert raised.value.exit_code == 6 and "File too large" in str(raised.value)
    lock = LedgerLock(ledger)  # the exception and its traceback are alive: no descriptor may be
    lock.acquire({"pid": 0})
    lock.release()

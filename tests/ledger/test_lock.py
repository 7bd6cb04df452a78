"""One ledger, one lock: whatever path names a ledger, one run holds it; a lock that cannot be
written is exit 6 with nothing held; a holder caught mid-write is still named."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from batch_override.errors import LedgerError, LedgerLocked, LedgerWriteError
from batch_override.ledger.writer import LedgerLock, check_ledger_path

HOLDER = {"pid": 4242, "host": "ops@cron-1", "run_id": "R1", "started_at": "2026-11-28T00:00:00Z"}


def acquired(ledger: Path, holder: dict[str, object] | None = None) -> LedgerLock:
    lock = LedgerLock(ledger)
    lock.acquire(holder or HOLDER)
    return lock


def test_two_hard_links_to_one_ledger_exclude_each_other(tmp_path: Path) -> None:
    first = tmp_path / "a.csv"
    first.write_text("row\n")
    second = tmp_path / "other" / "b.csv"
    second.parent.mkdir()
    os.link(first, second)
    held = acquired(first)
    try:
        with pytest.raises(LedgerLocked, match="hard link"):
            acquired(second, {"pid": 2})
    finally:
        held.release()
    acquired(second).release()  # free again once the first run ends


def test_a_lock_file_removed_while_held_still_excludes_a_second_run(tmp_path: Path) -> None:
    ledger = tmp_path / "l.csv"
    held = acquired(ledger)
    try:
        held.path.unlink()  # a cleaner of stale-looking files; the second run makes a new one
        with pytest.raises(LedgerLocked):
            acquired(ledger, {"pid": 2})
    finally:
        held.release()


def test_a_first_run_through_a_dangling_symlink_excludes_one_through_the_target(tmp_path: Path) -> None:
    target = tmp_path / "real" / "l.csv"
    target.parent.mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(target)  # the ledger does not exist yet
    held = acquired(link)
    try:
        with pytest.raises(LedgerLocked, match="pid 4242 on ops@cron-1"):
            acquired(target, {"pid": 2})
    finally:
        held.release()
    assert not target.exists()  # created to be locked, removed again: nothing was written to it


def test_a_ledger_replaced_by_its_holder_is_covered_again(tmp_path: Path) -> None:
    ledger = tmp_path / "l.csv"
    ledger.write_text("old\n")
    held = acquired(ledger)
    try:
        compacted = tmp_path / "l.csv.tmp"
        compacted.write_text("new\n")
        os.replace(compacted, ledger)  # compaction replaces the ledger while holding the lock
        held.cover()
        link = tmp_path / "hard.csv"
        os.link(ledger, link)
        with pytest.raises(LedgerLocked):
            acquired(link, {"pid": 2})
    finally:
        held.release()
    assert ledger.read_text() == "new\n"


class CaughtMidWrite(LedgerLock):
    """A second run that reads the holder's lock file while the holder is still writing it: the
    line appears at its first pause (as the holder's write would end)."""

    def _pause(self) -> None:
        self.path.write_text(json.dumps(HOLDER) + "\n")


def test_a_holder_line_read_before_it_is_written_is_read_again_and_named(tmp_path: Path) -> None:
    ledger = tmp_path / "l.csv"
    held = acquired(ledger)
    try:
        held.path.write_text("")  # the holder's line not written yet
        with pytest.raises(LedgerLocked) as raised:
            CaughtMidWrite(ledger).acquire({"pid": 2})
    finally:
        held.release()
    assert "pid 4242 on ops@cron-1" in str(raised.value)
    assert "unknown" not in str(raised.value)


def test_a_holder_line_never_written_says_holder_unknown(tmp_path: Path) -> None:
    ledger = tmp_path / "l.csv"
    held = acquired(ledger)
    try:
        held.path.write_text('{"pid": 42, "ho')  # a holder killed mid-write, its flock kept by a child

        class Quick(LedgerLock):
            def _pause(self) -> None:
                pass

        with pytest.raises(LedgerLocked, match="holder unknown"):
            Quick(ledger).acquire({"pid": 2})
    finally:
        held.release()


class FullDisk(LedgerLock):
    def __init__(self, ledger: Path, error: int) -> None:
        super().__init__(ledger)
        self.error = error

    def _write_some(self, fd: int, data: memoryview, offset: int) -> int:
        raise OSError(self.error, os.strerror(self.error))


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_a_lock_that_cannot_be_written_is_exit_6_and_holds_nothing_while_the_error_is_kept(
    tmp_path: Path, error: int
) -> None:
    ledger = tmp_path / "l.csv"
    with pytest.raises(LedgerWriteError) as raised:
        FullDisk(ledger, error).acquire(HOLDER)
    assert raised.value.exit_code == 6
    assert os.strerror(error) in str(raised.value) and str(ledger) in str(raised.value)
    # The exception and its traceback are still alive here: the lock must not be.
    acquired(ledger).release()
    assert not ledger.exists()  # the empty ledger made to be locked is gone


def test_special_files_are_refused_before_any_side_file_is_made(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    read, write = os.pipe()
    try:
        for path in (Path("/dev/null"), fifo, Path(f"/proc/self/fd/{write}")):  # the last: /dev/stdout | cat
            with pytest.raises(LedgerError, match="not a regular file") as raised:
                check_ledger_path(path)
            assert raised.value.exit_code == 2
            assert str(raised.value).count("\n") == 0
    finally:
        os.close(read)
        os.close(write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.csv"]


@pytest.mark.parametrize("side", ["l.csv.lock", "l.csv.runs.jsonl"])
def test_a_side_file_that_is_a_fifo_is_refused(tmp_path: Path, side: str) -> None:
    os.mkfifo(tmp_path / side)
    with pytest.raises(LedgerError, match=f"{side}: is a FIFO"):
        check_ledger_path(tmp_path / "l.csv")


def test_a_lock_file_that_is_a_fifo_is_refused_by_the_lock_too(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "l.csv.lock")  # made after the path was checked: the open refuses it
    with pytest.raises(LedgerError, match="FIFO"):
        acquired(tmp_path / "l.csv")
    assert not (tmp_path / "l.csv").exists()


def test_a_place_this_user_cannot_write_is_exit_6() -> None:
    with pytest.raises(LedgerWriteError) as raised:  # /proc takes no new files, root's included
        LedgerLock(Path("/proc/batch-override-ledger.csv")).acquire(HOLDER)
    assert raised.value.exit_code == 6
    assert "/proc/batch-override-ledger.csv" in str(raised.value)

"""One ledger, one lock: a run holds its ledger exclusively, whatever path it names it by.

Contract:
- :func:`check_ledger_path` refuses, before any file is created, a path that cannot be a ledger:
  a directory, a missing directory (exit 2), a special file (``/dev/null``, ``/dev/stdout``, a FIFO)
  as the ledger or as one of its side files (exit 2), a place this user cannot write (exit 6).
- :class:`LedgerLock` holds two ``flock`` s, both released by the kernel when the holder dies:
  ``LEDGER.lock`` beside the ledger's real file (symlinks resolved), which names the holder, and
  the ledger file itself, which two hard links share.  Once both are held it checks that the
  paths still name the files it locked (a file replaced between the open and the lock, a lock
  file removed by a cleaner) and starts again if not.  A run that finds either held raises
  :class:`~.errors.LedgerLocked` (exit 4) naming the holder; a lock that cannot be written raises
  :class:`~.errors.LedgerWriteError` (exit 6) with nothing left open.
- The holder line is written over the old one, then the file cut to its length, never emptied
  first; a reader that still meets an empty or partial line (a holder killed while writing,
  a read racing the write) reads again for a moment before it says "holder unknown".

Traps: the ledger must exist to be locked, so a first run creates it empty (and removes it
again if the run ends before writing its header).  Whoever *replaces* the ledger file while
holding the lock (compaction) must call :meth:`LedgerLock.cover` after: the lock held the old file.
On NFS ``flock`` is a POSIX lock, which any ``close`` of the same file by the process drops; there
only ``LEDGER.lock`` (never opened twice) excludes reliably, which covers every path but a hard link.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import LedgerError, LedgerLocked, LedgerWriteError
from . import runlog
from .location import open_regular, refuse_special

#: How often acquiring starts again when a locked file turns out replaced, before giving up.
_ATTEMPTS = 20
#: How often a reader reads an empty or partial holder line again, and how long it waits between.
_HOLDER_READS = 20
_HOLDER_PAUSE = 0.01


def lock_path(real: Path) -> Path:
    """``LEDGER.lock`` beside the ledger's real file."""
    return real.with_name(real.name + ".lock")


def side_files(real: Path) -> dict[str, Path]:
    """The files kept beside the ledger's real file, by what the user is told they are."""
    return {"the ledger's lock file": lock_path(real), "the ledger's run log": runlog.runlog_path(real)}


def check_ledger_path(path: Path) -> None:
    """Fail early, in one line, on a ledger path that cannot be a ledger file (see the module)."""
    if path.is_dir():
        raise LedgerError(f"--ledger {path}: is a directory; name a file inside it")
    refuse_special(path, "--ledger")
    real = path.resolve()
    if not real.parent.is_dir():
        raise LedgerError(f"--ledger {path}: the directory {real.parent} does not exist")
    for what, side in side_files(real).items():
        refuse_special(side, f"--ledger {path}: {what}")
    if real.exists() and not os.access(real, os.R_OK | os.W_OK):
        raise LedgerWriteError(f"--ledger {path}: not readable and writable by this user")
    if not os.access(real.parent, os.W_OK):
        raise LedgerWriteError(f"--ledger {path}: cannot create files in {real.parent}")


class LedgerLock:
    """An exclusive lock on one ledger file, whatever path names it (see the module)."""

    def __init__(self, ledger: Path) -> None:
        self.ledger = ledger
        #: The ledger's real file, as locked (symlinks resolved when :meth:`acquire` ran).
        self.real = ledger.resolve()
        self.path = lock_path(self.real)
        self._fd: int | None = None  # LEDGER.lock
        self._ledger_fd: int | None = None  # the ledger file itself
        self._created = False  # the ledger did not exist: removed at release while still empty

    def acquire(self, holder: dict[str, Any]) -> None:
        """Hold the ledger or raise: :class:`LedgerLocked` (held), :class:`LedgerWriteError`
        (the lock cannot be written), :class:`LedgerError` (a special file).  Nothing stays open
        when it raises, so an exception kept by a caller holds no lock."""
        line = (json.dumps(holder) + "\n").encode("utf-8")
        for _ in range(_ATTEMPTS):
            self.real = self.ledger.resolve()
            self.path = lock_path(self.real)
            try:
                if self._lock_both():
                    self._write_holder(line)
                    return
            except OSError as exc:
                self._close(remove_created=True)
                why = exc.strerror or type(exc).__name__
                raise LedgerWriteError(
                    f"{self.ledger}: cannot write beside the ledger ({why}: {exc.filename or self.path}); "
                    "free space or fix the permissions, then rerun"
                ) from None
            except BaseException:
                self._close(remove_created=True)
                raise
            self._close(remove_created=True)  # a file was replaced under us: lock it afresh
        raise LedgerLocked(f"{self.ledger}: the ledger or its lock file kept being replaced while locking")

    def _lock_both(self) -> bool:
        """Lock ``LEDGER.lock``, then the ledger; False when a path no longer names what was locked."""
        self._fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, "--ledger: the ledger's lock file")
        if not _flocked(self._fd):
            who = self._holder(self._fd)
            raise LedgerLocked(f"{self.ledger}: another run holds the ledger ({who})")
        if not _names(self.path, self._fd) or self.ledger.resolve() != self.real:
            return False
        self._ledger_fd, self._created = _open_ledger(self.real)
        if not _flocked(self._ledger_fd):
            raise LedgerLocked(
                f"{self.ledger}: another run holds the ledger through another path to the same file "
                "(a hard link to it; that path's lock file names the holder)"
            )
        return _names(self.real, self._ledger_fd)

    def cover(self) -> None:
        """Lock the ledger file its path names now (call after replacing it while holding the lock)."""
        assert self._fd is not None, "cover() without the lock"
        fd, _ = _open_ledger(self.real)
        if not _flocked(fd):  # pragma: no cover - a new file nobody else can have locked yet
            os.close(fd)
            raise LedgerLocked(f"{self.ledger}: another run holds the replaced ledger")
        if self._ledger_fd is not None:
            os.close(self._ledger_fd)
        self._ledger_fd, self._created = fd, False

    def _write_holder(self, line: bytes) -> None:
        """Write the holder line over the old one, then cut the file to its length: a reader
        never meets an emptied file while the line is being written."""
        assert self._fd is not None
        view = memoryview(line)
        while view:
            view = view[self._write_some(self._fd, view, len(line) - len(view)) :]
        os.ftruncate(self._fd, len(line))

    def _write_some(self, fd: int, data: memoryview, offset: int) -> int:
        """One ``pwrite(2)``; the seam where tests make the disk fill up."""
        return os.pwrite(fd, data, offset)

    def _holder(self, fd: int) -> str:
        """Who holds the lock, from its lock file's first line, read again while it is empty or
        partial (a holder writing it right now)."""
        for attempt in range(_HOLDER_READS):
            first, newline, _ = os.pread(fd, 4096, 0).partition(b"\n")
            with contextlib.suppress(ValueError):
                info = json.loads(first) if newline else None
                if isinstance(info, dict):
                    return (
                        f"pid {info.get('pid')} on {info.get('host')}, run {info.get('run_id')} "
                        f"since {info.get('started_at')}"
                    )
            if attempt + 1 < _HOLDER_READS:
                self._pause()
        return "holder unknown"

    def _pause(self) -> None:
        """The wait between two reads of a holder line; the seam where tests write the line."""
        time.sleep(_HOLDER_PAUSE)

    def release(self) -> None:
        """Release both locks; a ledger this lock created and nobody wrote to is removed first,
        and the holder line is cleared (the next holder's readers then never meet this one's)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
        self._close(remove_created=True)

    def _close(self, *, remove_created: bool) -> None:
        if self._ledger_fd is not None:
            if remove_created and self._created:
                with contextlib.suppress(OSError):
                    if os.fstat(self._ledger_fd).st_size == 0 and _names(self.real, self._ledger_fd):
                        os.unlink(self.real)
            os.close(self._ledger_fd)  # the kernel drops the flock with the last descriptor
            self._ledger_fd = None
        self._created = False
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _open_ledger(real: Path) -> tuple[int, bool]:
    """A descriptor of the ledger to lock (read-only: ``flock`` needs no more), and whether this
    call created it."""
    what = "--ledger"
    try:
        return open_regular(real, os.O_RDONLY | os.O_CREAT | os.O_EXCL, what), True
    except FileExistsError:
        return open_regular(real, os.O_RDONLY, what), False


def _flocked(fd: int) -> bool:
    """Take the exclusive ``flock`` on ``fd`` now; False when another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, not replaced)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


__all__ = ["LedgerLock", "check_ledger_path", "lock_path", "side_files"]

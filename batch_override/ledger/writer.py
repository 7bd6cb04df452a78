"""The ledger: one CSV line per input row with its outcome, appended as each row finishes.

Contract:
- Every line is complete and flushed when its row finishes; the file is fsynced at least every
  ``fsync_interval`` seconds and on close, so a crash loses at most the lines the kernel had not
  written, and a kill leaves at most one torn last line, which the next run cuts off.
- No field contains a line break (they are folded to spaces), so "a line" is "a record" and
  ``pandas.read_csv(ledger)`` reads it with no options.
- A ledger accumulates runs under one header; a row's state is its latest line.
- This module only writes, in :mod:`.format`'s format (columns, cells, times); :mod:`.reader`
  reads ledgers back and :mod:`.resume` builds the resume index from them.
- After the first failed write or fsync (any ``OSError``: ENOSPC, EDQUOT, EIO, EFBIG) the
  writer is *broken*: it raises :class:`~.errors.LedgerWriteError` and writes nothing more, ever.
  The trap it avoids: a partial line followed by a later successful append would join two lines
  in the middle of the file, where no repair reaches; a torn *last* line is cut off by the next
  run (:func:`repair_torn_tail`), exactly as after a kill.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import LedgerError, LedgerWriteError
from ..files import complete_end
from ..outcome import Outcome
from .format import COLUMNS, carried_names, neutralize, neutralize_array, one_line, read_header, utc_now
from .lock import LedgerLock as LedgerLock  # the lock's home is .lock; imported from here too
from .lock import check_ledger_path as check_ledger_path


def repair_torn_tail(path: Path) -> int:
    """Cut off a torn last line (left by a kill); returns the bytes removed.

    A last line that is a whole record without its newline (an editor dropped it) is kept and
    given its newline: it parses to the header's column count, its ``finished_at`` is a complete
    timestamp, and, when input columns are carried, its last field is a closed quote.  Only what
    cannot be a record is cut, so a ``submitted`` line is never lost and its row never sent again.
    """
    if not path.exists():
        return 0
    size = path.stat().st_size
    keep = complete_end(path)
    if keep < size:
        with open(path, "rb+") as fh:
            fh.seek(keep)
            if keep > 0 and _whole_record(fh.read(size - keep), path):
                fh.seek(size)
                fh.write(b"\n")
                return 0
            fh.truncate(keep)
    return size - keep


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _whole_record(tail: bytes, path: Path) -> bool:
    """Whether ``tail`` (a last line without its newline) is a complete ledger record."""
    header = read_header(path)
    try:
        fields = next(csv.reader([tail.decode("utf-8")], strict=True))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return False
    if header is None or len(fields) != len(header) or len(fields) < len(COLUMNS):
        return False
    if not _TIMESTAMP.fullmatch(fields[COLUMNS.index("finished_at")]):
        return False
    return len(header) == len(COLUMNS) or tail.endswith(b'"')


@dataclass(frozen=True, slots=True)
class LineValues:
    """The per-row values of a ledger line (the run-wide ones are the writer's)."""

    row: int
    media: str
    hash: str
    classification: str
    outcome: Outcome
    error_code: str = ""
    http_status: int | None = None
    attempts: int = 0
    message: str = ""


class LedgerWriter:
    """Appends ledger lines.  Single-threaded use from the event loop (no locking inside)."""

    def __init__(
        self,
        path: Path,
        carried: Sequence[str],
        run_id: str,
        *,
        neutralize: bool = True,
        fsync_interval: float = 2.0,
    ) -> None:
        self.path = path
        self.columns = COLUMNS + carried_names(carried, neutralize_names=neutralize)
        self._run_id = run_id
        self._neutralize = neutralize
        self._fsync_interval = fsync_interval
        header = read_header(path)
        if header is not None and tuple(header) != self.columns:
            raise LedgerError(
                f"{path}: the ledger's columns ({', '.join(header)}) differ from what this input "
                f"writes ({', '.join(self.columns)}); use another --ledger for this input"
            )
        self.failure: OSError | None = None  # the first failed write or sync: nothing is written after it
        # A raw O_APPEND descriptor: each line is one write() straight to the kernel, so a line is
        # never split across two writes, and there is no buffer layer to flush per row.
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._buf = io.StringIO()
        self._csv = csv.writer(self._buf, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        if header is None:
            header_buf = io.StringIO()
            csv.writer(header_buf, lineterminator="\n").writerow(self.columns)
            self._append(header_buf.getvalue().encode("utf-8"))
        self._last_sync = time.monotonic()
        self.lines = 0

    def _text(self, value: str) -> str:
        value = one_line(value)
        return neutralize(value) if self._neutralize else value

    def write(self, line: LineValues, carried: Sequence[str] = ()) -> None:
        """Append one finished row and flush it to the kernel."""
        self._csv.writerow(
            (
                line.row,
                line.media,
                line.hash,
                line.classification,
                line.outcome.value,
                line.error_code,
                "" if line.http_status is None else line.http_status,
                line.attempts,
                self._text(line.message),
                self._run_id,
                utc_now(),
                *carried,
            )
        )
        self._append(self._buf.getvalue().encode("utf-8"))
        self._buf.seek(0)
        self._buf.truncate()
        self.lines += 1
        self._sync(unless_recent=True)

    def write_table(self, table: pa.Table) -> None:
        """Append many finished rows at once (see :meth:`bulk_table`); same quoting as :meth:`write`."""
        if table.num_rows == 0:
            return
        sink = io.BytesIO()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        self._append(sink.getbuffer())
        self.lines += table.num_rows
        self._sync(unless_recent=True)

    def bulk_table(
        self,
        rows: np.ndarray[Any, Any],
        media: pa.Array,
        hashes: pa.Array,
        classes: pa.Array,
        outcomes: pa.Array,
        error_codes: pa.Array,
        messages: pa.Array,
        carried: Sequence[pa.Array],
    ) -> pa.Table:
        """A table of immediate lines (nothing sent) in ledger column order."""
        n = len(rows)
        columns = [
            pa.array(rows.astype(np.int64)),
            media,
            hashes,
            classes,
            outcomes,
            error_codes,
            pa.nulls(n, pa.int64()),
            pa.array(np.zeros(n, np.int64)),
            neutralize_array(messages, self._neutralize),
            pa.array(np.full(n, self._run_id, dtype=object), pa.string()),
            pa.array(np.full(n, utc_now(), dtype=object), pa.string()),
            *carried,
        ]
        return pa.Table.from_arrays(columns, names=list(self.columns))

    def text_array(self, values: pa.Array) -> pa.Array:
        """Input text made safe for a ledger cell (one line; formulas neutralised if enabled)."""
        return neutralize_array(values, self._neutralize)

    def _broken(self, exc: OSError) -> LedgerWriteError:
        if self.failure is None:
            self.failure = exc
        why = self.failure.strerror or type(self.failure).__name__
        return LedgerWriteError(f"{self.path}: cannot write the ledger ({why}); a rerun resumes from it")

    def _append(self, data: bytes | memoryview) -> None:
        if self.failure is not None:
            raise self._broken(self.failure)
        assert self._fd is not None, "ledger closed"
        view = memoryview(data)
        try:
            while view:  # a regular file takes it all at once; a full disk raises
                view = view[self._write_some(self._fd, view) :]
        except OSError as exc:
            raise self._broken(exc) from None

    def _write_some(self, fd: int, data: memoryview) -> int:
        """One ``write(2)``; the seam where tests make the disk fill up."""
        return os.write(fd, data)

    def _sync(self, *, unless_recent: bool = False) -> None:
        if self._fd is None or self.failure is not None:
            return
        if unless_recent and time.monotonic() - self._last_sync < self._fsync_interval:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise self._broken(exc) from None
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Sync and close; raises :class:`LedgerWriteError` if that last sync fails (closed anyway)."""
        if self._fd is None:
            return
        try:
            self._sync()
        finally:
            os.close(self._fd)
            self._fd = None

"""Reading a ledger back: the one pyarrow-level reader behind resume, ``report``, the retry file
and :func:`batch_override.read_ledger`.

Contract:
- :meth:`LedgerFile.open` checks the file far enough to read it (a regular file with the
  ledger's header, UTF-8 throughout: a line that is not is named) and notes where its last
  complete line ends; :meth:`LedgerFile.blocks` reads only up to there.  A run may be
  appending, or a kill left a torn last line: readers never repair a ledger (the next run
  does, with :func:`ledger.repair_torn_tail`).
- Text cells are never null: an empty cell reads as ``""``, as the writer wrote it.

Trap: what a reader sees is the ledger at :meth:`LedgerFile.open`; lines appended after that are
not read, so two readers opened at different times can disagree.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Full, Queue
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import LedgerError, first_line
from ..files import complete_end
from ..input.blocks import record_batches
from ..input.table import arrow_source
from .format import COLUMNS, read_header
from .location import check_utf8, refuse_special


@dataclass(frozen=True, slots=True)
class LedgerFile:
    """A ledger checked far enough to read: its columns and where its last complete line ends."""

    path: Path
    header: tuple[str, ...]
    end: int

    @property
    def carried(self) -> tuple[str, ...]:
        """The carried input columns, under their ledger names."""
        return self.header[len(COLUMNS) :]

    @classmethod
    def open(cls, path: Path) -> LedgerFile:
        """Raises :class:`LedgerError` (exit 2), in one line, for anything that is not a ledger:
        a special file, a missing or foreign header, a line that is not UTF-8 (named)."""
        if not path.exists():
            raise LedgerError(f"{path}: no such ledger")
        if path.is_dir():
            raise LedgerError(f"{path}: is a directory, not a ledger")
        refuse_special(path, "ledger")
        try:
            header = read_header(path)
            end = complete_end(path)
        except (OSError, StopIteration) as exc:
            raise LedgerError(f"{path}: cannot read the ledger ({first_line(exc)})") from None
        if header is None:
            raise LedgerError(f"{path}: the ledger is empty (no header line)")
        if tuple(header[: len(COLUMNS)]) != COLUMNS:
            raise LedgerError(
                f"{path}: not a batch-override ledger (its header starts {', '.join(header[:4])}; "
                f"expected {', '.join(COLUMNS[:4])}, ...)"
            )
        try:
            check_utf8(path, end)
        except OSError as exc:
            raise LedgerError(f"{path}: cannot read the ledger ({first_line(exc)})") from None
        return cls(path, tuple(header), end)

    def blocks(
        self,
        columns: Sequence[str],
        types: dict[str, pa.DataType] | None = None,
        *,
        block_size: int | None = None,
        ahead: bool = False,
        start: int = 0,
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of ``columns`` (text unless ``types`` says otherwise).

        ``start`` (the byte where a line starts, past the header) reads only the lines from
        there on, under the ledger's header (resume's state reads only what it has not seen).
        With ``ahead``, pyarrow parses with threads and a thread reads up to two blocks ahead,
        so the caller's work on one block overlaps the parsing of the next (resume's load).
        """
        types = types or {}
        convert = pacsv.ConvertOptions(
            include_columns=list(columns),
            column_types={c: types.get(c, pa.string()) for c in columns},
            strings_can_be_null=False,  # a quoted "" in a number column is null (http_status)
        )

        def read(size: int) -> Iterator[pa.RecordBatch]:
            options = pacsv.ReadOptions(use_threads=ahead, block_size=size)
            with open(self.path, "rb") as fh:
                # The whole file when it ends with its last line (a path lets pyarrow read it
                # natively); otherwise only the prefix up to it.
                whole = start == 0 and self.path.stat().st_size == self.end
                source: Any = arrow_source(self.path) if whole else _Prefix(fh, self.end, start)
                yield from pacsv.open_csv(source, read_options=options, convert_options=convert)

        try:
            # A line longer than the blocks (a cell of many MiB) makes the reader start again
            # with bigger blocks: every ledger reads, whatever its cell sizes.
            reader = record_batches(read, size_limit=self.end, block_size=block_size)
            yield from read_ahead(reader) if ahead else reader
        except (pa.ArrowException, OSError) as exc:
            raise LedgerError(f"{self.path}: cannot read the ledger ({first_line(exc)})") from None


class _Prefix(io.RawIOBase):
    """The first ``size`` bytes of a file: what the ledger held when the reader opened it; with
    ``start``, its header line and then only the bytes from ``start`` to ``size``."""

    def __init__(self, fh: io.BufferedReader, size: int, start: int = 0) -> None:
        self._fh = fh
        self._head = b""
        if start > 0:
            self._head = fh.readline()
            start = max(start, len(self._head))
            fh.seek(start)
        self._left = size - start if start > 0 else size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        n = self._fh.readinto(view[: min(len(view), self._left)]) or 0
        self._left -= n
        return n


def read_ahead(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Iterate ``batches`` with a thread parsing up to ``depth`` batches ahead.

    pyarrow parses without the GIL, so the caller's work on one batch overlaps the parsing of
    the next (the streaming reader alone parses only when asked).  Errors surface in order.
    """
    queue: Queue[pa.RecordBatch | BaseException | None] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        queue.put(batch, timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            queue.put(exc)

    thread = threading.Thread(target=produce, name="ledger-reader", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()

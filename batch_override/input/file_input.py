"""Reading a corrections file: CSV, gzip CSV or Parquet, streamed in batches.

pyarrow does the file work in C++ (:mod:`.table` detects format, encoding, delimiter and header);
:class:`.batch_source.BatchSource` normalises and validates what this module reads.  A row with
too few or too many fields is kept, as an invalid row, never dropped.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import InputError, first_line
from ..files import INPUT_EXTENSIONS as _EXTENSIONS
from .batch import InputOptions, spreadsheet_line
from .blocks import BLOCK_SIZE, straddles
from .cellsize import describe_size
from .object_store import ObjectCopy, is_object_uri
from .source import BatchSource
from .stdin_copy import StdinCopy, is_stream
from .table import open_table

log = logging.getLogger("batch_override")
_DEFAULTS = InputOptions()


class CorrectionsFile(BatchSource):
    """A corrections file (or ``-``: CSV on standard input; or an ``s3://`` / ``gs://`` object),
    opened far enough to know its columns.

    The trap: standard input (and a FIFO or character device named as the input) and an object
    are copied to a temporary file first (both passes read the input), which :meth:`close`
    removes; an error while opening removes it too, and so does ``halted`` set while the copy
    waits for data (a stop of the run: :class:`~batch_override.stopping.Halted`).  An object
    replaced in the store after the copy was made fails the second read (see
    :mod:`.object_store`), so the run stops before it sends rows planned from the old version.
    """

    def __init__(
        self, path: str, options: InputOptions = _DEFAULTS, halted: threading.Event | None = None
    ) -> None:
        display = "<stdin>" if path == "-" else path
        self._ragged: list[tuple[int | None, str, int]] = []
        self._spooled: StdinCopy | ObjectCopy | None = None
        self._reads = 0
        try:
            if path == "-":
                self._spooled = StdinCopy(halted=halted)
            elif is_object_uri(path):
                self._spooled = ObjectCopy(path, options, extensions=_EXTENSIONS, halted=halted)
            elif is_stream(Path(path)):  # a FIFO or a device: read once, so copied as stdin is
                self._spooled = StdinCopy(Path(path), halted)
            self.path = self._spooled.path if self._spooled is not None else Path(path)
            self._table = open_table(
                self.path, display=display, encoding=options.encoding, extensions=_EXTENSIONS
            )
            self.kind = self._table.kind
            if self._table.parquet is not None:
                self._parquet = self._table.parquet
            super().__init__(display, self._table.names, options)
        except BaseException:
            self.close()  # the stdin copy holds the whole input: never leave it behind
            raise

    @property
    def origin(self) -> dict[str, str] | None:
        """The object's version read (ETag, version id, generation); None for a local file."""
        return self._spooled.identity if isinstance(self._spooled, ObjectCopy) else None

    def physical_lines(self, rows: list[int]) -> dict[int, int]:
        """The line a text editor shows for each 0-based data row of ``rows`` (see :mod:`.table`)."""
        return self._table.physical_lines(rows)

    def compute_sha256(self) -> str:
        """SHA-256 of the input file's bytes (for the run log); cached."""
        if self.sha256 is None:
            digest = hashlib.sha256()
            with open(self.path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
            self.sha256 = digest.hexdigest()
        return self.sha256

    def close(self) -> None:
        """Remove the copy of standard input or of the object, if any."""
        if self._spooled is not None:
            self._spooled.close()
            self._spooled = None

    # -- reading -----------------------------------------------------------------------------
    def _record_batches(self) -> Iterator[pa.RecordBatch]:
        self._reads += 1
        if self._reads > 1 and isinstance(self._spooled, ObjectCopy):
            change = self._spooled.changed()
            if change is not None:
                # Pass two reports any failed read as "the input changed": say how, here.
                error = self._fail(f"the object was replaced in the store since the run copied it ({change})")
                log.warning("%s", error)
                raise error
        if self.kind == "parquet":
            yield from self._parquet_batches()
            return
        # Single-threaded: the streaming reader is as fast that way here, and only then does
        # pyarrow number the rows it hands to invalid_row_handler.
        # The handler holds the list, not ``self``: pyarrow's reader (and its threads) may keep
        # it after the read, and must not keep the stdin copy's owner alive with it.
        yield from self._table.csv_reader(invalid_row_handler=_keeping_ragged_rows(self._ragged))

    def _repair(self, record: pa.RecordBatch, start: int) -> tuple[pa.RecordBatch, dict[int, str]]:
        """Put the rows pyarrow skipped back in their places, as text in the hash column.

        Their place comes from the physical line number, which equals the data row + 2 unless a
        quoted field spans lines; the place is clamped into this batch either way.
        """
        if not self._ragged:
            return record, {}
        ragged, self._ragged = self._ragged, []
        n, names = record.num_rows, record.schema.names
        filler = {name: pa.array([""] * len(ragged), pa.string()) for name in names}
        filler[self.columns.hash] = pa.array([text for _, text, _ in ragged], pa.string())
        combined = pa.Table.from_batches([record]).combine_chunks()
        combined = pa.concat_tables([combined, pa.table(filler).select(names)]).combine_chunks()
        order = list(range(n))
        notes: dict[int, str] = {}
        for k, (number, _, _fields) in enumerate(ragged):
            want = (number - 2 - start) if number is not None else len(order)
            place = min(max(want, 0), len(order))
            order.insert(place, n + k)
        for place, source in enumerate(order):
            if source >= n:
                _, _, fields = ragged[source - n]
                notes[place] = f"the row has {fields} field(s) where the header has {len(names)}"
        taken = combined.take(pa.array(order)).combine_chunks()
        return taken.to_batches()[0], notes

    def _parquet_batches(self) -> Iterator[pa.RecordBatch]:
        schema = self._parquet.schema_arrow
        hash_type = schema.field(self.columns.hash).type
        if not (
            pa.types.is_string(hash_type)
            or pa.types.is_large_string(hash_type)
            or pa.types.is_binary(hash_type)
            or pa.types.is_large_binary(hash_type)
            or pa.types.is_fixed_size_binary(hash_type)
            or pa.types.is_dictionary(hash_type)
        ):
            raise self._fail(
                f"column {self.columns.hash!r} holds {hash_type} values; expected text or 32-byte binary"
            )
        yield from self._parquet.iter_batches(batch_size=self._batch_rows)

    def _read_error(self, exc: BaseException, start: int) -> InputError:
        text = first_line(exc)
        if straddles(exc):
            return self._fail(
                f"a row after line {spreadsheet_line(start)} is longer than the reader's block of "
                f"{describe_size(BLOCK_SIZE)}: cells that large are not supported ({text})"
            )
        if self.kind != "parquet" and self._table.is_decode_error(exc):
            return self._table.decode_error()
        if self.kind == "csv.gz" and (
            "gzip" in text.lower() or "zlib" in text.lower() or isinstance(exc, EOFError)
        ):
            return self._fail(f"truncated or corrupt gzip data after line {spreadsheet_line(start)} ({text})")
        return self._fail(f"cannot read after line {spreadsheet_line(start)}: {text}")


__all__ = ["CorrectionsFile"]


def _keeping_ragged_rows(ragged: list[tuple[int | None, str, int]]) -> Callable[[pacsv.InvalidRow], str]:
    """An ``invalid_row_handler`` that keeps a row with too few or too many fields in
    ``ragged``, to come back as an invalid row (never dropped)."""

    def keep(row: pacsv.InvalidRow) -> str:
        ragged.append((row.number, row.text, row.actual_columns))
        return "skip"

    return keep

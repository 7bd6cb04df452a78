"""Reading a CSV in blocks, whatever the size of its records.

pyarrow parses a CSV in blocks of ``block_size`` bytes and refuses a record that straddles more
than one block boundary ("straddling object").  Any fixed block size therefore fails on some
file (a ledger line carrying a cell of a few MiB), while a block size fit for the largest
record would cost that much memory on every read.  :func:`record_batches` keeps the small block
and, only when a record straddles, reads again from the start with blocks four times as big,
skipping the rows it already handed out.  The trap: the batches after a restart are cut
differently, but the same file gives the same batches on every read.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

#: The block size reads start with: 4 MiB holds thousands of ordinary rows.
BLOCK_SIZE = 1 << 22


def straddles(exc: BaseException) -> bool:
    """Is ``exc`` pyarrow's complaint that a record is larger than its blocks?"""
    return isinstance(exc, pa.ArrowInvalid) and "straddl" in str(exc)


def record_batches(
    open_reader: Callable[[int], Iterator[pa.RecordBatch]], size_limit: int, block_size: int = BLOCK_SIZE
) -> Iterator[pa.RecordBatch]:
    """The batches of ``open_reader(block_size)``, read again with bigger blocks as records require.

    ``size_limit`` is the file's size: a block that holds the whole file cannot be straddled, so
    the block never grows past it (a straddling error then is another problem, and is raised).
    """
    done = 0
    while True:
        skip = done
        try:
            for batch in open_reader(block_size):
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                if skip:
                    batch, skip = batch.slice(skip), 0
                done += batch.num_rows
                yield batch
            return
        except pa.ArrowInvalid as exc:
            if not straddles(exc) or block_size > size_limit:
                raise
            block_size *= 4


def file_batches(
    path: Path,
    convert: pacsv.ConvertOptions,
    *,
    end: int | None = None,
    use_threads: bool = False,
    block_size: int = BLOCK_SIZE,
) -> Iterator[pa.RecordBatch]:
    """The record batches of the CSV file ``path`` (its first ``end`` bytes if given), header
    included as column names, read with :func:`record_batches`."""
    size = path.stat().st_size if end is None else end

    def read(block: int) -> Iterator[pa.RecordBatch]:
        options = pacsv.ReadOptions(block_size=block, use_threads=use_threads)
        if end is None:  # pyarrow's own file reader: no Python call (and GIL) per block read
            yield from pacsv.open_csv(str(path), read_options=options, convert_options=convert)
            return
        with open(path, "rb") as fh:
            yield from pacsv.open_csv(_Prefix(fh, size), read_options=options, convert_options=convert)

    return record_batches(read, size_limit=size, block_size=block_size)


class _Prefix(io.RawIOBase):
    """The first ``size`` bytes of a file (a ledger as it was when its reading began)."""

    def __init__(self, fh: io.BufferedReader, size: int) -> None:
        self._fh = fh
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = self._fh.readinto(view[: min(len(view), self._left)]) or 0
        self._left -= n
        return n

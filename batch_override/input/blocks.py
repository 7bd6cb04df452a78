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

from collections.abc import Callable, Iterator

import pyarrow as pa

#: The block size every CSV read (input, ledger, report) starts with: 4 MiB holds thousands of
#: ordinary rows.  Read when a read starts, so a test may make it small to cross block boundaries.
BLOCK_SIZE = 1 << 22


def straddles(exc: BaseException) -> bool:
    """Is ``exc`` pyarrow's complaint that a record is larger than its blocks?"""
    return isinstance(exc, pa.ArrowInvalid) and "straddl" in str(exc)


def record_batches(
    open_reader: Callable[[int], Iterator[pa.RecordBatch]], size_limit: int, block_size: int | None = None
) -> Iterator[pa.RecordBatch]:
    """The batches of ``open_reader(block_size)``, read again with bigger blocks as records require.

    ``size_limit`` is the file's size: a block that holds the whole file cannot be straddled, so
    the block never grows past it (a straddling error then is another problem, and is raised).
    ``block_size`` None: :data:`BLOCK_SIZE`.
    """
    block_size = block_size or BLOCK_SIZE
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

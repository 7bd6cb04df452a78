"""Reading a CSV in blocks: a record bigger than a block grows the block, no row twice or lost."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from batch_override.input.blocks import record_batches, straddles


def csv_reader(data: bytes) -> tuple[list[int], Callable[[int], Iterator[pa.RecordBatch]]]:
    """pyarrow's reader of ``data`` for :func:`record_batches`, and the block sizes it was opened with."""
    sizes: list[int] = []

    def open_reader(block_size: int) -> Iterator[pa.RecordBatch]:
        sizes.append(block_size)
        return iter(pacsv.open_csv(io.BytesIO(data), read_options=pacsv.ReadOptions(block_size=block_size)))

    return sizes, open_reader


def test_a_record_larger_than_the_block_rereads_with_bigger_blocks_and_hands_out_each_row_once() -> None:
    rows = [f"{i},{'x' * (5000 if i == 150 else 10)}\n" for i in range(300)]
    data = ("id,cell\n" + "".join(rows)).encode()
    sizes, open_reader = csv_reader(data)
    table = pa.Table.from_batches(list(record_batches(open_reader, len(data), block_size=1024)))
    assert table.column("id").to_pylist() == list(range(300))
    assert sizes[0] == 1024 and len(sizes) > 1
    assert all(b == a * 4 for a, b in itertools.pairwise(sizes))


def test_the_same_file_gives_the_same_batches_on_every_read() -> None:
    # The trap: batches after a restart are cut differently from the first read's, but the
    # same on every read (plan's pass two compares them with pass one's).
    data = ("id,cell\n" + "".join(f"{i},{'y' * (3000 if i % 97 == 5 else 8)}\n" for i in range(400))).encode()
    _, open_reader = csv_reader(data)
    first = [b.num_rows for b in record_batches(open_reader, len(data), block_size=1024)]
    again = [b.num_rows for b in record_batches(open_reader, len(data), block_size=1024)]
    assert first == again and sum(first) == 400


def test_an_error_that_is_not_a_straddle_or_a_block_past_the_file_size_is_raised() -> None:
    def broken(block_size: int) -> Iterator[pa.RecordBatch]:
        raise pa.ArrowInvalid("CSV parse error: Expected 2 columns, got 3")
        yield  # pragma: no cover

    with pytest.raises(pa.ArrowInvalid, match="Expected 2 columns"):
        list(record_batches(broken, 1 << 30))

    sizes: list[int] = []

    def always_straddles(block_size: int) -> Iterator[pa.RecordBatch]:
        sizes.append(block_size)
        raise pa.ArrowInvalid("straddling object straddles two block boundaries")
        yield  # pragma: no cover

    with pytest.raises(pa.ArrowInvalid, match="straddl"):
        list(record_batches(always_straddles, 100, block_size=16))
    assert sizes == [16, 64, 256]  # 256 already holds the whole 100-byte file: no further growth


def test_straddles_tells_pyarrows_complaint_from_other_errors() -> None:
    assert straddles(
        pa.ArrowInvalid("straddling object straddles two block boundaries (try to increase block size?)")
    )
    assert not straddles(pa.ArrowInvalid("Expected 2 columns"))
    assert not straddles(ValueError("straddling"))

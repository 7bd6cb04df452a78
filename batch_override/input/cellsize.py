"""The size limit on the cells a row carries into the ledger.

A cell over :data:`MAX_CELL` bytes is never copied to the ledger: its row is invalid and the cell
is replaced by a short marker that gives its size, so no ledger line outgrows what its readers
take in one piece and a spreadsheet can still open the ledger.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: The largest cell, in bytes of UTF-8, that a row may carry into the ledger.
MAX_CELL = 1 << 20


def oversized(values: pa.Array) -> dict[int, int]:
    """The cells of a text column over :data:`MAX_CELL` bytes: {position: size}."""
    if len(values) == 0:
        return {}
    lengths = pc.binary_length(values)
    largest = pc.max(lengths).as_py()
    if largest is None or largest <= MAX_CELL:
        return {}
    sizes = pc.fill_null(lengths, 0).to_numpy(zero_copy_only=False)
    return {int(i): int(sizes[i]) for i in np.flatnonzero(sizes > MAX_CELL)}


def replace_cells(values: pa.Array, sizes: dict[int, int]) -> pa.Array:
    """``values`` with each cell of ``sizes`` replaced by a marker that gives its size."""
    if not sizes:
        return values
    mask = np.zeros(len(values), np.bool_)
    mask[list(sizes)] = True
    markers = np.full(len(values), "", dtype=object)
    for i, size in sizes.items():
        markers[i] = f"<{size}-byte cell not copied: over the {MAX_CELL >> 20} MiB limit>"
    return pc.if_else(pa.array(mask), pa.array(markers, pa.string()), values)


def describe_size(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"

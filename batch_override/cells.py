"""Input cells as text, and the size limit on the cells a ledger line carries.

Parquet columns come in any type; the ledger holds text.  A binary value is decoded as UTF-8
value by value, so one value that is not UTF-8 (shown with ``\\xNN`` escapes) leaves the rest of
its column as it was written.  A cell over :data:`MAX_CELL` bytes is never copied to the ledger:
its row is invalid and the cell is replaced by a short marker, so no ledger line outgrows what
its readers take in one piece.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: The largest cell, in bytes of UTF-8, that a row may carry into the ledger.
MAX_CELL = 1 << 20


def as_text(values: pa.Array) -> pa.Array:
    """``values`` as a string array (nulls of non-string types become empty)."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_string(values.type):
        return values
    try:
        return pc.fill_null(values.cast(pa.string()), "")
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        pass
    if _is_binary(values.type):  # at least one value is not UTF-8: decode each on its own
        decoded = [None if v is None else v.decode("utf-8", "backslashreplace") for v in values.to_pylist()]
        return pa.array(decoded, pa.string())
    return pa.array([None if v is None else str(v) for v in values.to_pylist()], pa.string())


def hash_text(values: pa.Array) -> pa.Array:
    """A hash column as text: binary values of 32 bytes become hex (others stay flagged invalid)."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not _is_binary(values.type):
        return as_text(values)
    from .keys import bytes_to_hex  # local: keys imports config only, but keep source light

    lengths = pc.fill_null(pc.binary_length(values), -1).to_numpy(zero_copy_only=False)
    good = lengths == 32
    out = np.empty(len(values), dtype=object)
    out[:] = ""
    if good.any():
        picked = values.filter(pa.array(good))
        raw = np.frombuffer(b"".join(picked.cast(pa.binary()).to_pylist()), np.uint8).reshape(-1, 32)
        out[good] = np.asarray(bytes_to_hex(raw).to_pylist(), dtype=object)
    for i in np.flatnonzero(~good & (lengths >= 0)).tolist():
        out[i] = f"<{lengths[i]}-byte binary>"
    return pa.array(out, pa.string())


def _is_binary(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind)
    )


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

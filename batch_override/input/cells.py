"""Input values that are not text, written as ledger text by one rule.

A CSV's cells are text already; a Parquet file, a pandas DataFrame or a pyarrow Table can hold
numbers, times and missing values.  Their carried columns reach the ledger as:

- text as it is; integers as they are (``42``);
- floats in shortest round-trip form, as Arrow writes them (``0.1``, ``1e+20``; an integral
  float has no ``.0``: ``2``);
- missing values (null, ``None``, ``NaN``, ``NaT``) as an empty cell;
- datetimes in ISO 8601 with a ``T``, the fraction without trailing zeros
  (``2026-11-28T09:15:49.5``); a timezone-aware one in UTC with ``Z``; dates as ``2026-11-28``;
- booleans as ``true`` / ``false``, categorical values as their value, anything else as Arrow
  casts it to text (else Python's ``str``); binary as UTF-8, value by value (bad bytes as ``\\xNN``).

The trap: a float column loses its ``.0`` (``2.0`` is written ``2``), and an integer column with a
missing value is a float column in pandas unless it has the ``Int64`` dtype.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def as_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``values`` as non-null text by the module's rule (vectorised, except the last fallback)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    kind = values.type
    if pa.types.is_string(kind):
        return pc.fill_null(values, "") if values.null_count else values
    if pa.types.is_floating(kind):
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, kind), values)
    if pa.types.is_timestamp(kind):
        return pc.fill_null(_iso_8601(values), "")
    try:
        text = values.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        text = pa.array([_one_text(v) for v in values.to_pylist()], pa.string())
    return pc.fill_null(text, "")


def _one_text(value: object) -> str | None:
    """One value the vectorised cast refused: bytes that are not all UTF-8 are decoded on their
    own, with ``\\xNN`` for the bad bytes, so the other values of the column stay plain text."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _iso_8601(values: pa.Array) -> pa.Array:
    kind = values.type
    # Arrow keeps an aware timestamp as UTC: dropping the zone keeps the UTC wall time.
    text = values.cast(pa.timestamp(kind.unit)).cast(pa.string())
    text = pc.replace_substring(text, " ", "T", max_replacements=1)
    if kind.unit != "s":  # Arrow writes every digit of the unit: drop the trailing zeros
        text = pc.replace_substring_regex(text, "0+$", "")
        text = pc.replace_substring_regex(text, r"\.$", "")
    if kind.tz is not None:
        text = pc.binary_join_element_wise(text, "Z", "")
    return text

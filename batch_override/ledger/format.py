"""The ledger's format: its columns, how a cell is written, how a time is written.

The writer writes it and the reader, resume and ``report`` read it; none of them imports another
for it.  Changing anything here changes a file format users read with pandas and spreadsheets.

Contract:
- The header is :data:`COLUMNS`, then the carried input columns (:func:`carried_names`).
- No cell contains a line break (:func:`one_line`), so a line is a record.
- A text cell a spreadsheet would run as a formula (starting with ``= + - @``, tab or CR) gets a
  leading apostrophe (:func:`neutralize`), unless the run turned that off.
- ``finished_at`` is ISO 8601 UTC with milliseconds (:func:`utc_now`).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .location import utf8_line

COLUMNS = (
    "row", "media", "hash", "classification", "outcome", "error_code",
    "http_status", "attempts", "message", "run_id", "finished_at",
)  # fmt: skip


def read_header(path: Path) -> list[str] | None:
    """The ledger's column names; None for a missing or empty file.

    A UTF-8 BOM and a CRLF end are accepted (a spreadsheet's "CSV UTF-8" save writes both), as
    pyarrow accepts them when it reads the lines below.  Only the first line is decoded (a
    text-mode ``readline`` would decode a whole buffer, and fail on a later line's byte); a header
    that is not UTF-8 raises :class:`~.errors.LedgerError` naming line 1.
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as fh:
        first = fh.readline()
    return next(csv.reader([utf8_line(path, first, 1).rstrip("\r\n")]))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_PATTERN = r"^[=+\-@\t\r]"

_second: list[Any] = [None, ""]  # the last whole second formatted, reused within that second


def utc_now() -> str:
    """Now, as ISO 8601 UTC with milliseconds (``2026-11-28T09:15:49.123Z``); called per row."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[0], _second[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second[1]}.{int((now - second) * 1000):03d}Z"


def carried_names(carried: Sequence[str], *, neutralize_names: bool = True) -> tuple[str, ...]:
    """Ledger names of carried input columns; a name the ledger uses already (its own column, or
    an earlier carried name) gets ``input_`` until it is unique.  The input's names that collide
    with nothing keep theirs: ``row`` beside ``input_row`` becomes ``input_input_row``.
    Names are header cells: one line, neutralised like any cell unless ``--raw-cells``."""
    cleaned = []
    for name in carried:
        clean = " ".join(name.split()) or "unnamed"
        cleaned.append(neutralize(clean) if neutralize_names else clean)
    out: list[str | None] = [None] * len(cleaned)
    taken = set(COLUMNS)
    for i, clean in enumerate(cleaned):
        if clean not in taken:
            out[i] = clean
            taken.add(clean)
    for i, clean in enumerate(cleaned):
        if out[i] is None:
            while clean in taken:
                clean = f"input_{clean}"
            out[i] = clean
            taken.add(clean)
    return tuple(name for name in out if name is not None)


def neutralize(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def one_line(text: str) -> str:
    return (
        text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
        if "\n" in text or "\r" in text
        else text
    )


def neutralize_array(values: pa.Array, enabled: bool) -> pa.Array:
    """Vectorised :func:`one_line` and :func:`neutralize` for a text column."""
    values = pc.replace_substring_regex(values, pattern=r"\r\n|\r|\n", replacement=" ")
    return neutralize_formulas(values) if enabled else values


def neutralize_formulas(values: pa.Array) -> pa.Array:
    """Vectorised :func:`neutralize` alone: line breaks are kept (a CSV cell quotes them)."""
    flagged = pc.match_substring_regex(values, _FORMULA_PATTERN)
    return pc.if_else(flagged, pc.binary_join_element_wise("'", values, ""), values)

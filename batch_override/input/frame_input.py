"""pandas at the Python edge, the way in: a DataFrame (or a pyarrow Table) as the job's input.

Only a run whose ``RunConfig.input`` is a table imports this module, so the command line never
imports pandas.

Contract: a table input goes through the same validation, planning, ledger and resume as a file:
it becomes the same batches a Parquet file of the same columns would (its index is dropped;
carried values that are not text follow :mod:`.cells`' rule, ``Period`` and ``Interval``
values their text).  The run log records it as ``<DataFrame>`` (or ``<pyarrow.Table>``) with its
row count and a content hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ..errors import InputError, first_line
from .batch import InputOptions
from .source import BatchSource


def to_table(data: object) -> pa.Table:
    """A DataFrame (without its index) or a Table as a Table; InputError for anything else."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pd.DataFrame):
        _check_names(data)
        try:
            return pa.Table.from_pandas(_as_strings(data), preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise InputError(f"<DataFrame>: {_unconvertible(data, exc)}") from None
    raise InputError(
        f"input: expected a file path, a pandas.DataFrame or a pyarrow.Table, not {type(data).__name__}"
    )


def _as_strings(data: pd.DataFrame) -> pd.DataFrame:
    """``Period`` and ``Interval`` columns as the text pandas shows (``2024-01``, ``(0, 1]``),
    missing values missing.  The trap: pyarrow keeps them as extension types whose values read
    as ordinals (``648``) and dicts (``{'left': 0, 'right': 1}``), not as the user's values."""
    odd = [
        str(name) for name, kind in data.dtypes.items() if isinstance(kind, pd.PeriodDtype | pd.IntervalDtype)
    ]
    if not odd:
        return data
    return data.assign(**{name: data[name].astype(str).where(data[name].notna(), None) for name in odd})


def _check_names(data: pd.DataFrame) -> None:
    """A file's header checks, before pandas sees the names: each a string, none twice."""
    seen: set[str] = set()
    for name in data.columns:
        if not isinstance(name, str):
            raise InputError(
                f"<DataFrame>: column {name!r} has a name of type {type(name).__name__}, not a string; "
                "name every column, e.g. df.columns = [...]"
            )
        key = name.strip().lower()
        if key in seen:
            raise InputError(f"<DataFrame>: column {name.strip()!r} appears twice in the header")
        seen.add(key)


def _unconvertible(data: pd.DataFrame, exc: Exception) -> str:
    """Which column pyarrow could not convert, and why, in words for the user."""
    for name in data.columns:
        try:
            pa.array(data[name], from_pandas=True)
        except (pa.ArrowException, ValueError, TypeError) as column_exc:
            return (
                f"column {str(name)!r} holds values of mixed types ({first_line(column_exc)}); "
                "give it one type, e.g. .astype(str)"
            )
    return f"cannot read it as columns ({first_line(exc)})"


def content_sha256(table: pa.Table) -> str:
    """SHA-256 of the table's Arrow IPC stream: its column names, types and values, without
    schema metadata (pandas' own) and whatever its chunking."""
    table = table.replace_schema_metadata(None).combine_chunks()
    digest = _Digest()
    with pa.ipc.new_stream(digest, table.schema) as writer:
        writer.write_table(table)
    return digest.hash.hexdigest()


class _Digest:
    """A write-only file that hashes what it is given (an IPC stream sink)."""

    closed = False

    def __init__(self) -> None:
        self.hash = hashlib.sha256()

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        return view.nbytes

    def flush(self) -> None:
        pass


class TableInput(BatchSource):
    """A DataFrame or Table as the job's input: the same columns, batches and checks as a file.

    The trap: the table stays in memory for the run (both passes read it), as the caller holds it.
    """

    def __init__(self, data: object, options: InputOptions) -> None:
        self._arrow = to_table(data)
        display = "<DataFrame>" if isinstance(data, pd.DataFrame) else "<pyarrow.Table>"
        self.path = Path(display)
        self.kind = "table"
        super().__init__(display, list(self._arrow.column_names), options)

    def _record_batches(self) -> Iterator[pa.RecordBatch]:
        yield from self._arrow.to_batches(max_chunksize=self._batch_rows)

    def compute_sha256(self) -> str:
        if self.sha256 is None:
            self.sha256 = content_sha256(self._arrow)
        return self.sha256

"""The retry file: the ledger lines worth sending again, written as an input for ``batch-override run``.

Contract: the file reads with the *same command line* as the run that wrote the lines.  Its
hash, classification and media columns carry the names that run read them under (the run log
records them, e.g. ``--hash-column sha256``), then come the ledger's carried columns under their
ledger names, so running the file into the same ledger passes its column check.

Traps:
- A run logged by a version that did not record its columns gets the default names.
- Rows come in ledger order (the order they finished), not input order; carried cells are
  written as the ledger holds them, i.e. with the apostrophe before a formula-like cell.
- A key column's name that reads as a formula (``--hash-column @h``) gets the apostrophe too, as
  a carried column's name does in the ledger: the hint then names it so (``--hash-column "'@h"``),
  and the run reads it under that name.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import LedgerError, first_line
from ..files import atomic_writer
from ..ledger.format import neutralize
from ..ledger.reader import LedgerFile
from ..ledger.runlog import RunRecords

#: The ledger columns a retry file is made of, and their default input names.
RETRY_COLUMNS = ("hash", "classification", "media")
_FLAGS = ("--hash-column", "--classification-column", "--media-column")


def retry_columns(records: Mapping[str, RunRecords], run_id: str | None = None) -> tuple[str, ...]:
    """The input names of the hash, classification and media columns of run ``run_id`` (None:
    the latest run that recorded them), from the run log, formula-neutralised as a header cell
    (see the module's traps); the defaults when it has none."""
    runs = [run_id] if run_id is not None else list(records)[::-1]
    for run in runs:
        entry = records.get(run)
        record = entry.first if entry is not None else None
        logged = record.columns if record is not None else None
        if logged is not None:
            return tuple(neutralize(str(logged.get(c) or c)) for c in RETRY_COLUMNS)
    return RETRY_COLUMNS


def column_flags(columns: tuple[str, ...]) -> str:
    """The ``run`` flags that read ``columns`` (empty for the defaults), shell-quoted, for the hint."""
    pairs = zip(_FLAGS, columns, RETRY_COLUMNS, strict=True)
    return "".join(f" {flag} {shlex.quote(name)}" for flag, name, default in pairs if name != default)


def write_retry_file(
    ledger: Path, lines: npt.NDArray[np.int64], path: Path, columns: tuple[str, ...] = RETRY_COLUMNS
) -> int:
    """Write ledger ``lines`` (0-based line numbers, ascending) as an input for ``batch-override run``,
    its first three columns named ``columns`` (see :func:`retry_columns`).

    Returns the number of rows written; with none, the file holds only the header, which ``run``
    refuses (exit 2): check the count first.
    """
    view = LedgerFile.open(ledger)
    names = [*columns, *view.carried]
    folded = [n.strip().lower() for n in names]
    if len(set(folded)) < len(folded):
        raise LedgerError(
            f"{ledger}: the run's column names ({', '.join(columns)}) repeat a carried column's; "
            "no input could name both"
        )
    read = [*RETRY_COLUMNS, *view.carried]
    wanted = np.asarray(lines, np.int64)
    schema = pa.schema([(c, pa.string()) for c in names])
    written = 0
    try:
        with atomic_writer(path) as fh:
            writer = pacsv.CSVWriter(fh, schema, write_options=pacsv.WriteOptions(quoting_style="needed"))
            start = 0
            for batch in view.blocks(read) if len(wanted) else iter(()):
                lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
                if hi > lo:
                    part = batch.take(pa.array(wanted[lo:hi] - start)).select(read)
                    writer.write_batch(pa.RecordBatch.from_arrays(part.columns, schema=schema))
                    written += int(hi - lo)
                start += batch.num_rows
                if hi >= len(wanted):
                    break
            writer.close()
    except OSError as exc:
        raise LedgerError(f"{path}: cannot write the retry file ({first_line(exc)})") from None
    return written

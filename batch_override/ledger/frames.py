"""pandas at the Python edge, the way out: the ledger as a typed DataFrame.

Only :func:`read_ledger` imports this module, so the command line never imports pandas (the way
in, a DataFrame as the job's input, is :mod:`..input.frame_input`).

Contract: :func:`read_ledger` types the columns: ``finished_at`` a UTC datetime, ``http_status``
and ``attempts`` nullable ``Int64``, ``outcome`` and ``error_code`` categoricals, the rest text.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from . import runlog
from .reader import LedgerFile
from .resume import trusted_lines

#: Ledger columns that are not text, as :func:`read_ledger` reads them.
_TYPES = {
    "row": pa.int64(),
    "http_status": pa.int64(),
    "attempts": pa.int64(),
    "finished_at": pa.timestamp("ms", tz="UTC"),
}
_CATEGORIES = ("outcome", "error_code")
_KEY = ["media", "hash", "classification"]


def read_ledger(path: str | Path, latest: bool = False) -> pd.DataFrame:
    """The ledger at ``path`` as a DataFrame, typed (see the module docstring), in file order.

    With ``latest``, only each (media, hash, classification)'s latest line among the lines resume
    would trust for the ledger's last run: decisive lines of runs made against that run's API URL
    with its key, per the run log.  The trap: without a run log nothing is trusted, so the frame
    is empty.  The whole ledger is read into memory; raises LedgerError (one line) for a file
    that is not a ledger.
    """
    view = LedgerFile.open(Path(path))
    schema = pa.schema([(c, _TYPES.get(c, pa.string())) for c in view.header])
    table = pa.Table.from_batches(list(view.blocks(view.header, _TYPES)), schema=schema)
    if latest:
        table = table.filter(pa.array(trusted_lines(table, _last_run_trusts(view.path))))
    frame: pd.DataFrame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    frame["row"] = frame["row"].astype("int64")
    for name in _CATEGORIES:
        frame[name] = frame[name].astype("category")
    if latest:
        frame = frame.drop_duplicates(_KEY, keep="last").reset_index(drop=True)
    return frame


def _last_run_trusts(ledger: Path) -> list[str]:
    """The runs the ledger's last run (by the run log) trusts, as resume computed them."""
    for entry in reversed(list(runlog.run_records(ledger).values())):
        record = entry.first
        if record is not None and record.api_url is not None and record.key_fingerprint is not None:
            path = runlog.runlog_path(ledger)
            return list(runlog.trusted_runs(path, record.api_url, record.key_fingerprint))
    return []

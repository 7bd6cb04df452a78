"""batch-override: submit identifAI classification overrides in bulk.

For orchestrators::

    from batch_override import RunConfig, run_job
    summary = run_job(RunConfig(input="corrections.parquet", ledger=Path("ledger.csv")), api_key="...")
    summary.exit_code, summary.outcomes

``input`` may also be a pandas DataFrame; :func:`read_ledger` returns the ledger as a typed one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

from .apikey import ApiKey, load_api_key
from .config import Rate, RunConfig
from .errors import BatchOverrideError, ExitCode
from .outcome import Outcome
from .summary import Summary

if TYPE_CHECKING:
    import pandas as pd


def run_job(config: RunConfig, api_key: ApiKey | str | None = None) -> Summary:
    """Run a job to the end (blocking) and return its :class:`Summary`.

    ``api_key`` defaults to ``$IDENTIFAI_API_KEY``; a dry run needs none.  Problems found before
    anything is sent raise :class:`BatchOverrideError` (``.exit_code`` tells which).  A bug raises
    its own exception, but only after the run has ended cleanly (rows recorded, lock released).
    """
    from .job.runner import run_job_async

    key: ApiKey | None
    if isinstance(api_key, str):
        key = ApiKey(api_key)
    elif api_key is None and not config.dry_run:
        key = load_api_key(None)
    else:
        key = api_key
    return asyncio.run(run_job_async(config, key))


def read_ledger(path: str | Path, latest: bool = False) -> pd.DataFrame:
    """The ledger as a DataFrame: ``finished_at`` a UTC datetime, ``http_status`` and ``attempts``
    nullable ``Int64``, ``outcome`` and ``error_code`` categoricals, the other columns text.

    ``latest=True`` keeps each (media, hash, classification)'s latest line among those resume
    would trust for the ledger's last run (same API URL and key, per the run log): the state a
    rerun would act on.  Imports pandas (the command line never does).
    """
    from .ledger.frames import read_ledger as read

    return read(path, latest)


__all__ = [
    "ApiKey", "BatchOverrideError", "ExitCode", "Outcome", "Rate", "RunConfig", "Summary",
    "__version__", "load_api_key", "read_ledger", "run_job",
]  # fmt: skip

"""batch-override: submit identifAI classification overrides in bulk.

For orchestrators::

    from batch_override import RunConfig, run_job
    summary = run_job(RunConfig(input="corrections.parquet", ledger=Path("ledger.csv")), api_key="...")
    summary.exit_code, summary.outcomes

``input`` may also be a pandas DataFrame; :func:`read_ledger` returns the ledger as a typed one.
``raise_on_failure=True`` turns a run that did not exit 0 into a :class:`RunFailed` subclass
(``.summary``, ``.retryable``, ``.exit_code``), which is what a task's retry policy acts on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .apikey import ApiKey, load_api_key
from .config import Rate, RunConfig
from .errors import (
    BatchOverrideError,
    DeadlineReached,
    ExitCode,
    LedgerUnwritable,
    RowsFailed,
    RunAborted,
    RunFailed,
    RunInterrupted,
    ServerOutage,
)
from .outcome import Outcome
from .schedule import StopAt
from .stopping import Interrupts, StopHandle
from .summary import OnProgress, ProgressSnapshot, Summary

if TYPE_CHECKING:
    import pandas as pd


def _key(config: RunConfig, api_key: ApiKey | str | None) -> ApiKey | None:
    if isinstance(api_key, str):
        return ApiKey(api_key)
    if api_key is None and not config.dry_run:
        return load_api_key(None)
    return api_key


def run_job(
    config: RunConfig,
    api_key: ApiKey | str | None = None,
    *,
    raise_on_failure: bool | None = None,
    handle_signals: bool = False,
    on_progress: OnProgress | None = None,
    stop: StopHandle | None = None,
) -> Summary:
    """Run a job to the end (blocking) and return its :class:`Summary`; works inside a running
    event loop too (Jupyter, an async web app): the job then runs on a loop of its own in a
    worker thread, and a KeyboardInterrupt (a notebook's interrupt) stops it as SIGINT would,
    as does a cancel of the task that called it (the first Ctrl-C under ``asyncio.run``): then
    :class:`asyncio.CancelledError` is raised once the run has wound down.

    ``api_key`` defaults to ``$IDENTIFAI_API_KEY``; a dry run needs none.  Problems found before
    anything is sent raise :class:`BatchOverrideError` (``.exit_code`` tells which).  A bug raises
    its own exception, but only after the run has ended cleanly (rows recorded, lock released).
    ``raise_on_failure`` (default: ``config.raise_on_failure``, off) raises a :class:`RunFailed`
    subclass for a run that did not exit 0.  ``handle_signals`` installs SIGINT/SIGTERM handlers
    that stop the run (only on the main thread, and never inside a running loop: the host owns its
    signals).  ``on_progress`` gets a :class:`ProgressSnapshot` about once a second and at the
    end, in a thread of its own; ``stop`` is a :class:`StopHandle` to stop the run from any thread.
    """
    if raise_on_failure is not None and raise_on_failure != config.raise_on_failure:
        config = dataclasses.replace(config, raise_on_failure=raise_on_failure)
    key = _key(config, api_key)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(
            run_job_async(config, key, handle_signals=handle_signals, on_progress=on_progress, stop=stop)
        )
    return _in_worker_thread(config, key, on_progress, stop)


def _in_worker_thread(
    config: RunConfig, key: ApiKey | None, on_progress: OnProgress | None, stop: StopHandle | None
) -> Summary:
    """The run on its own loop in a worker thread, waited for; its result or exception here.
    A KeyboardInterrupt goes to this run through a handle of its own (the caller's ``stop``
    may be shared with other runs, which it must not stop)."""
    from .job.runner import run_job_async as run

    outcome: dict[str, Any] = {}
    done = threading.Event()
    interrupt = StopHandle()
    handles = (interrupt,) if stop is None else (interrupt, stop)

    def work() -> None:
        try:
            outcome["summary"] = asyncio.run(run(config, key, on_progress=on_progress, stop=handles))
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="batch-override run", daemon=True).start()
    raised = Interrupts(interrupt).wait(done)
    if raised is not None:
        raise raised
    if "error" in outcome:
        raise outcome["error"]
    summary: Summary = outcome["summary"]
    return summary


async def run_job_async(
    config: RunConfig,
    api_key: ApiKey | str | None = None,
    *,
    handle_signals: bool = False,
    on_progress: OnProgress | None = None,
    stop: StopHandle | None = None,
) -> Summary:
    """:func:`run_job` for a caller already in an event loop: the job runs on that loop.
    Cancelling it stops the run as a signal would, waits for it to wind down (``--grace`` and a
    moment), then raises :class:`asyncio.CancelledError`."""
    from .job.runner import run_job_async as run

    return await run(
        config, _key(config, api_key), handle_signals=handle_signals, on_progress=on_progress, stop=stop
    )


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
    "ApiKey", "BatchOverrideError", "DeadlineReached", "ExitCode", "LedgerUnwritable", "Outcome",
    "ProgressSnapshot", "Rate", "RowsFailed", "RunAborted", "RunConfig", "RunFailed", "RunInterrupted",
    "ServerOutage", "StopAt", "StopHandle", "Summary", "__version__", "load_api_key", "read_ledger",
    "run_job", "run_job_async",
]  # fmt: skip

"""The files a run keeps beside its ledger, as the runner opens and closes them: the ledger opened
for appending (a torn last line cut off first), the run log's ``started`` and ``finished``
records, and resume's state saved at the end.

The trap: a ledger or run log that cannot be written is a :class:`~.errors.LedgerWriteError`
(exit 6, "a rerun resumes"), never a bare ``OSError``: the runner tells a full disk from a bug by
that type.  The state is only a cache: one that cannot be saved is a warning, never a failure.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .._version import __version__
from ..config import RunConfig
from ..errors import LedgerWriteError
from ..input.source import BatchSource
from ..ledger import runlog
from ..ledger import state as resume_state
from ..ledger.format import utc_now
from ..ledger.writer import LedgerWriter, repair_torn_tail
from ..summary import Summary
from .parts import Parts

log = logging.getLogger("batch_override")


def open_ledger(config: RunConfig, parts: Parts, run_id: str, source: BatchSource) -> LedgerWriter:
    """The ledger's writer for run ``run_id``, with ``source``'s carried columns; a torn last line
    an interrupted run left is cut off first (and said)."""
    assert config.ledger is not None
    try:
        torn = repair_torn_tail(config.ledger)
        if torn:
            log.warning(
                "ledger %s: cut off a torn last line (%d bytes) left by an interrupted run",
                config.ledger,
                torn,
            )
        return parts.ledger_writer(
            config.ledger,
            source.columns.carried,
            run_id,
            neutralize=config.neutralize_formulas,
            fsync_interval=config.fsync_interval,
        )
    except OSError as exc:  # opening it, or cutting a torn line: the place cannot be written (exit 6)
        why = exc.strerror or type(exc).__name__
        raise LedgerWriteError(
            f"{config.ledger}: cannot write the ledger ({why}); a rerun resumes from it"
        ) from None


def log_run(
    config: RunConfig, run_id: str, source: BatchSource, fingerprint: str, event: str, summary: Summary
) -> None:
    """Append the run's ``started`` or ``finished`` record to the run log beside the ledger
    (logged at ERROR and raised as :class:`LedgerWriteError` when it cannot be written)."""
    assert config.ledger is not None
    path = runlog.runlog_path(config.ledger)
    record = runlog.RunRecord(
        event=event,
        run_id=run_id,
        api_url=runlog.normalise_url(config.api_url),
        key_fingerprint=fingerprint,
        tool_version=__version__,
        user_host=runlog.user_at_host(),
        # A path resolved; "<stdin>", "<DataFrame>", "<pyarrow.Table>" and s3:// or gs:// as they are.
        input=source.display
        if source.display.startswith("<") or source.origin is not None
        else str(Path(source.display).resolve()),
        input_sha256=source.sha256,
        input_rows=summary.rows,
        # The input's own names for these columns: the retry file reuses them (report.py).
        columns={
            "hash": source.columns.hash,
            "classification": source.columns.classification,
            "media": source.columns.media or config.media_column or "media",
        },
        dry_run=config.dry_run,
        at=utc_now(),
        input_object=source.origin,  # the version read: ETag, version id or generation
        summary=runlog.RunSummary.of(summary) if event == runlog.FINISHED else None,
    )
    try:
        runlog.append(path, record)
    except OSError as exc:
        message = f"{path}: cannot write the run log ({exc.strerror or type(exc).__name__})"
        log.error("%s", message)
        raise LedgerWriteError(message) from None


def save_state(ledger: Path, scope: str, state: resume_state.ResumeState, fingerprint: str, url: str) -> None:
    """Bring resume's state up to the ledger's end (the run's own lines) and save it: the next
    run reads only what is appended after this one (a warning, not an error, when it cannot)."""
    trusted = runlog.trusted_runs(runlog.runlog_path(ledger), url, fingerprint)
    resume_state.refresh(ledger, scope, state, list(trusted))

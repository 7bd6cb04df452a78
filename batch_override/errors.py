"""Exceptions that end a run, each with the exit code the CLI documents.

Messages are one line and name the file, row and problem; they never contain the API key.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from .outcome import RETRY_OUTCOMES

if TYPE_CHECKING:
    from .summary import Summary


class ExitCode(enum.IntEnum):
    """The exit codes the CLI documents (``--help``, README): a format scripts and cron rely on.

    An ``IntEnum`` is an ``int`` everywhere a number is written: ``sys.exit``, JSON, ``%d`` and,
    since Python 3.11, ``str()`` and f-strings too.  The trap: ``repr()`` shows ``<ExitCode.OK: 0>``,
    so output meant for machines never uses ``%r``/``!r`` on one.
    """

    OK = 0
    SOME_ROWS_FAILED = 1
    USAGE = 2
    ABORTED = 3
    LOCKED = 4
    OUTAGE = 5
    LEDGER_WRITE = 6
    DEADLINE = 7  # --max-duration or --stop-at reached: the rerun resumes
    INTERNAL = 70  # sysexits' EX_SOFTWARE: a bug, not the input or the server
    SIGHUP = 129  # treated as SIGTERM: the terminal closed, or a supervisor's reload
    SIGINT = 130
    SIGTERM = 143


class BatchOverrideError(Exception):
    """Base class: ``str(error)`` is the one line shown to the user.

    ``exit_code`` is a plain ``int`` on a raised failure (:class:`RunFailed`): hosts put it in
    their own records, and some (Dagster's metadata) refuse an enum even when it is an int.
    """

    exit_code: int = ExitCode.USAGE


class UsageError(BatchOverrideError):
    """Bad options, job file or API key source (exit 2, nothing sent)."""


class InputError(BatchOverrideError):
    """The input file cannot be read as corrections (exit 2, nothing sent)."""


class LedgerError(BatchOverrideError):
    """The ledger cannot be used for this input (exit 2, nothing sent)."""


class LedgerWriteError(BatchOverrideError):
    """The ledger could not be written or synced (disk full, quota, I/O error): exit 6.

    The run stops at once and writes nothing more to the ledger; the rerun resumes as after a kill.
    """

    exit_code = ExitCode.LEDGER_WRITE


class LedgerLocked(BatchOverrideError):
    """Another run holds the ledger (exit 4)."""

    exit_code = ExitCode.LOCKED


class RunFailed(BatchOverrideError):
    """``raise_on_failure``: the run ended without every row succeeding.  One subclass per way
    a run stops, each with the run's :attr:`summary`, its :attr:`exit_code` and :attr:`retryable`
    (would the same run, started again now, likely get further?).

    The trap: a retry resumes (the ledger skips what was accepted), so retrying a retryable
    failure is cheap; retrying a refused key or an unwritable ledger only fails the same way.
    """

    retryable = False

    def __init__(self, summary: Summary) -> None:
        why = summary.stop_reason or "some rows did not succeed"
        super().__init__(f"run {summary.run_id} exited {summary.exit_code}: {why}")
        self.summary = summary
        self.exit_code = int(summary.exit_code)


class RunInterrupted(RunFailed):
    """A signal (130, 143), a stop handle or a cancel stopped the run; rerun to resume."""

    retryable = True


class RunAborted(RunFailed):
    """Exit 3 (key refused, wrong URL, too many failures, the input changed): fix it first."""


class ServerOutage(RunFailed):
    """Exit 5: the server stayed unavailable or asked to wait too long; retry later."""

    retryable = True


class LedgerUnwritable(RunFailed):
    """Exit 6: the ledger could not be written (disk full); free space first."""


class RowsFailed(RunFailed):
    """Exit 1: the run finished, but some rows did not succeed.

    :attr:`retryable` is true when some row that did not succeed can still succeed (``not_ready``,
    ``failed``, ``aborted``: a retry sends them again), false when every one is permanent
    (``invalid``, ``rejected``, ``conflict``: the same input fails the same way however often it
    is retried).  The trap: outcomes in the run's ``ok_outcomes`` count as succeeded, so a
    nightly run that counts ``not_ready`` as OK and has only invalid rows left is not retryable.
    """

    def __init__(self, summary: Summary) -> None:
        super().__init__(summary)
        self.retryable = can_still_succeed(summary)


def can_still_succeed(summary: Summary) -> bool:
    """Whether some row of ``summary`` that did not succeed is one a rerun may still get accepted."""
    return any(
        n and outcome not in summary.ok_outcomes and outcome in RETRY_OUTCOMES
        for outcome, n in summary.outcomes.items()
    )


class DeadlineReached(RunFailed):
    """Exit 7: ``--max-duration`` or ``--stop-at`` stopped the run.  Not retryable: the next
    scheduled run resumes (an immediate retry would run past the window the deadline keeps)."""


_FAILURES: dict[int, type[RunFailed]] = {
    ExitCode.SOME_ROWS_FAILED: RowsFailed,
    ExitCode.USAGE: RunAborted,  # the input changed before any row was handed out
    ExitCode.ABORTED: RunAborted,
    ExitCode.OUTAGE: ServerOutage,
    ExitCode.LEDGER_WRITE: LedgerUnwritable,
    ExitCode.DEADLINE: DeadlineReached,
    ExitCode.SIGINT: RunInterrupted,
    ExitCode.SIGTERM: RunInterrupted,
}


class EndReason(enum.StrEnum):
    """Why a run ended, in one word: the ``reason`` label of ``batch_override_exit_code``.

    A small fixed set (alert routes and dashboards match on these words), so a new way to end
    takes one of them; the exit code says the rest.  Exit 4 has none: a run that finds the
    ledger held writes no metrics, so the holder's stay.
    """

    FINISHED = "finished"  # 0, 1: every row read has its outcome
    USAGE = "usage"  # 2: an option, the job file or the API key's source
    INPUT = "input"  # 2: the input is unreadable, has no rows, or changed before rows were sent
    LEDGER = "ledger"  # 2, 6: the ledger cannot be used for this input, or cannot be written
    ABORTED = "aborted"  # 3: key refused, wrong URL, failure rate, input changed while sending
    OUTAGE = "outage"  # 5: the server stayed unavailable, or asked to wait too long
    DEADLINE = "deadline"  # 7: --max-duration or --stop-at
    SIGNAL = "signal"  # 129, 130, 143: a signal, a stop handle or a cancel
    INTERNAL = "internal"  # 70: a bug


_REASON_BY_EXIT: dict[int, EndReason] = {
    ExitCode.OK: EndReason.FINISHED,
    ExitCode.SOME_ROWS_FAILED: EndReason.FINISHED,
    ExitCode.USAGE: EndReason.INPUT,  # a run's summary says 2 only for an input that changed
    ExitCode.ABORTED: EndReason.ABORTED,
    ExitCode.OUTAGE: EndReason.OUTAGE,
    ExitCode.LEDGER_WRITE: EndReason.LEDGER,
    ExitCode.DEADLINE: EndReason.DEADLINE,
    ExitCode.INTERNAL: EndReason.INTERNAL,
    ExitCode.SIGHUP: EndReason.SIGNAL,
    ExitCode.SIGINT: EndReason.SIGNAL,
    ExitCode.SIGTERM: EndReason.SIGNAL,
}


def end_reason(exit_code: int, error: BaseException | None = None) -> EndReason:
    """The :class:`EndReason` of a run that exited ``exit_code``, raising ``error`` if it raised.

    An error that is not a :class:`BatchOverrideError` is a bug (``internal``), whatever code."""
    if error is not None and not isinstance(error, BatchOverrideError):
        return EndReason.INTERNAL
    if isinstance(error, InputError):
        return EndReason.INPUT
    if isinstance(error, LedgerError | LedgerWriteError):
        return EndReason.LEDGER
    if error is not None and exit_code == ExitCode.USAGE:
        return EndReason.USAGE  # options, the job file, the key's source
    return _REASON_BY_EXIT.get(exit_code, EndReason.INTERNAL)


def failure_of(summary: Summary) -> RunFailed | None:
    """The exception ``raise_on_failure`` raises for a run that ended this way (None: exit 0)."""
    if summary.exit_code == ExitCode.OK:
        return None
    return _FAILURES.get(summary.exit_code, RunFailed)(summary)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (pyarrow's run to several), or its type's name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

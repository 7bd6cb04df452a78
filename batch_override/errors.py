"""Exceptions that end a run, each with the exit code the CLI documents.

Messages are one line and name the file, row and problem; they never contain the API key.
"""

from __future__ import annotations

import enum


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
    INTERNAL = 70  # sysexits' EX_SOFTWARE: a bug, not the input or the server
    SIGHUP = 129  # treated as SIGTERM: the terminal closed, or a supervisor's reload
    SIGINT = 130
    SIGTERM = 143


class BatchOverrideError(Exception):
    """Base class: ``str(error)`` is the one line shown to the user."""

    exit_code = ExitCode.USAGE


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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (pyarrow's run to several), or its type's name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

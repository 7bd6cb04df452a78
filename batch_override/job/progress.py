"""A progress bar for a person at a terminal, and nothing at all for cron, CI or a pipe.

:class:`Progress` shows rows done of the total, the rate, the ETA and three counts.  In a run,
the bar is the rows to send: a row finished without a request (skipped from the ledger, invalid, a
duplicate) is counted but does not move it, so the rate and the ETA are the sending's:

- ``ok``: submitted, already_submitted, duplicate, skipped, planned (the outcomes that make the
  exit code 0, :data:`~batch_override.outcome.SUCCESS_OUTCOMES`);
- ``retrying``: rows currently waiting to be sent again (the runner reports +1 / -1);
- ``failed``: every other outcome (invalid, conflict, rejected, not_ready, failed, aborted, and
  any outcome this module does not know): what makes the exit code non-zero.

Contract: when disabled (by default, when the stream is not a TTY) nothing is written, ever, and
each call is one attribute test.  When enabled, a call is a counter increment plus tqdm's own
``miniters``/``mininterval`` check; the counts are formatted only when tqdm redraws.

Traps: log lines written to the same stream while the bar is up tear it (wrap the run in
``tqdm.contrib.logging.logging_redirect_tqdm``); and ``retrying`` only counts what the runner
reports, so every +1 needs its -1 (before the row's :meth:`Progress.advance`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm

from ..outcome import SUCCESS_OUTCOMES

_OK = frozenset(o.value for o in SUCCESS_OUTCOMES)


def logging_redirected(enabled: bool, logger: logging.Logger) -> contextlib.AbstractContextManager[Any]:
    """While a bar is drawn (``enabled``), ``logger``'s lines go through ``tqdm.write``, so they
    do not tear the bar.

    The trap: ``tqdm.contrib`` imports ``tqdm.auto``, which in a Jupyter kernel without ipywidgets
    warns "IProgress not found" on import.  So it is imported only when a bar is drawn (never at
    ``import batch_override``), with that warning silenced: the bar is ``tqdm.std``'s anyway.
    """
    if not enabled:
        return contextlib.nullcontext()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm(loggers=[logger])  # type: ignore[no-any-return]


class _Bar(tqdm):  # type: ignore[misc]  # tqdm ships no type hints
    """tqdm whose postfix is formatted from the owner's counts at draw time, not at every update."""

    def __init__(self, owner: Progress, **kwargs: Any) -> None:
        self._owner = owner  # before tqdm's __init__, which draws the bar once
        super().__init__(**kwargs)

    @property
    def format_dict(self) -> dict[str, Any]:
        values: dict[str, Any] = super().format_dict
        owner = self._owner
        retrying = f", retrying={owner.retrying_now}" if owner.retries else ""
        postfix = f"ok={owner.ok}{retrying}, failed={owner.failed}"
        if owner.concurrency is not None:
            postfix += ", " + owner.concurrency()
        values["postfix"] = postfix
        return values


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class Progress:
    """Rows done of ``total`` with ok / retrying / failed counts, drawn on ``stream`` (default stderr).

    ``enabled=None`` means "``stream.isatty()``"; ``stream=None`` means ``sys.stderr`` at
    construction time (not at import time, so a replaced ``sys.stderr`` is honoured).
    ``total=None`` (not known in advance) shows a count and a rate, no ETA; ``retries=False``
    leaves the retrying count out (``hash`` counts files, which are never retried).
    """

    __slots__ = ("_bar", "concurrency", "failed", "ok", "retries", "retrying_now", "total")

    def __init__(
        self,
        total: int | None,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        unit: str = "row",
        retries: bool = True,
    ) -> None:
        out = sys.stderr if stream is None else stream
        self.total = total
        self.retries = retries
        self.ok = 0
        self.failed = 0
        self.retrying_now = 0
        #: Called at each redraw for the requests in flight (the runner sets it when it sends).
        self.concurrency: Callable[[], str] | None = None
        if enabled is None:
            enabled = _is_tty(out)
        self._bar: _Bar | None = None
        if enabled:
            self._bar = _Bar(
                self,
                total=total,
                file=out,
                unit=unit,
                dynamic_ncols=True,
                mininterval=0.25,
                smoothing=0.1,
                leave=True,
            )

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def advance(self, outcome: str, n: int = 1, *, moves: bool = True) -> None:
        """``n`` rows finished with ``outcome`` (an :class:`~batch_override.outcome.Outcome` value);
        ``moves`` False counts them without moving the bar (rows not among its total)."""
        self.tally(outcome in _OK, n, moves=moves)

    def tally(self, ok: bool, n: int = 1, *, moves: bool = True) -> None:
        """``n`` items finished, counted as ok or failed (and moving the bar unless ``moves`` is
        False: tqdm's rate and ETA are then of the items that do)."""
        bar = self._bar
        if bar is None:
            return
        if ok:
            self.ok += n
        else:
            self.failed += n
        if moves:
            bar.update(n)  # the counts of rows that do not move it show at the next redraw

    def retrying(self, delta: int) -> None:
        """A row started (+1) or stopped (-1) waiting for a retry; shown at the next redraw."""
        if self._bar is not None:
            self.retrying_now += delta

    def close(self) -> None:
        """Draw the final counts and leave the bar on screen; safe to call twice."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = ["Progress"]

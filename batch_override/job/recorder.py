"""Finishing rows: each finished row is counted in the summary and the progress bar, and ledgered.

What gets a ledger line: every row the run attempted (sent, or may have sent: a row cut off in
flight keeps its ``aborted`` line, so the retry file and resume see it) and every row it decided
about from the input (invalid, duplicate, conflict) or from the ledger with a verdict the user
reads for the first time (classification locked).  Rows the run never attempts get none, so a
nightly rerun of a cumulative file writes only its new outcomes: a row already done is counted
``skipped``, one an earlier run saw rejected is counted ``rejected`` (``previously_rejected``,
or ``classification_locked`` once that line is written) and a row never reached before a stop
(or past ``--limit``) is counted ``not_attempted`` (the summary's rows less its finished ones), in
the summary, the run log and the metrics.  ``record_skipped`` (``--record-skipped``) writes those
lines as well (``skipped``, ``rejected``, and ``aborted`` ``not_sent``/``deadline`` for rows never
reached): the full record of earlier versions.

Contract: :meth:`Recorder.finish` never raises for the ledger's sake.  A write or sync that
fails with an ``OSError`` stops the run with exit 6 and nothing more is written (rows still
finish, unrecorded: the rerun sends them again and the server answers "already submitted"); any
other error in the writer is a bug, which stops the run with exit 70 and likewise ends writing.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec

import numpy as np
import pyarrow as pa

from ..errors import ExitCode, LedgerWriteError
from ..input.batch import Batch
from ..ledger.writer import LedgerWriter, LineValues
from ..outcome import Action, ErrorCode, Outcome, Verdict
from ..stopping import Stopper
from ..summary import Summary
from .plan import Plan
from .progress import Progress

log = logging.getLogger("batch_override")
_P = ParamSpec("_P")

_PLAN_LINE = {
    Plan.INVALID: (Outcome.INVALID, ErrorCode.INVALID_ROW, ""),
    Plan.DUPLICATE: (Outcome.DUPLICATE, ErrorCode.NONE, "repeats an earlier row of this input; sent once"),
    Plan.CONFLICT: (
        Outcome.CONFLICT,
        ErrorCode.CONFLICTING_CLASSIFICATIONS,
        "this (media, hash) appears with both classifications in the input; none sent",
    ),
    Plan.SKIPPED: (Outcome.SKIPPED, ErrorCode.NONE, "accepted in an earlier run"),
    Plan.REJECTED: (
        Outcome.REJECTED,
        ErrorCode.PREVIOUSLY_REJECTED,
        "rejected in an earlier run; --retry-rejected sends it again",
    ),
    Plan.LOCKED: (
        Outcome.REJECTED,
        ErrorCode.CLASSIFICATION_LOCKED,
        "an earlier run had the other classification accepted; the server keeps the first",
    ),
}
_PLAN_LINE[Plan.LOCKED_AGAIN] = _PLAN_LINE[Plan.LOCKED]
#: Rows finished without a request whose verdict the ledger holds already: counted (their
#: (outcome, error code) is one of :data:`COUNTED_ONLY`), not written unless ``record_skipped``.
_COUNTED_ONLY_PLANS = np.array([Plan.SKIPPED, Plan.REJECTED, Plan.LOCKED_AGAIN], np.uint8)


@dataclass(slots=True)
class Item:
    """A row handed to a sender."""

    row: int
    media: str
    hash: str
    classification: str
    carried: tuple[str, ...]
    first_seen: float = math.nan  # unix time of the key's first ledger line (--give-up-after)
    done: bool = False  # finished (counted, and ledgered if the ledger works), or left unattempted
    attempted: bool = False  # a request for it may have gone out: it gets a line whatever happens

    def sent(self) -> None:
        """A request for the row is going out (the requester's ``on_sent``)."""
        self.attempted = True


class Recorder:
    """The summary, the progress bar and the ledger writer (None in tests of planning alone)."""

    def __init__(
        self,
        summary: Summary,
        stopper: Stopper,
        ledger: LedgerWriter | None,
        progress: Progress | None,
        *,
        record_skipped: bool = False,
    ) -> None:
        self.summary = summary
        self.record_skipped = record_skipped
        self.ledger = ledger
        self.progress = progress
        self._stopper = stopper
        self._writable = ledger is not None
        self._retrying: set[int] = set()  # rows waiting on a retry, for the progress bar
        #: Rows of the run's sends finished (sent, or aborted before they could be): the
        #: progress rate and ETA are of these, never of rows finished without a request.
        self.sends_done = 0

    @property
    def failed(self) -> bool:
        """True once the ledger failed: the run has stopped and nothing more is recorded."""
        return self.ledger is not None and not self._writable

    def _write(self, write: Callable[_P, object], *args: _P.args, **kwargs: _P.kwargs) -> None:
        if not self._writable:
            return
        try:
            write(*args, **kwargs)
        except LedgerWriteError as exc:
            self._writable = False
            self._stopper.request(ExitCode.LEDGER_WRITE, str(exc))
        except Exception as exc:
            self._writable = False
            self._stopper.fail(exc)

    def retrying(self, row: int) -> None:
        """The row waits for another try (shown in the progress bar until it finishes)."""
        if row not in self._retrying:
            self._retrying.add(row)
            if self.progress is not None:
                self.progress.retrying(+1)

    def finish(self, item: Item, verdict: Verdict, *, status: int | None = None, attempts: int = 0) -> None:
        """Count, show and ledger ``item`` as ended with ``verdict`` (``status`` None: no answer)."""
        outcome, code, msg = verdict.outcome, verdict.error_code, verdict.message
        item.done = True
        self.sends_done += 1
        self.summary.count(outcome, code)
        if self.progress is not None:
            if item.row in self._retrying:
                self._retrying.discard(item.row)
                self.progress.retrying(-1)
            self.progress.advance(outcome.value)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "row %d: %s %s (HTTP %s, %d attempts) %s",
                item.row,
                outcome.value,
                code,
                status,
                attempts,
                msg,
            )
        if self.ledger is not None:
            line = LineValues(
                item.row, item.media, item.hash, item.classification, outcome, code, status, attempts, msg
            )
            self._write(self.ledger.write, line, item.carried)

    def abort(self, item: Item, attempts: int = 0) -> None:
        """End a row the run stopped before it finished.  One that may have been sent gets an
        ``aborted`` line (``interrupted``: a rerun sends it again); one never sent is left for the
        next run, uncounted here (the summary counts it ``not_attempted``), unless
        ``record_skipped`` asks for its ``aborted`` line."""
        if item.attempted:
            self.finish(item, self._cut_off(), attempts=attempts)
        elif self.record_skipped:
            self.finish(item, self._not_sent(), attempts=attempts)
        else:
            item.done = True

    def not_reached(self, batch: Batch, plan: np.ndarray[Any, Any], idx: np.ndarray[Any, Any]) -> None:
        """Rows at ``idx`` the run stopped before handing out: no line (``not_attempted``), or
        with ``record_skipped`` an ``aborted`` line each (``plan`` is changed in place then)."""
        if self.record_skipped:
            plan[idx] = Plan.ABORTED
            self.immediate(batch, plan, idx)

    def immediate(self, batch: Batch, plan: np.ndarray[Any, Any], idx: np.ndarray[Any, Any]) -> None:
        """Ledger lines for rows finished without a request (``idx`` positions in the batch)."""
        if len(idx) == 0:
            return
        codes = plan[idx]
        for code in np.unique(codes).tolist():
            outcome, err, _ = self._line_for(Plan(code))
            n = int(np.count_nonzero(codes == code))
            self.summary.count(outcome, err, n)
            send = code in (Plan.SEND, Plan.ABORTED)  # planned by a dry run, or stopped before sending
            self.sends_done += n if send else 0
            if self.progress is not None:
                self.progress.advance(outcome.value, n, moves=send)
        if not self.record_skipped:  # counted, not written: the ledger holds their verdicts already
            written = ~np.isin(codes, _COUNTED_ONLY_PLANS)
            idx, codes = idx[written], codes[written]
        if self.ledger is not None and self._writable and len(idx):
            self._write(
                self.ledger.write_table, _immediate_lines(self.ledger, batch, codes, idx, self._line_for)
            )

    def _line_for(self, plan: Plan) -> tuple[Outcome, str, str]:
        if plan == Plan.SEND:
            return (Outcome.PLANNED, ErrorCode.NONE, "dry run: not sent")
        if plan == Plan.ABORTED:
            verdict = self._not_sent()
            return (verdict.outcome, verdict.error_code, verdict.message)
        return _PLAN_LINE[plan]

    def _cut_off(self) -> Verdict:
        reason = f"cut off ({self._stopper.reason}); a rerun sends it again"
        return Verdict(Outcome.ABORTED, ErrorCode.INTERRUPTED, Action.DONE, reason)

    def _not_sent(self) -> Verdict:
        stopper = self._stopper
        return Verdict(Outcome.ABORTED, stopper.abort_code, Action.DONE, f"not sent: {stopper.reason}")

    def close(self) -> None:
        """Close the ledger (its last sync can fail too: exit 6)."""
        if self.ledger is not None:
            ledger, self.ledger = self.ledger, None
            if self._writable:
                self._write(ledger.close)
            else:
                with contextlib.suppress(OSError, LedgerWriteError):
                    ledger.close()


def _immediate_lines(
    ledger: LedgerWriter,
    batch: Batch,
    codes: np.ndarray[Any, Any],
    idx: np.ndarray[Any, Any],
    line_for: Callable[[Plan], tuple[Outcome, str, str]],
) -> pa.Table:
    """The ledger lines, as one table, of the rows at ``idx`` of ``batch`` finished without a
    request: ``line_for`` gives each plan code's outcome, error code and message.  A valid row's
    key cells are written normalised; the trap: an invalid row's must be its raw cells (as read,
    made safe by ``ledger``), with its own reason as the message, or the line hides what is wrong."""
    take = pa.array(idx)
    messages = np.empty(len(idx), dtype=object)
    outcomes = np.empty(len(idx), dtype=object)
    errors = np.empty(len(idx), dtype=object)
    for code in np.unique(codes).tolist():
        outcome, err, msg = line_for(Plan(code))
        sel = codes == code
        outcomes[sel], errors[sel], messages[sel] = outcome.value, err, msg
    invalid = codes == Plan.INVALID
    hashes = batch.hash.take(take)
    classes = batch.classification.take(take)
    media = batch.media.take(take)
    if invalid.any():
        reasons = batch.reasons()
        messages[invalid] = [reasons[i] for i in idx[invalid].tolist()]
        inv = pa.array(invalid)
        hashes = pa.compute.if_else(inv, ledger.text_array(batch.raw_hash.take(take)), hashes)
        classes = pa.compute.if_else(inv, ledger.text_array(batch.raw_classification.take(take)), classes)
        if batch.raw_media is not None:
            media = pa.compute.if_else(inv, ledger.text_array(batch.raw_media.take(take)), media)
    return ledger.bulk_table(
        rows=batch.start + idx,
        media=media,
        hashes=hashes,
        classes=classes,
        outcomes=pa.array(outcomes, pa.string()),
        error_codes=pa.array(errors, pa.string()),
        messages=pa.array(messages, pa.string()),
        carried=[ledger.text_array(c.take(take)) for c in batch.carried],
    )

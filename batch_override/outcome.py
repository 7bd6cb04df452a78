"""What a response means: the one table that maps every way a request can end to an outcome.

Every caller asks :func:`classify` and acts on the returned :class:`Verdict`; nothing else in the
package looks at status codes or error texts.  The trap: the server answers a *repeat* of an
accepted override with HTTP 400 "already submitted", which is a success for an idempotent job.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    """The state a row ends in; a ledger line's ``outcome`` column."""

    SUBMITTED = "submitted"
    ALREADY_SUBMITTED = "already_submitted"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"
    PLANNED = "planned"
    INVALID = "invalid"
    CONFLICT = "conflict"
    REJECTED = "rejected"
    NOT_READY = "not_ready"
    FAILED = "failed"
    ABORTED = "aborted"


# The outcome sets: every rule that groups outcomes names one of these, so a new outcome is
# placed in each set here, once.

#: Outcomes that make a run's exit code 0 by default (``--ok-outcomes`` replaces the set).
#: Used by the summary's exit code, the progress bar's ok/not-ok count and ``--help``.
SUCCESS_OUTCOMES = frozenset(
    {Outcome.SUBMITTED, Outcome.ALREADY_SUBMITTED, Outcome.DUPLICATE, Outcome.SKIPPED, Outcome.PLANNED}
)
#: Outcomes that mean "the server holds this override": resume skips the row in a later run.
#: Not DUPLICATE (a repeat within one input says nothing of the server) nor PLANNED (a dry run).
DONE_OUTCOMES = frozenset({Outcome.SUBMITTED, Outcome.ALREADY_SUBMITTED, Outcome.SKIPPED})
#: Outcomes of a row worth sending again: resume sends it again, and ``report --retry-file``
#: lists the rows whose latest decisive line is one of these.
RETRY_OUTCOMES = frozenset({Outcome.FAILED, Outcome.NOT_READY, Outcome.ABORTED})
#: Lines that say what the server holds (done, rejected, or worth retrying): resume and
#: ``report --run all`` trust exactly these and pass over the rest (invalid, duplicate,
#: conflict and planned lines are about the input, not the server).
DECISIVE_OUTCOMES = DONE_OUTCOMES | {Outcome.REJECTED} | RETRY_OUTCOMES


class ErrorCode(enum.StrEnum):
    """Why a row ended as it did; a ledger line's ``error_code`` column (empty for a plain success).

    The values are a file format: users filter the ledger on them, so a value never changes.
    Besides these, an unexpected HTTP status gets a code made by :func:`status_code`
    (``http_418``, ``unknown_400``): the one kind of code not listed here.
    """

    NONE = ""
    # The API's own 400 answers (see _ERROR_TEXTS).
    NOT_CLASSIFIED = "not_classified"
    NO_COMPLETED_REQUEST = "no_completed_request"
    NO_REQUEST = "no_request"
    NO_LONGER_POSSIBLE = "no_longer_possible"
    VALIDATION_ERROR = "validation_error"
    # Answers that stop the run.
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REDIRECT = "redirect"
    TLS_ERROR = "tls_error"
    # Transient: retried.
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    #: An answer whose body is too big to read (see client.MAX_BODY).
    HTTP = "http"
    # Decided by the job, not by an answer.
    INVALID_ROW = "invalid_row"
    CONFLICTING_CLASSIFICATIONS = "conflicting_classifications"
    PREVIOUSLY_REJECTED = "previously_rejected"
    CLASSIFICATION_LOCKED = "classification_locked"
    GAVE_UP = "gave_up"
    NOT_SENT = "not_sent"
    #: A row that --max-duration or --stop-at left unsent.
    DEADLINE = "deadline"
    INTERRUPTED = "interrupted"


#: (outcome, error code) of the rows a run counts (summary, run log, metrics) without a ledger
#: line unless ``--record-skipped``, because the ledger holds their verdict already: done in an
#: earlier run, or rejected in one (``classification_locked`` only once its line is there).
#: ``report`` takes their counts from the run log's ``finished`` record.
COUNTED_ONLY: frozenset[tuple[Outcome, str]] = frozenset(
    {
        (Outcome.SKIPPED, ErrorCode.NONE),
        (Outcome.REJECTED, ErrorCode.PREVIOUSLY_REJECTED),
        (Outcome.REJECTED, ErrorCode.CLASSIFICATION_LOCKED),
    }
)


def status_code(prefix: str, status: int) -> str:
    """The code of an HTTP status the table does not know: ``http_NNN`` (a failure) or
    ``unknown_NNN`` (a 400 or 422 with an unknown body)."""
    return f"{prefix}_{status}"


class Action(enum.Enum):
    """What the sender does after a response."""

    DONE = "done"  # the row is finished with this verdict
    RETRY = "retry"  # transient: back off and try again (server trouble)
    THROTTLED = "throttled"  # 429: wait Retry-After, then try again
    ABORT = "abort"  # nothing else will work: stop the run (exit 3)


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    error_code: str  # an ErrorCode, or a status_code()
    action: Action
    message: str = ""


#: Said of every already_submitted row: the server keeps the first override of a hash and its
#: answer does not say which classification that was (it may be the other one).
ALREADY_SUBMITTED_NOTE = " (the server does not report which classification it holds)"
_SUBMITTED = Verdict(Outcome.SUBMITTED, ErrorCode.NONE, Action.DONE)

# The 400 ``error`` texts, matched after folding case, punctuation and the media word, so
# "This Image was not classified yet" and "this video was not classified yet." both match.
_ERROR_TEXTS: tuple[tuple[str, Outcome, ErrorCode, Action], ...] = (
    ("already submitted a report", Outcome.ALREADY_SUBMITTED, ErrorCode.NONE, Action.DONE),
    ("not classified yet", Outcome.NOT_READY, ErrorCode.NOT_CLASSIFIED, Action.DONE),
    ("no completed request", Outcome.NOT_READY, ErrorCode.NO_COMPLETED_REQUEST, Action.DONE),
    ("got any request", Outcome.REJECTED, ErrorCode.NO_REQUEST, Action.DONE),
    ("no longer possible", Outcome.REJECTED, ErrorCode.NO_LONGER_POSSIBLE, Action.DONE),
)
_FOLD = re.compile(r"[^a-z0-9]+")

_ABORT_STATUS = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
}


def _fold(text: str) -> str:
    return " ".join(_FOLD.sub(" ", text.lower()).split())


def _message_of(body: object) -> str:
    """The server's own words, for the ledger's ``message`` column."""
    if isinstance(body, dict):
        for key in ("error", "message"):
            value = body.get(key)
            if isinstance(value, str):
                return value
        for value in body.values():
            if isinstance(value, list) and value and isinstance(value[0], str):
                return value[0]
    return json.dumps(body, ensure_ascii=False)[:300]


def _is_validation_body(body: object) -> bool:
    """Laravel's validation shapes: ``{"field": ["msg"]}`` or ``{"message", "errors": {...}}``."""
    if not isinstance(body, dict):
        return False
    if isinstance(body.get("errors"), dict):
        return True
    return any(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in body.values())


def classify_response(status: int, body: bytes) -> Verdict:
    """Map an HTTP answer to a verdict.  A 201 is not parsed: its status says all."""
    if status == 201:
        return _SUBMITTED
    if status in _ABORT_STATUS:
        return Verdict(Outcome.ABORTED, _ABORT_STATUS[status], Action.ABORT, _short_text(body))
    if 300 <= status < 400:
        return Verdict(
            Outcome.ABORTED, ErrorCode.REDIRECT, Action.ABORT, f"HTTP {status} redirect (not followed)"
        )
    if status == 429:
        return Verdict(Outcome.FAILED, ErrorCode.RATE_LIMITED, Action.THROTTLED, _short_text(body))
    if status >= 500:
        return Verdict(
            Outcome.FAILED, ErrorCode.SERVER_ERROR, Action.RETRY, f"HTTP {status}: {_short_text(body)}"
        )
    try:
        parsed: object = json.loads(body)
    except ValueError:
        if status in (400, 422):
            # A proxy's HTML page or a truncated body where the API answers JSON: try again.
            return Verdict(
                Outcome.FAILED, ErrorCode.SERVER_ERROR, Action.RETRY, f"HTTP {status}: non-JSON body"
            )
        return Verdict(
            Outcome.FAILED,
            status_code(ErrorCode.HTTP, status),
            Action.DONE,
            f"HTTP {status}: {_short_text(body)}",
        )
    message = _message_of(parsed)
    if status in (400, 422):
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            folded = _fold(parsed["error"])
            for needle, outcome, code, action in _ERROR_TEXTS:
                if needle in folded:
                    if outcome is Outcome.ALREADY_SUBMITTED:
                        message += ALREADY_SUBMITTED_NOTE
                    return Verdict(outcome, code, action, message)
        if _is_validation_body(parsed):
            return Verdict(Outcome.REJECTED, ErrorCode.VALIDATION_ERROR, Action.DONE, message)
        return Verdict(Outcome.REJECTED, status_code("unknown", status), Action.DONE, message)
    return Verdict(Outcome.FAILED, status_code(ErrorCode.HTTP, status), Action.DONE, message)


def transport_failure(error_code: ErrorCode, message: str) -> Verdict:
    """A request that got no HTTP answer (``timeout``, ``connection_error``): retry it."""
    return Verdict(Outcome.FAILED, error_code, Action.RETRY, message)


def _short_text(body: bytes) -> str:
    """A one-line excerpt of a body that may be HTML or JSON."""
    text = body[:500].decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        if title:
            return " ".join(title.group(1).split())
        return " ".join(re.sub(r"<[^>]+>", " ", text).split())[:200]
    return _message_of(parsed)

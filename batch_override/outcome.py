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


#: Outcomes that make a run's exit code 0 by default.
SUCCESS_OUTCOMES = frozenset(
    {Outcome.SUBMITTED, Outcome.ALREADY_SUBMITTED, Outcome.DUPLICATE, Outcome.SKIPPED, Outcome.PLANNED}
)
#: Outcomes that mean "the server holds this override": a later run skips the row.
DONE_OUTCOMES = frozenset({Outcome.SUBMITTED, Outcome.ALREADY_SUBMITTED, Outcome.SKIPPED})


class Action(enum.Enum):
    """What the sender does after a response."""

    DONE = "done"  # the row is finished with this verdict
    RETRY = "retry"  # transient: back off and try again (server trouble)
    THROTTLED = "throttled"  # 429: wait Retry-After, then try again
    ABORT = "abort"  # nothing else will work: stop the run (exit 3)


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    error_code: str
    action: Action
    message: str = ""


#: Said of every already_submitted row: the server keeps the first override of a hash and its
#: answer does not say which classification that was (it may be the other one).
ALREADY_SUBMITTED_NOTE = " (the server does not report which classification it holds)"
_SUBMITTED = Verdict(Outcome.SUBMITTED, "", Action.DONE)

# The 400 ``error`` texts, matched after folding case, punctuation and the media word, so
# "This Image was not classified yet" and "this video was not classified yet." both match.
_ERROR_TEXTS: tuple[tuple[str, Outcome, str, Action], ...] = (
    ("already submitted a report", Outcome.ALREADY_SUBMITTED, "", Action.DONE),
    ("not classified yet", Outcome.NOT_READY, "not_classified", Action.DONE),
    ("no completed request", Outcome.NOT_READY, "no_completed_request", Action.DONE),
    ("got any request", Outcome.REJECTED, "no_request", Action.DONE),
    ("no longer possible", Outcome.REJECTED, "no_longer_possible", Action.DONE),
)
_FOLD = re.compile(r"[^a-z0-9]+")

_ABORT_STATUS = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


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
        return Verdict(Outcome.ABORTED, "redirect", Action.ABORT, f"HTTP {status} redirect (not followed)")
    if status == 429:
        return Verdict(Outcome.FAILED, "rate_limited", Action.THROTTLED, _short_text(body))
    if status >= 500:
        return Verdict(Outcome.FAILED, "server_error", Action.RETRY, f"HTTP {status}: {_short_text(body)}")
    try:
        parsed: object = json.loads(body)
    except ValueError:
        if status in (400, 422):
            # A proxy's HTML page or a truncated body where the API answers JSON: try again.
            return Verdict(Outcome.FAILED, "server_error", Action.RETRY, f"HTTP {status}: non-JSON body")
        return Verdict(Outcome.FAILED, f"http_{status}", Action.DONE, f"HTTP {status}: {_short_text(body)}")
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
            return Verdict(Outcome.REJECTED, "validation_error", Action.DONE, message)
        return Verdict(Outcome.REJECTED, f"unknown_{status}", Action.DONE, message)
    return Verdict(Outcome.FAILED, f"http_{status}", Action.DONE, message)


def transport_failure(error_code: str, message: str) -> Verdict:
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

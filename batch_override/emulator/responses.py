"""The exact bytes the API answers, built once at import so a request only picks one.

Wording is the spec's (``openapi.yaml``) with the media word of the path; JSON is compact, as
Laravel's ``response()->json`` writes it. The conformance tests compare these with the spec's
examples, so they are written out here rather than read from the spec (which would test nothing).
"""

from __future__ import annotations

import json
from typing import Final

from batch_override.emulator.config import MEDIA
from batch_override.emulator.faults import Failure
from batch_override.emulator.state import Outcome

JSON: Final = "application/json"
HTML: Final = "text/html"


def _json(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


UNAUTHORIZED: Final = _json({"error": "Unauthorized"})
FORBIDDEN: Final = _json({"error": "Forbidden"})
TOO_MANY_ATTEMPTS: Final = _json({"message": "Too Many Attempts."})
CLASSIFICATION_REQUIRED: Final = _json({"classification": ["The classification field is required."]})
CLASSIFICATION_INVALID: Final = _json({"classification": ["The selected classification is invalid."]})

# Outcome.CREATED is absent: its body echoes the request (see created()).
REFUSALS: Final[dict[tuple[str, Outcome], bytes]] = {
    (media, outcome): _json({"error": message.format(media=media)})
    for media in MEDIA
    for outcome, message in (
        (Outcome.ALREADY_SUBMITTED, "You have already submitted a report for this content."),
        (Outcome.NO_REQUEST, "You haven't got any request for this content."),
        (Outcome.NOT_CLASSIFIED, "This {media} was not classified yet."),
        (Outcome.NO_COMPLETED_REQUEST, "No completed request for this {media} exists."),
        (Outcome.EXPIRED, "Is no longer possible to send a report for this {media}."),
    )
}

# Laravel's production 500, its maintenance-mode 503, and the HTML page nginx shows when the app
# behind it is gone: a client that assumes every error body is JSON breaks on the last one.
FAILURES: Final[dict[Failure, tuple[bytes, str]]] = {
    Failure.SERVER_ERROR: (_json({"message": "Server Error"}), JSON),
    Failure.SERVICE_UNAVAILABLE: (_json({"message": "Service Unavailable"}), JSON),
    Failure.BAD_GATEWAY: (
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
        b"</body>\r\n</html>\r\n",
        HTML,
    ),
}

_CREATED_PREFIX: Final[dict[tuple[str, str], bytes]] = {
    (classification, media): b'{"classification":"%s","type":"%s","hash":'
    % (classification.encode(), media.encode())
    for classification in ("human", "artificial")
    for media in MEDIA
}


def created(classification: str, media: str, content_hash: str) -> bytes:
    """The 201 body. ``content_hash`` comes from the URL, so it is JSON-escaped, not pasted."""
    return _CREATED_PREFIX[classification, media] + json.dumps(content_hash).encode() + b"}"

"""What the emulated server knows about content: each hash's status and the overrides recorded.

The rules, in the order the real API applies them:

1. An override already recorded for ``(key, media, hash)`` is answered "already submitted", whatever
   the classification asked this time, and nothing changes. The first override wins.
2. Otherwise the status of ``(media, hash)`` decides; only ``classified`` records an override.

Overrides are per key: another key that classified the same hash may override it too.
"""

from __future__ import annotations

import csv
import enum
import os
from collections.abc import Mapping

from batch_override.emulator.config import MEDIA, STATUSES


class Outcome(enum.Enum):
    """How the API answers a valid override request; each maps to one documented response."""

    CREATED = "created"
    ALREADY_SUBMITTED = "already_submitted"
    NO_REQUEST = "no_request"
    NOT_CLASSIFIED = "not_classified"
    NO_COMPLETED_REQUEST = "no_completed_request"
    EXPIRED = "expired"


_BY_STATUS: dict[str, Outcome] = {
    "classified": Outcome.CREATED,
    "not_classified": Outcome.NOT_CLASSIFIED,
    "no_completed_request": Outcome.NO_COMPLETED_REQUEST,
    "expired": Outcome.EXPIRED,
    "no_request": Outcome.NO_REQUEST,
}


class ContentState:
    """Statuses (read-only) plus the overrides recorded so far (grow only).

    ``submit`` never awaits, so on one event loop a check and its record cannot interleave with
    another request's: two concurrent first overrides yield exactly one 201.
    """

    __slots__ = ("_outcomes", "_recorded", "_unknown", "attempts", "overrides")

    def __init__(self, states: Mapping[tuple[str, str], str], unknown: str) -> None:
        # Resolved to outcomes once, so a request costs one dict lookup.
        self._outcomes = {item: _BY_STATUS[status] for item, status in states.items()}
        self._unknown = _BY_STATUS[unknown]
        self._recorded: set[tuple[str, str, str]] = set()
        self.overrides: list[dict[str, str]] = []
        # Eligible requests per (media, hash), the fault plan's attempt number.
        self.attempts: dict[tuple[str, str], int] = {}

    def next_attempt(self, media: str, content_hash: str) -> int:
        """Return how many eligible requests ``(media, content_hash)`` had before this one, and count it."""
        item = (media, content_hash)
        attempt = self.attempts.get(item, 0)
        self.attempts[item] = attempt + 1
        return attempt

    def submit(self, key: str, media: str, content_hash: str, classification: str) -> Outcome:
        """Apply one valid override request; record it when the outcome is ``CREATED``."""
        if (key, media, content_hash) in self._recorded:
            return Outcome.ALREADY_SUBMITTED
        outcome = self._outcomes.get((media, content_hash), self._unknown)
        if outcome is Outcome.CREATED:
            self._recorded.add((key, media, content_hash))
            self.overrides.append({"media": media, "hash": content_hash, "classification": classification})
        return outcome


def load_state_csv(path: str | os.PathLike[str]) -> dict[tuple[str, str], str]:
    """Read ``media,hash,status`` rows into the ``states`` mapping of ``EmulatorConfig``.

    Extra columns are ignored, a UTF-8 BOM is tolerated and cells are stripped. Raises
    ``ValueError`` naming the line for a missing column, an unknown media or status, an empty hash,
    or the same ``(media, hash)`` listed twice with different statuses (silently keeping one would
    hide a mistake in a test fixture). Hashes are kept as written: the server matches them exactly.
    """
    states: dict[tuple[str, str], str] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"media", "hash", "status"} - {name.strip() for name in reader.fieldnames or ()}
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))} in the header")
        reader.fieldnames = [name.strip() for name in reader.fieldnames or ()]
        for row in reader:
            where = f"{path}:{reader.line_num}"
            media = (row["media"] or "").strip()
            content_hash = (row["hash"] or "").strip()
            status = (row["status"] or "").strip()
            if media not in MEDIA:
                raise ValueError(f"{where}: unknown media {media!r} (expected one of {', '.join(MEDIA)})")
            if status not in STATUSES:
                raise ValueError(
                    f"{where}: unknown status {status!r} (expected one of {', '.join(STATUSES)})"
                )
            if not content_hash:
                raise ValueError(f"{where}: empty hash")
            previous = states.setdefault((media, content_hash), status)
            if previous != status:
                raise ValueError(f"{where}: {media} {content_hash} listed as both {previous} and {status}")
        return states

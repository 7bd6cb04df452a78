"""Durations and times of day: ``--max-duration 7h30m`` and ``--stop-at 06:00 Europe/Rome``.

Parsed here, once, for flags, job files and :class:`~.config.RunConfig` alike; a bad value is a
:class:`~.errors.UsageError` naming the flag.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .errors import UsageError

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([hms])")


def parse_duration(text: str) -> float:
    """Seconds from ``7h30m``, ``90m``, ``3s``, ``1.5h`` or a plain number of seconds."""
    stripped = text.strip().lower()
    try:
        return float(stripped)
    except ValueError:
        pass
    parts = _DURATION.findall(stripped)
    if not parts or _DURATION.sub("", stripped).strip():
        raise UsageError(f"--max-duration {text!r}: expected a duration such as 7h30m, 90m or 3s")
    return sum(float(n) * {"h": 3600.0, "m": 60.0, "s": 1.0}[unit] for n, unit in parts)


def format_duration(seconds: float) -> str:
    """``7h30m``, ``90s`` as ``1m30s``, ``3s``: how a message names a duration."""
    whole = round(seconds)
    if whole != seconds or whole == 0:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)


_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})(?:\s+(\S+))?\s*$")


@dataclass(frozen=True, slots=True)
class StopAt:
    """A time of day the run stops at: the next such time after the run starts, in ``zone``
    (an IANA name such as ``Europe/Rome``, or ``UTC``; None: the machine's local time).

    The traps: the next such time may be tomorrow (a run started at 06:01 with ``--stop-at 06:00``
    runs for a day less a minute); and a DST change makes a wall time missing or twice: the
    earlier instant is taken (02:30 on a spring-forward night is 01:30 in the old offset's terms,
    i.e. the stop comes early rather than an hour late).
    """

    hour: int
    minute: int
    zone: str | None = None

    @classmethod
    def parse(cls, text: str) -> StopAt:
        """``06:00``, ``6:00 UTC`` or ``06:00 Europe/Rome``."""
        match = _CLOCK.match(text)
        if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            raise UsageError(
                f"--stop-at {text!r}: expected HH:MM, optionally with a zone (06:00 Europe/Rome)"
            )
        return cls(int(match.group(1)), int(match.group(2)), match.group(3))

    def __post_init__(self) -> None:
        if self.zone is not None:
            self._tz()

    def _tz(self) -> dt.tzinfo | None:
        if self.zone is None:
            return None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(self.zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(f"--stop-at: unknown time zone {self.zone!r} (e.g. UTC, Europe/Rome)") from None

    def next_after(self, now: float) -> float:
        """The Unix time of the first such wall time strictly after ``now`` (a Unix time)."""
        tz = self._tz()
        today = dt.datetime.fromtimestamp(now, tz).date()
        for days in range(3):  # today, tomorrow, and one more day for a skipped wall time
            day = today + dt.timedelta(days=days)
            at = self._unix(day, tz)
            if at > now:
                return at
        raise AssertionError("unreachable: a wall time recurs every day")

    def _unix(self, day: dt.date, tz: dt.tzinfo | None) -> float:
        """The earlier instant of this wall time on ``day``: one rule for a named zone and the
        machine's (``tz`` None: a naive datetime, read with the local rules of TZ or
        /etc/localtime).  The trap: ``time.mktime(isdst=-1)`` would take the later instant on
        both DST nights, so the two folds are compared instead, as for a named zone."""
        wall = dt.datetime(day.year, day.month, day.day, self.hour, self.minute, tzinfo=tz)
        return min(wall.timestamp(), wall.replace(fold=1).timestamp())

    def __str__(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}" + (f" {self.zone}" if self.zone else "")


__all__ = ["StopAt", "format_duration", "parse_duration"]

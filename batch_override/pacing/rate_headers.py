"""What a rate-limit answer says: ``X-RateLimit-*`` and ``Retry-After``, read defensively.

Contract: :func:`read_headers` turns an answer's headers into a :class:`RateHeaders` whose fields
are sane numbers or ``None``.  A value that is absurd (text, fractional, negative, over 10^9, an
unparseable date) is treated as absent, and :class:`HeaderReader` logs it once per header name:
a proxy or CDN that mangles one header must neither crash the pacer (``deque(maxlen=10**20)``
raises ``OverflowError``) nor stall it, nor flood the log.

The trap: ``Retry-After`` has two forms (RFC 9110 section 10.2.3): whole seconds, or an HTTP date;
``X-RateLimit-Reset`` is a Unix time.  A date or a Unix time is the *server's* clock, so it is read
against the answer's own ``Date`` header when it has one (a server clock 60 s behind ours made
every wait read 0 s; 60 s ahead, every wait read a minute too long), else against our wall clock,
and clamped at zero.  Such a wait has a whole second's resolution and rests on two clocks:
:attr:`RateHeaders.dated` says so, and a dated wait of 0 is no evidence that the window ends
within the second (the pacer treats it as a 429 that says nothing).  ``Retry-After: 0`` in
seconds (Laravel on Redis at a window's end) is not dated and keeps its meaning.  Laravel sends
seconds, CDNs often send dates.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Mapping
from typing import NamedTuple

log = logging.getLogger("batch_override")

#: Larger counts or waits are not from a real throttle (deque sizes, timers and ints would choke).
ABSURD = 10**9


class RateHeaders(NamedTuple):
    """The sane part of one answer's rate-limit headers (``None``: absent or absurd)."""

    limit: int | None = None
    remaining: int | None = None
    #: Seconds to wait, from ``Retry-After`` (either form), else from ``X-RateLimit-Reset``.
    retry_after: float | None = None
    #: ``retry_after`` was computed from a date or a Unix time (see the module's trap).
    dated: bool = False

    @property
    def wait(self) -> float | None:
        """``retry_after`` as evidence of when the window ends: None for a dated 0 (a skewed clock
        or the date's whole second; read as "within a second", it taught a 6 s window for 10 s)."""
        return None if self.dated and not self.retry_after else self.retry_after


def _whole(value: str) -> int | None:
    """A non-negative whole number up to :data:`ABSURD`, else None."""
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        return None
    number = int(text) if len(text) <= 12 else ABSURD + 1
    return number if number <= ABSURD else None


def _http_date(value: str) -> float | None:
    """The Unix time an HTTP date names, or None."""
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; an obsolete form without a zone is too
        return None
    return when.timestamp()


def server_now(headers: Mapping[str, str], now_unix: float | None = None) -> float:
    """The server's clock when it answered: its ``Date`` header, else ``now_unix`` (default: ours)."""
    value = headers.get("Date")
    when = _http_date(value) if value is not None else None
    if when is not None:
        return when
    return time.time() if now_unix is None else now_unix


class HeaderReader:
    """Reads rate-limit headers; warns once per header name about absurd values."""

    __slots__ = ("_warned",)

    def __init__(self) -> None:
        self._warned: set[str] = set()

    def _absurd(self, name: str, value: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.warning("ignoring %s: %.40r is not a sane value (treated as absent)", name, value)

    def _int(self, headers: Mapping[str, str], name: str, least: int) -> int | None:
        value = headers.get(name)
        if value is None:
            return None
        number = _whole(value)
        if number is None or number < least:
            self._absurd(name, value)
            return None
        return number

    def retry_after(self, headers: Mapping[str, str], now_unix: float | None = None) -> float | None:
        """Seconds to wait from ``Retry-After`` (seconds or HTTP date), else ``X-RateLimit-Reset``;
        a date against the answer's ``Date`` (else ``now_unix``, default our clock)."""
        found = self.wait(headers, now_unix)
        return None if found is None else found[0]

    def wait(self, headers: Mapping[str, str], now_unix: float | None = None) -> tuple[float, bool] | None:
        """``(seconds, dated)``: :meth:`retry_after`, and whether it came from a date."""
        value = headers.get("Retry-After")
        if value is not None:
            seconds = _whole(value)
            if seconds is not None:
                return float(seconds), False
            when = _http_date(value)
            if when is not None and (wait := when - server_now(headers, now_unix)) <= ABSURD:
                return max(0.0, wait), True
            self._absurd("Retry-After", value)
        value = headers.get("X-RateLimit-Reset")
        if value is not None:
            text = value.strip()
            # A unix time (about 1.8e9 today) is over ABSURD itself: bound the wait instead.
            if text.isascii() and text.isdigit() and len(text) <= 12:
                wait = int(text) - server_now(headers, now_unix)
                if wait <= ABSURD:
                    return max(0.0, wait), True
            self._absurd("X-RateLimit-Reset", value)
        return None

    def read(self, headers: Mapping[str, str], status: int) -> RateHeaders:
        limit = self._int(headers, "X-RateLimit-Limit", 1)
        remaining = self._int(headers, "X-RateLimit-Remaining", 0)
        if limit is not None and remaining is not None and remaining > limit:
            self._absurd("X-RateLimit-Remaining", headers.get("X-RateLimit-Remaining", ""))
            remaining = None
        wait = self.wait(headers) if status == 429 else None
        return RateHeaders(limit, remaining, *(wait or (None, False)))


def retry_after_seconds(headers: Mapping[str, str], now_unix: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date), else ``X-RateLimit-Reset``;
    None when absent or absurd (without a warning: the pacer warns)."""
    return _Quiet().retry_after(headers, now_unix)


class _Quiet(HeaderReader):
    __slots__ = ()

    def _absurd(self, name: str, value: str) -> None:
        pass

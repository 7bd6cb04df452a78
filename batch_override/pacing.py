"""Pacing requests to a Laravel-style fixed-window throttle without being throttled.

Two meters compose (as aiometer composes its limits):

* even spacing, from aiolimiter's ``AsyncLimiter(1, interval)``: one request per interval, never
  the initial burst that ``AsyncLimiter(N, period)`` allows (N at once, then a window of 429s);
* a window budget that mirrors the server's own count.  The server opens a window at the first
  request and answers ``X-RateLimit-Remaining`` on every response; when the budget of a window is
  spent, the pacer holds until the window (as the responses locate it) has ended.  Even spacing
  alone can put one request too many into a window when arrival times jitter; the budget cannot.

With an explicit rate the limit and period are the user's.  With ``auto`` the limit comes from
``X-RateLimit-Limit`` less the headroom, and the period is learned: a new window opening bounds it
from above, a response still counted in the old window bounds it from below, and a period that
is a whole number of seconds (Laravel's decay always is) is taken as soon as only one fits.

The trap: a 429 means the budget model was wrong (or other traffic shares the key).  The pacer
then holds every sender until ``Retry-After`` has passed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from aiolimiter import AsyncLimiter

from .config import Rate

#: Margin after an estimated window end before the next window's first request.
WINDOW_MARGIN = 0.004
#: The period assumed in auto mode until responses tell better (Laravel's smallest decay).
INITIAL_PERIOD = 1.0


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def retry_after_seconds(headers: Mapping[str, str], now_unix: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds form), else ``X-RateLimit-Reset``."""
    value = headers.get("Retry-After")
    if value is not None:
        try:
            return max(0.0, float(value.strip()))
        except ValueError:
            pass
    reset = _header_int(headers, "X-RateLimit-Reset")
    if reset is not None:
        now = time.time() if now_unix is None else now_unix
        return max(0.0, reset - now)
    return None


class Ticket(NamedTuple):
    """A granted turn: the send's sequence number and time, handed back to :meth:`Pacer.observe`."""

    seq: int
    sent_at: float


class Pacer:
    """Decides when the next request may start.  Use :meth:`acquire` before each request and
    :meth:`observe` with its answer.  ``rate=None`` means auto."""

    def __init__(
        self,
        rate: Rate | None,
        *,
        headroom: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fixed = rate
        self._headroom = headroom if rate is None else 0.0
        self._clock = clock
        self._lock = asyncio.Lock()
        self._server_limit: int | None = None
        self._period = rate.period if rate is not None else INITIAL_PERIOD
        self._period_lo = 0.0
        self._period_hi = math.inf
        self._window_start: float | None = None
        self._used = 0
        self._seq = 0
        self._blocked_until = 0.0
        self._probe_pending = False
        self._limiter: AsyncLimiter | None = None
        self._interval = 0.0
        self.throttled = 0
        self._set_interval()

    # -- the current model ---------------------------------------------------------------------
    @property
    def budget(self) -> int | None:
        """Requests allowed per window, or None while the limit is unknown (auto, before a reply)."""
        limits = []
        if self._fixed is not None:
            limits.append(self._fixed.limit)
        if self._server_limit is not None:
            limits.append(max(1, math.floor(self._server_limit * (1 - self._headroom))))
        return min(limits) if limits else None

    @property
    def period(self) -> float:
        return self._period

    def describe(self) -> str:
        if self._fixed is not None:
            return f"{self._fixed} (evenly spaced)"
        budget = self.budget
        return "auto (learning)" if budget is None else f"auto: {budget}/{self._period:g}s"

    def _set_interval(self) -> None:
        budget = self.budget
        interval = self._period / budget if budget else 0.0
        if self._limiter is None or abs(interval - self._interval) > 1e-9:
            self._interval = interval
            self._limiter = AsyncLimiter(1, interval) if interval > 0 else None

    # -- the two calls -------------------------------------------------------------------------
    async def acquire(self) -> Ticket:
        """Wait for a turn; the ticket goes back to :meth:`observe` with the answer."""
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._blocked_until:
                    await asyncio.sleep(self._blocked_until - now)
                    continue
                budget = self.budget
                if budget is None:
                    # Auto mode before the first answer: one request at a time tells the limit.
                    if self._probe_pending:
                        await asyncio.sleep(0.005)
                        continue
                    self._probe_pending = True
                    break
                if self._window_start is not None and self._used >= budget:
                    end = self._window_start + self._period + WINDOW_MARGIN
                    if now < end:
                        await asyncio.sleep(end - now)
                        continue
                    self._window_start = None
                    self._used = 0
                if self._window_start is not None and now >= self._window_start + self._period:
                    self._window_start = None
                    self._used = 0
                if self._limiter is not None:
                    await self._limiter.acquire()
                break
            sent = self._clock()
            if self._window_start is None:
                self._window_start = sent
            self._used += 1
            self._seq += 1
            return Ticket(self._seq, sent)

    def observe(self, ticket: Ticket, status: int | None, headers: Mapping[str, str]) -> None:
        """Learn from an answer (``status`` None: no answer, nothing to learn)."""
        self._probe_pending = False
        if status is None:
            return
        limit = _header_int(headers, "X-RateLimit-Limit")
        remaining = _header_int(headers, "X-RateLimit-Remaining")
        now = self._clock()
        if limit is not None and limit > 0 and limit != self._server_limit:
            self._server_limit = limit
        if status == 429:
            self.throttled += 1
            wait = retry_after_seconds(headers)
            wait = self._period if wait is None else wait
            self._blocked_until = max(self._blocked_until, now + wait)
            if self._window_start is not None and self._fixed is None:
                self._period_lo = max(self._period_lo, now - self._window_start)
            self._window_start = None
            self._used = 0
            self._update_period()
            return
        if limit is None or remaining is None:
            self._set_interval()
            return
        sent_at = ticket.sent_at
        later = self._seq - ticket.seq  # sent after this one, not yet counted by the server
        if self._window_start is not None and sent_at < self._window_start:
            pass  # an answer from an earlier window: it says nothing of the current one
        elif remaining == limit - 1:
            # This request opened a server window.
            if self._window_start is not None and sent_at > self._window_start and self._fixed is None:
                self._period_hi = min(self._period_hi, sent_at - self._window_start)
            self._window_start = sent_at
            self._used = 1 + later
        else:
            if self._window_start is not None and self._fixed is None:
                self._period_lo = max(self._period_lo, sent_at - self._window_start)
            self._used = max(self._used, limit - remaining + later)
        self._update_period()

    def _update_period(self) -> None:
        if self._fixed is None:
            lo, hi = self._period_lo, self._period_hi
            if math.isfinite(hi):
                whole = [s for s in range(max(1, math.floor(lo) + 1), math.floor(hi) + 1) if lo < s <= hi]
                self._period = float(whole[0]) if len(whole) == 1 else max(hi, lo)
            elif lo >= self._period:
                self._period = float(math.floor(lo) + 1)
        self._set_interval()

"""Pacing requests to a Laravel-style fixed-window throttle without being throttled.

Two meters compose (as aiometer composes its limits):

* :class:`SlidingLog`: at most ``limit`` sends in *any* window of ``period`` seconds, on an evenly
  spaced grid.  The grid is absolute, so a late wake-up does not push every later send back (a
  relative sleep loses ~1 ms per send to timer rounding: 5 % at 50/s); the log of the last
  ``limit`` sends makes the catch-up provably safe.  aiolimiter's leaky bucket cannot do both:
  ``AsyncLimiter(N, period)`` bursts N at once (and allows up to 2N in a period), while
  ``AsyncLimiter(1, period / N)`` spaces evenly but drifts.
* the server's window: Laravel opens a window at the first request and counts down
  ``X-RateLimit-Remaining``.  When the budget of a window is spent, the pacer holds until that
  window has surely ended (the answer that revealed it arrived after it opened, so its arrival
  time plus the period is a safe bound).  Even spacing alone can put one request too many into
  a window when arrival times jitter; this cannot.

With an explicit rate the limit and period are the user's.  With ``auto`` the limit comes from
``X-RateLimit-Limit`` less the headroom, and the period is learned: a new window opening bounds it
from above, an answer still counted in the old window bounds it from below, and a whole number of
seconds (Laravel's decay always is one) is taken as soon as only one fits between the bounds.

The trap: a 429 means the model was wrong (or other traffic shares the key); every sender then
holds until ``Retry-After`` has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import NamedTuple

from .config import Rate

log = logging.getLogger("batch_override")

#: The period assumed in auto mode until answers tell better (Laravel's smallest decay).
INITIAL_PERIOD = 1.0
#: Auto mode's pace when the server sends no X-RateLimit headers (a proxy may strip them):
#: Laravel's default throttle, 60 requests per minute.
FALLBACK_RATE = Rate(60, 60.0)


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


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class SlidingLog:
    """At most ``limit`` sends in any window of ``period`` seconds, evenly spaced, without drift."""

    __slots__ = ("_next", "_sends", "interval", "limit", "period")

    def __init__(self, limit: int, period: float, recent: deque[float] | None = None) -> None:
        self.limit = limit
        self.period = period
        self.interval = period / limit
        self._sends: deque[float] = deque(recent or (), maxlen=limit)
        self._next = self._sends[-1] + self.interval if self._sends else -math.inf

    def wait(self, now: float) -> float:
        """Seconds until the next send may go (0 when it may go now)."""
        at = self._next
        if len(self._sends) == self.limit:
            at = max(at, self._sends[0] + self.period)
        return max(0.0, at - now)

    def record(self, now: float) -> None:
        # A send up to a quarter interval late keeps its grid slot (no drift); a later one (after
        # a pause) starts the grid afresh, so two sends are never closer than 3/4 of an interval.
        slot = max(self._next, now - self.interval / 4) if self._sends else now
        self._next = slot + self.interval
        self._sends.append(now)

    @property
    def recent(self) -> deque[float]:
        return self._sends


class Ticket(NamedTuple):
    """A granted turn: the send's sequence number and time, handed back to :meth:`Pacer.observe`."""

    seq: int
    sent_at: float


class Pacer:
    """Decides when the next request may start.  Call :meth:`acquire` before each request and
    :meth:`observe` with its answer.  ``rate=None`` means auto."""

    def __init__(
        self,
        rate: Rate | None,
        *,
        headroom: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        stopped: asyncio.Event | None = None,
    ) -> None:
        self._fixed = rate
        self._stopped = stopped or asyncio.Event()
        self.fallback = False  # auto mode, and the server sends no X-RateLimit headers
        self._headroom = headroom if rate is None else 0.0
        self._clock = clock
        self._lock = asyncio.Lock()
        self._answered = asyncio.Event()
        self._server_limit: int | None = None
        self._period = rate.period if rate is not None else INITIAL_PERIOD
        self._period_lo = 0.0
        self._period_hi = math.inf
        # The server window we are in: the send and answer times of the request that opened it.
        # The server opened it in between, so (answer time + period) is when it surely ended.
        self._win_seq: int | None = None
        self._win_sent: float | None = None
        self._win_answered: float | None = None
        self._used = 0
        self._seq = 0
        self._blocked_until = 0.0
        self._probing = False
        self._log: SlidingLog | None = None
        self.throttled = 0
        self._rebuild()

    # -- the current model ---------------------------------------------------------------------
    @property
    def budget(self) -> int | None:
        """Requests allowed per window, or None while the limit is unknown (auto, before a reply)."""
        limits = []
        if self._fixed is not None:
            limits.append(self._fixed.limit)
        elif self.fallback and self._server_limit is None:
            limits.append(FALLBACK_RATE.limit)
        if self._server_limit is not None:
            limits.append(max(1, math.floor(self._server_limit * (1 - self._headroom))))
        return min(limits) if limits else None

    @property
    def period(self) -> float:
        return self._period

    def describe(self) -> str:
        if self._fixed is not None:
            return f"{self._fixed} (evenly spaced)"
        if self.fallback and self._server_limit is None:
            return f"auto: no X-RateLimit headers, {FALLBACK_RATE}"
        budget = self.budget
        return "auto (learning)" if budget is None else f"auto: {budget}/{self._period:g}s"

    def _rebuild(self) -> None:
        budget = self.budget
        if budget is None:
            return
        log = self._log
        if log is None or log.limit != budget or abs(log.period - self._period) > 1e-9:
            self._log = SlidingLog(budget, self._period, log.recent if log is not None else None)

    def _new_window(self) -> None:
        self._win_seq = None
        self._win_sent = self._win_answered = None
        self._used = 0

    async def _wait_answer(self, at_most: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(self._answered, self._stopped), at_most)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the run stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    # -- the two calls -------------------------------------------------------------------------
    async def acquire(self) -> Ticket | None:
        """Wait for a turn; the ticket goes back to :meth:`observe` with the answer.  None when the
        run stopped while waiting (nothing may be sent then)."""
        if not self._lock.locked() and (ticket := self._grant_now()) is not None:
            return ticket  # the common case at full speed: nobody waiting, nothing to wait for
        async with self._lock:
            while True:
                if self._stopped.is_set():
                    return None
                now = self._clock()
                if now < self._blocked_until:
                    await self._sleep(self._blocked_until - now)
                    continue
                budget = self.budget
                if budget is None or self._log is None:
                    # Auto mode before the first answer: one request alone tells the limit.
                    if self._probing:
                        await self._wait_answer(self._period)
                        continue
                    self._probing = True
                    break
                if self._used >= budget:
                    if self._win_answered is None:
                        # The window's opener is still in flight: its answer dates the window.
                        await self._wait_answer(self._period)
                        if self._win_answered is None and self._clock() - now >= self._period:
                            self._new_window()  # the opener's answer was lost; a period has passed
                        continue
                    end = self._win_answered + self._period
                    if now < end:
                        await self._sleep(end - now)
                        continue
                    self._new_window()
                wait = self._log.wait(now)
                if wait > 0:
                    await self._sleep(wait)
                    continue
                break
            return self._record(self._clock())

    def _grant_now(self) -> Ticket | None:
        """A turn without waiting, when no rule asks to wait (else None: take the slow path)."""
        if self._stopped.is_set() or self._log is None or self.budget is None:
            return None
        now = self._clock()
        budget = self.budget
        if now < self._blocked_until or self._used >= budget or self._log.wait(now) > 0:
            return None
        return self._record(now)

    def _record(self, sent: float) -> Ticket:
        if self._log is not None:
            self._log.record(sent)
        self._used += 1
        self._seq += 1
        if self._win_seq is None:
            self._win_seq, self._win_sent = self._seq, sent
        return Ticket(self._seq, sent)

    def observe(self, ticket: Ticket, status: int | None, headers: Mapping[str, str]) -> None:
        """Learn from an answer (``status`` None: no answer, nothing to learn)."""
        if status is not None:
            self._learn(ticket, status, headers, self._clock())
        if self._probing and (self.budget is not None or status is None):
            self._probing = False
        self._answered.set()
        self._answered.clear()

    def _learn(self, ticket: Ticket, status: int, headers: Mapping[str, str], now: float) -> None:
        limit = _header_int(headers, "X-RateLimit-Limit")
        remaining = _header_int(headers, "X-RateLimit-Remaining")
        if limit is not None and limit > 0:
            if self.fallback and self._server_limit is None:
                self._period = INITIAL_PERIOD  # headers after all: learn as usual
            self._server_limit = limit
        if status == 429:
            self.throttled += 1
            wait = retry_after_seconds(headers)
            self._blocked_until = max(self._blocked_until, now + (self._period if wait is None else wait))
            if self._win_answered is not None:
                # It arrived while the window was still open: the period is longer than this.
                self._period_lo = max(self._period_lo, ticket.sent_at - self._win_answered)
            self._new_window()
            self._update_period()
            return
        if limit is None or remaining is None:
            if self._fixed is None and self._server_limit is None and not self.fallback:
                self.fallback = True
                self._period = FALLBACK_RATE.period
                log.warning(
                    "the server sends no X-RateLimit headers: pacing at %s (set --rate to choose)",
                    FALLBACK_RATE,
                )
            self._rebuild()
            return
        later = self._seq - ticket.seq  # sent after this one, not yet counted in `remaining`
        counted = limit - remaining  # this request's place in its server window
        if self._win_seq is not None and ticket.seq < self._win_seq:
            return  # an answer from an earlier window says nothing of the current one
        place = ticket.seq - self._win_seq + 1 if self._win_seq is not None else None
        if counted == 1:
            # This request opened a server window, somewhere between its send and now.
            if (
                self._win_answered is not None
                and self._win_sent is not None
                and place is not None
                and place > 1
            ):
                self._period_hi = min(self._period_hi, now - self._win_sent)
            self._win_seq, self._win_sent, self._win_answered = ticket.seq, ticket.sent_at, now
            self._used = 1 + later
        elif place is not None and counted < place:
            # A newer window whose opener has not answered yet: it was the `counted`-th send back.
            self._win_seq, self._win_sent, self._win_answered = ticket.seq - counted + 1, None, None
            self._used = counted + later
        else:
            if self._win_answered is not None:
                self._period_lo = max(self._period_lo, ticket.sent_at - self._win_answered)
            self._used = max(self._used, counted + later)
        self._update_period()

    def _update_period(self) -> None:
        if self._fixed is None:
            lo, hi = self._period_lo, self._period_hi
            if math.isfinite(hi):
                whole = [s for s in range(max(1, math.floor(lo) + 1), math.floor(hi) + 1) if lo < s <= hi]
                self._period = float(whole[0]) if len(whole) == 1 else max(hi, lo)
            elif lo >= self._period:
                self._period = float(math.floor(lo) + 1)
        self._rebuild()

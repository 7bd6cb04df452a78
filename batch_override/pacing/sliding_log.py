"""The rate meter: at most ``limit`` sends in any span of ``period`` seconds, evenly spaced.

The grid is absolute, so a late wake-up does not push every later send back (a relative sleep
loses the timer's rounding on every send, which adds up at high rates); the log of the last
``limit`` sends makes the catch-up provably safe.  aiolimiter's leaky bucket cannot do both:
``AsyncLimiter(N, period)`` bursts N at once (and allows up to 2N in a period), while
``AsyncLimiter(1, period / N)`` spaces evenly but drifts.
"""

from __future__ import annotations

import math
from collections import deque


class SlidingLog:
    """At most ``limit`` sends in any span of ``period`` seconds, evenly spaced, without drift.

    The trap: ``recent`` carries the log over when the pacer changes the limit or period, so a
    shorter period never lets the sends of the last period burst again.
    """

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


class CatchUp:
    """The rest of one server window's budget, evenly spaced over the rest of that window.

    When auto pacing first learns the window's length, the window in progress has gone by at the
    minute's guess: its budget is still almost whole.  The steady meter would spend it over a
    full period from now, a round trip after the window opened, and a short window would get
    well under its budget.  This meter spends it by the window's end instead, at most :attr:`PACE` times the
    steady pace (evenly spaced all the same); from that end on the steady meter starts afresh, so
    the sends caught up do not push the next window's back.  The trap: the window opened when the
    request that showed it *arrived*, somewhere in its round trip; but a send reaches the server
    as much later as that request did, so the window's end for sends is that request's *send*
    time plus the window's length.  And that length is the first estimate: a second job that
    saw a window rarely (its share was small) may first see 10 s for a 1 s window; when the
    estimate changes, the catch-up ends (:meth:`stop`), or it would pace 9/s for 10 s.
    """

    __slots__ = ("_meter", "until")

    #: At most this many times the steady pace.
    PACE = 1.25

    def __init__(self) -> None:
        self._meter: SlidingLog | None = None
        self.until = -math.inf  # the window's likely end: the steady meter takes over then

    def start(self, now: float, opened: float, left: int, steady: SlidingLog) -> None:
        """The send that opened the window went at ``opened``; ``left`` sends of its budget are
        left; ``steady`` paces the budget over the window's length."""
        end = opened + steady.period
        left = min(left, math.floor(self.PACE * steady.limit / steady.period * (end - now)))
        if left > 0:
            self._meter, self.until = SlidingLog(left, end - now), end

    def stop(self) -> deque[float]:
        """End the catch-up now (the window's length it was for turned out otherwise); its sends,
        for the steady meter to count."""
        meter, self._meter, self.until = self._meter, None, -math.inf
        return deque() if meter is None else meter.recent

    def _active(self, now: float) -> SlidingLog | None:
        """The meter while catching up; None once the window has ended (or never started)."""
        if now >= self.until:
            self._meter = None
        return self._meter

    def wait(self, now: float) -> float | None:
        """Seconds until the next send may go; None when not catching up (the steady meter's turn)."""
        meter = self._active(now)
        return None if meter is None else meter.wait(now)

    def record(self, now: float) -> bool:
        """Take a send made at ``now``; False when not catching up."""
        meter = self._active(now)
        if meter is not None:
            meter.record(now)
        return meter is not None

"""The rate meter: at most ``limit`` sends in any window of ``period`` seconds, evenly spaced.

The grid is absolute, so a late wake-up does not push every later send back (a relative sleep
loses ~1 ms per send to timer rounding: 5 % at 50/s); the log of the last ``limit`` sends makes
the catch-up provably safe.  aiolimiter's leaky bucket cannot do both: ``AsyncLimiter(N, period)``
bursts N at once (and allows up to 2N in a period), while ``AsyncLimiter(1, period / N)`` spaces
evenly but drifts.
"""

from __future__ import annotations

import math
from collections import deque


class SlidingLog:
    """At most ``limit`` sends in any window of ``period`` seconds, evenly spaced, without drift.

    The trap: ``recent`` carries the log over when the pacer changes the limit or period, so a
    shorter period never lets the sends of the last window burst again.
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

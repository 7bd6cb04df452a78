"""The outage breaker: when the server as a whole is in trouble, all senders pause together.

One failing row is the row's problem and spends its retries; many senders failing at once
(5xx, dropped connections, timeouts) is the server's, and burning every row's retries then would
turn a ten-minute proxy outage into a million ``failed`` rows.  After ``threshold`` transient
failures in a row the breaker opens: senders wait, one probe request at a time goes out with
growing backoff, and the first real answer closes it.  An outage longer than ``max_outage``
seconds raises :class:`OutageTooLong`.  A failure that says when to come back (a 503 with
``Retry-After``, Laravel's maintenance mode) sets the next probe's delay instead (at most
``max_wait``), so service is resumed within a moment of ``Retry-After``, not a doubling later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from ..pacing.backoff import Backoff

#: The shortest streak of transient failures that opens the breaker, however few requests are in
#: flight: with one or two in flight, two failures in a row are one bad round trip, not an outage.
#: Above it the streak is what may be in flight now (a round trip's worth of failures).
MIN_STREAK = 3
#: The fewest distinct rows a streak must come from: one row failing again and again is that row's
#: problem (a hash the server chokes on), not the server's.
MIN_ROWS = 2
#: With three senders or more, three rows: two bad rows failing together are still not an outage.
MAX_ROWS = 3


class OutageTooLong(Exception):
    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(f"the server has been unavailable for {seconds:.0f}s ({reason})")
        self.seconds = seconds


class Breaker:
    def __init__(
        self,
        threshold: int | Callable[[], int],
        *,
        rows_needed: int = MIN_ROWS,
        max_outage: float,
        backoff: Backoff | None = None,
        max_wait: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        stopped: asyncio.Event | None = None,
    ) -> None:
        self._stopped = stopped or asyncio.Event()
        # A number, or a function asked at each failure: under auto concurrency, what may be in
        # flight now (a streak as long as one round trip's worth of requests).
        self._threshold = threshold if callable(threshold) else (lambda: threshold)
        self._rows_needed = rows_needed
        self._max_outage = max_outage
        self._backoff = backoff or Backoff()
        self._max_wait = max_wait
        self._retry_after: float | None = None  # the server's word for the next probe's delay
        self._clock = clock
        self._streak = 0
        self._streak_rows: set[int] = set()
        self._opened_at: float | None = None
        self._reason = ""
        self._closed = asyncio.Event()
        self._closed.set()
        self._probe = asyncio.Lock()
        self._probes = 0
        self.outages = 0

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def check(self) -> None:
        """Raise :class:`OutageTooLong` if the current outage has lasted too long."""
        if self._opened_at is not None:
            lasted = self._clock() - self._opened_at
            if lasted > self._max_outage:
                raise OutageTooLong(lasted, self._reason)

    async def wait_turn(self) -> bool:
        """Wait until a request may go; True when it goes as the outage's probe.  Returns at once
        (False) when the run has stopped: the caller checks that before sending."""
        while self._opened_at is not None and not self._stopped.is_set():
            self.check()
            if self._probe.locked():
                waiter = asyncio.ensure_future(self._closed.wait())
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), timeout=self._backoff.base)
                except TimeoutError:
                    pass
                finally:
                    waiter.cancel()
                continue
            await self._probe.acquire()
            if self._opened_at is None:
                self._probe.release()
                return False
            delay = self._backoff.delay(self._probes)
            if self._retry_after is not None:
                delay, self._retry_after = self._retry_after, None
            self._probes += 1
            remaining = self._max_outage - (self._clock() - self._opened_at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), max(0.0, min(delay, remaining + 0.01)))
            if self._stopped.is_set():
                self._probe.release()
                return False
            self.check()
            return True
        return False

    def succeeded(self, probe: bool) -> None:
        """A real answer (anything but 5xx / no answer): the server is up."""
        self._streak = 0
        self._streak_rows.clear()
        if self._opened_at is not None:
            self._opened_at = None
            self._probes = 0
            self._retry_after = None
            self._closed.set()
        if probe and self._probe.locked():
            self._probe.release()

    def failed(self, reason: str, probe: bool, row: int = -1, retry_after: float | None = None) -> bool:
        """A transient failure; True when it is part of an outage (the row keeps its retries).
        ``retry_after``: the server's ``Retry-After``, the next probe's delay (at most ``max_wait``).

        An outage needs ``threshold`` failures in a row *from at least two rows* (three with
        more senders): one row failing again and again is that row's problem, not the server's.
        The trap: a threshold of the most that may ever be in flight (64 under auto) lets a
        failing server take 64 failures, and the rows their retries, where 4 were in flight.
        """
        self._streak += 1
        self._streak_rows.add(row)
        if retry_after is not None:
            self._retry_after = min(retry_after, self._max_wait)
        if probe and self._probe.locked():
            self._probe.release()
        # A failure that says when to come back (maintenance mode) speaks for the whole server:
        # the streak need not be as long as what may be in flight, only from enough rows.
        needed = self._rows_needed if retry_after is not None else max(1, self._threshold())
        if self._opened_at is None and self._streak >= needed and len(self._streak_rows) >= self._rows_needed:
            self._opened_at = self._clock()
            self._reason = reason
            self._closed.clear()
            self.outages += 1
        return self._opened_at is not None

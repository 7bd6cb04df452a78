"""The field between client and server: network delay, and a server that can serve only so many at once.

``Latency`` draws each request's delay: a fixed ``median`` when no ``p99`` is given (the emulator's
historic ``--latency-ms N``), otherwise a lognormal with that median and 99th percentile, drawn
from its own seeded generator so a run can be replayed. ``Workers`` admits at most ``capacity``
requests into service at once, each held ``service`` seconds; the rest queue in arrival order, so
latency grows with load exactly as in front of a pool of PHP workers. ``InFlight`` integrates how
many requests the server holds over time, so a benchmark can report a client's mean concurrency
(Little's law) without instrumenting the client.

The delay is a round trip: half of it before the request is processed (the request travelling
out), half after (the answer travelling back), so a throttle counts a request half-way, as a
server that far away would.  Trap: before issue 10 all of it came first, which let a long tail's
stragglers reach the throttle up to a whole round trip after the client's last send.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Iterator
from statistics import NormalDist

_Z99 = NormalDist().inv_cdf(0.99)


class Latency:
    """Per-request network delay in seconds; ``draw()`` is 0.0 forever when ``median`` is 0."""

    __slots__ = ("_mu", "_random", "_sigma", "median")

    def __init__(self, median: float, p99: float | None = None, seed: int = 0) -> None:
        self.median = median
        self._random = random.Random(f"latency\0{seed}")  # its own stream: faults never shift it
        self._mu = math.log(median) if median > 0 else 0.0
        self._sigma = math.log(p99 / median) / _Z99 if p99 is not None and median > 0 else 0.0

    def draw(self) -> float:
        if not self._sigma:
            return self.median
        return self._random.lognormvariate(self._mu, self._sigma)


class Workers:
    """At most ``capacity`` requests in service at once (``None``: unlimited), ``service`` s each.

    Waiters queue on an ``asyncio.Semaphore``, which wakes them in arrival order.
    """

    __slots__ = ("_slots", "service")

    def __init__(self, capacity: int | None, service: float) -> None:
        self._slots = asyncio.Semaphore(capacity) if capacity is not None else None
        self.service = service

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a free worker, spend the service time, then run the block holding the worker."""
        if self._slots is None:
            if self.service:
                await asyncio.sleep(self.service)
            yield
            return
        async with self._slots:
            if self.service:
                await asyncio.sleep(self.service)
            yield


class InFlight:
    """How many requests the server holds now, at most, and in total over time (request-seconds);
    and the unix times of the first and last arrivals, so a benchmark can tell the rate sent."""

    __slots__ = ("_since", "first", "last", "max", "now", "seconds")

    def __init__(self) -> None:
        self.now = 0
        self.max = 0
        self.seconds = 0.0
        self.first = self.last = 0.0
        self._since = time.monotonic()

    def _tick(self) -> None:
        now = time.monotonic()
        self.seconds += self.now * (now - self._since)
        self._since = now

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        self._tick()
        self.last = time.time()
        self.first = self.first or self.last
        self.now += 1
        self.max = max(self.max, self.now)
        try:
            yield
        finally:
            self._tick()
            self.now -= 1

    def snapshot(self) -> dict[str, float]:
        self._tick()
        fields = ("now", "max", "seconds", "first", "last")
        return {name: float(getattr(self, name)) for name in fields}


class Network:
    """What stands between a request's arrival and its processing: delay, then a free worker."""

    __slots__ = ("in_flight", "latency", "workers")

    def __init__(self, latency: Latency, workers: Workers) -> None:
        self.latency = latency
        self.workers = workers
        self.in_flight = InFlight()

    @contextlib.asynccontextmanager
    async def carry(self) -> AsyncIterator[None]:
        """Delay the request half its round trip, wait for and hold a worker, run the block (which
        answers it), then delay the answer the other half."""
        with self.in_flight.track():
            delay = self.latency.draw()
            if delay:
                await asyncio.sleep(delay / 2)
            async with self.workers.slot():
                yield
            if delay:
                await asyncio.sleep(delay / 2)

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

``LatencyJump`` is a route that changes mid-run (``--latency-jump AFTER:MEDIAN[:P99]``): until
its time every request's round trip is drawn from the first ``Latency``, from then on from the
second, decided once as the request arrives (a request already on its way keeps its delay).  The
server keeps no queue for it (unless ``--capacity`` says so): a client that keeps 64 in flight at
a 2 s round trip gets 32 answers a second.  Its time is read on the emulator's clock (a test's
virtual clock), the delays are slept on the event loop's.

``InFlight`` also keeps every arrival's unix time (``GET /_emulator/arrivals``), so a benchmark
can tell a client's pauses and its rate over any stretch; the trap: 8 bytes a request, kept for
the emulator's life.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from array import array
from collections.abc import AsyncIterator, Callable, Iterator
from statistics import NormalDist
from typing import Protocol

from batch_override.emulator.config import EmulatorConfig

_Z99 = NormalDist().inv_cdf(0.99)


class Latency:
    """Per-request network delay in seconds; ``draw()`` is 0.0 forever when ``median`` is 0."""

    __slots__ = ("_mu", "_random", "_sigma", "median")

    def __init__(
        self, median: float, p99: float | None = None, seed: int = 0, stream: str = "latency"
    ) -> None:
        self.median = median
        self._random = random.Random(f"{stream}\0{seed}")  # its own stream: faults never shift it
        self._mu = math.log(median) if median > 0 else 0.0
        self._sigma = math.log(p99 / median) / _Z99 if p99 is not None and median > 0 else 0.0

    def draw(self) -> float:
        if not self._sigma:
            return self.median
        return self._random.lognormvariate(self._mu, self._sigma)


class Delay(Protocol):
    """What ``Network`` draws a request's round trip from: a ``Latency`` or a ``LatencyJump``."""

    def draw(self) -> float: ...


class LatencyJump:
    """``before``'s delays until ``at`` (unix seconds on ``clock``), ``after``'s from then on;
    ``jumped`` counts the requests that drew from ``after``."""

    __slots__ = ("_clock", "after", "at", "before", "jumped")

    def __init__(self, before: Latency, after: Latency, at: float, clock: Callable[[], float]) -> None:
        self.before = before
        self.after = after
        self.at = at
        self._clock = clock
        self.jumped = 0

    def draw(self) -> float:
        if self._clock() < self.at:
            return self.before.draw()
        self.jumped += 1
        return self.after.draw()

    def stats(self) -> dict[str, float]:
        return {"at": self.at, "median": self.after.median, "jumped": self.jumped}


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
    and the unix time of every arrival (``arrivals``, in order; ``first`` and ``last`` of them),
    so a benchmark can tell the rate sent and the pauses."""

    __slots__ = ("_since", "arrivals", "first", "last", "max", "now", "seconds")

    def __init__(self) -> None:
        self.now = 0
        self.max = 0
        self.seconds = 0.0
        self.first = self.last = 0.0
        self.arrivals = array("d")
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
        self.arrivals.append(self.last)
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

    __slots__ = ("in_flight", "jump", "latency", "workers")

    def __init__(self, latency: Delay, workers: Workers) -> None:
        self.latency = latency
        self.jump = latency if isinstance(latency, LatencyJump) else None
        self.workers = workers
        self.in_flight = InFlight()

    @classmethod
    def of(cls, config: EmulatorConfig, started: float) -> Network:
        """The network ``config`` describes; a latency jump is timed from ``started`` on its clock."""
        p99 = config.latency_p99_ms / 1000 if config.latency_p99_ms is not None else None
        latency = Latency(config.latency_ms / 1000, p99, config.seed)
        workers = Workers(config.capacity, config.service_ms / 1000)
        if config.latency_jump is None:
            return cls(latency, workers)
        after, median, jump_p99 = config.latency_jump
        later = Latency(median / 1000, None if jump_p99 is None else jump_p99 / 1000, config.seed, "jump")
        return cls(LatencyJump(latency, later, started + after, config.clock), workers)

    def stats(self) -> dict[str, dict[str, float]]:
        """``in_flight`` (and ``latency_jump`` when there is one) for ``GET /_emulator/stats``."""
        jump = {} if self.jump is None else {"latency_jump": self.jump.stats()}
        return {"in_flight": self.in_flight.snapshot(), **jump}

    def arrivals(self) -> list[float]:
        """Every request's unix arrival time, in order (``GET /_emulator/arrivals``): as it entered
        the server, before its network delay, i.e. its send."""
        return self.in_flight.arrivals.tolist()

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

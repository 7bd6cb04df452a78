"""How many requests may be in flight: fixed, or sized from the pace and the latency observed.

The :class:`Concurrency` meter has aiometer's shape: :meth:`~Concurrency.acquire` a slot before a
request, :meth:`~Concurrency.started` / :meth:`~Concurrency.finished` around the request itself,
:meth:`~Concurrency.release` after.  With ``fixed=N`` it is a semaphore of N.  In auto mode:

* **Little's law** sizes it: to send ``rate`` requests per second when each takes ``latency``
  seconds, ``rate * latency`` must be in flight; the limit is that times 1.5 (latency varies) plus
  two slots waiting at the pacer, so the pacer always has a sender ready.  A server 200 ms away
  needs 18 in flight for 90/s, which a fixed 8 caps at 40/s.
* **The gradient** keeps it from pushing a struggling server harder (the idea of Netflix's
  concurrency-limits and Envoy's adaptive concurrency, measured on throughput): while the pace is
  not reached, each batch of answers gives the mean in flight and, by Little's law, the
  throughput.  While the limit binds it doubles (TCP's slow start); once more in flight (over
  ``TOLERANCE`` times the concurrency of the best throughput seen) brings no more throughput and
  only raises latency beyond its noise, twice in a row, requests only queue at the server: the
  limit goes back to that tolerance and from then on grows by one.  Latency is compared as a
  geometric mean with its standard error, so a long-tailed network (150 ms median, 1.5 s p99) is
  not mistaken for a queue.

Traps: only answers that say something about the server's capacity count.  A 429 is the pacer's
business and 5xx or timeouts are the outage breaker's: the caller passes ``None`` for them.  And
the gradient only applies below the pace: at the pace throughput cannot rise whatever the
concurrency, and it must not starve the pacer of senders.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

log = logging.getLogger("batch_override")

#: More in flight than this multiple of the best throughput's concurrency must bring more throughput.
TOLERANCE = 1.2
#: A batch of answers is at least this many (fewer make the throughput too noisy to compare).
BATCH = 50
#: Batches in a row without more throughput before the limit is cut.
STALLS = 2


class Batch(NamedTuple):
    """A batch of answers: the mean in flight; the mean latency; the typical latency (geometric
    mean: the median of a long tail, estimated far more steadily than its mean) and the standard
    error of its log."""

    in_flight: float
    latency: float
    typical: float
    spread: float

    @property
    def throughput(self) -> float:
        return self.in_flight / self.latency  # Little's law

    @property
    def capacity(self) -> float:
        """Throughput as comparable from batch to batch (in flight / typical latency)."""
        return self.in_flight / self.typical


class AutoLimit:
    """The auto policy: Little's law for what the pace needs, the gradient for what the server
    takes.  Fed one answer at a time with the in-flight integral; no clock, no slots."""

    __slots__ = (
        "_batch",
        "_best",
        "_grad",
        "_settling",
        "_slow_start",
        "_stalls",
        "_start",
        "latency",
        "limit",
        "maximum",
        "target",
    )

    def __init__(self, initial: int, maximum: int) -> None:
        self.maximum = maximum
        self.limit = max(1, min(initial, maximum))
        self.target: float | None = None  # the pace, requests per second
        self.latency: float | None = None  # mean latency (a slow EWMA), for Little's law
        self._grad = float(self.limit)  # the gradient's limit: grows while it is used
        self._batch = (0, 0.0, 0.0, 0.0)  # answers; sums of latency, its log, its log squared
        self._start = (0.0, 0.0)  # the batch's start: time, in-flight integral
        self._stalls = 0
        self._slow_start = self._settling = True
        self._best = Batch(0.0, math.inf, math.inf, 0.0)  # the batch of best throughput below the pace

    def answered(self, latency: float, now: float, area: float, peak: int) -> bool:
        """One answer's ``latency``; ``area`` is the in-flight integral at ``now`` and ``peak`` the
        most in flight since the last batch.  True when a batch closed (the limit may change)."""
        # A slow average: a long tail (a 1.5 s p99) would make a fast one jump about.
        self.latency = latency if self.latency is None else 0.98 * self.latency + 0.02 * latency
        count, total, logs, squares = self._batch
        ln = math.log(max(latency, 1e-6))
        count, total, logs, squares = count + 1, total + latency, logs + ln, squares + ln * ln
        if count < self._batch_size():
            self._batch = (count, total, logs, squares)
            return False
        started, started_area = self._start
        if now > started:
            mean_log = logs / count
            spread = math.sqrt(max(0.0, squares / count - mean_log * mean_log) / count)
            in_flight = (area - started_area) / (now - started)
            self._update(Batch(in_flight, total / count, math.exp(mean_log), spread), peak)
        self._batch, self._start = (0, 0.0, 0.0, 0.0), (now, area)
        return True

    def _batch_size(self) -> int:
        if self._settling:
            return max(8, self.limit)  # the requests sent before the change, about
        # In slow start a doubling shows even through a long tail's noise: judge it sooner.
        return max(16 if self._slow_start else BATCH, 2 * self.limit)

    def _update(self, batch: Batch, peak: int) -> None:
        """One batch of answers, ``peak`` in flight at most."""
        target, best = self.target, self._best
        stalled = False
        at_pace = target is not None and batch.throughput >= 0.95 * target
        if at_pace or self._settling:
            # At the pace more in flight could not raise throughput; and the batch after a change
            # of the limit (or the first) mixes the old and new levels (its answers' latency lags
            # the in-flight count): neither says anything of the server.
            pass
        elif batch.capacity >= 1.1 * best.capacity or batch.capacity < 0.6 * best.capacity:
            self._best = batch  # more throughput, or the server changed
        elif batch.in_flight > TOLERANCE * best.in_flight:
            # More in flight, no more throughput, and latency up by more than its noise: requests
            # only queue at the server.
            noise = 2 * math.hypot(batch.spread, best.spread)
            stalled = math.log(batch.typical / best.typical) > max(math.log(TOLERANCE - 0.1), noise)
        self._stalls = self._stalls + 1 if stalled else 0
        if self._stalls >= STALLS:
            self._grad, self._stalls, self._slow_start = max(1.0, TOLERANCE * best.in_flight), 0, False
        elif not stalled and not self._settling and peak >= self.limit:
            # The limit binds: double until the first cut (TCP's slow start), grow by the square
            # root while the server keeps up with the pace, else by one.
            step = self._grad if self._slow_start else math.sqrt(self._grad) if at_pace else 1.0
            self._grad = min(float(self.maximum), self._grad + step)
        needed: float = self.maximum
        if target is not None and self.latency is not None:
            needed = target * self.latency * 1.5 + 2
        before, self.limit = self.limit, max(1, min(self.maximum, math.ceil(min(needed, self._grad))))
        self._settling = self.limit != before


class Concurrency:
    """Slots for requests in flight: ``fixed`` N, or auto (:class:`AutoLimit`) up to ``maximum``."""

    __slots__ = (
        "_area",
        "_auto",
        "_clock",
        "_held",
        "_peak_batch",
        "_since",
        "_started_at",
        "_waiters",
        "fixed",
        "in_flight",
        "maximum",
        "peak",
    )

    def __init__(
        self,
        fixed: int | None,
        maximum: int,
        *,
        initial: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fixed = fixed
        self.maximum = fixed if fixed is not None else maximum
        self._auto = AutoLimit(initial, maximum) if fixed is None else None
        self._clock = clock
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.in_flight = self.peak = self._peak_batch = 0
        self._started_at = self._since = clock()
        self._area = 0.0  # integral of in_flight over time, for the mean

    @property
    def limit(self) -> int:
        return self._auto.limit if self._auto is not None else self.maximum

    # -- what the senders call -----------------------------------------------------------------
    def try_acquire(self) -> bool:
        """Take a slot if one is free (the caller then waits for the pacer, then sends)."""
        if self._held < self.limit:
            self._held += 1
            return True
        return False

    async def acquire(self) -> None:
        """Wait for a slot (the caller then waits for the pacer, then sends)."""
        while not self.try_acquire():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake(1)  # woken, then cancelled: pass the free slot on, or it is lost
                raise

    def release(self) -> None:
        self._held -= 1
        self._wake(1)

    def _wake(self, n: int) -> None:
        while n > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n -= 1

    def started(self) -> None:
        self._tick()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self._peak_batch = max(self._peak_batch, self.in_flight)

    def finished(self, latency: float | None) -> None:
        """A request ended; ``latency`` is None when its answer says nothing of capacity."""
        self._tick()
        self.in_flight -= 1
        auto = self._auto
        if latency is None or auto is None:
            return
        before = auto.limit
        if auto.answered(latency, self._since, self._area, self._peak_batch):
            self._peak_batch = self.in_flight
        if auto.limit > before:
            self._wake(auto.limit - before)
        if auto.limit != before:
            log.debug(
                "concurrency: limit %d -> %d (latency %.0f ms, pace %s/s)",
                before,
                auto.limit,
                (auto.latency or 0.0) * 1000,
                "?" if auto.target is None else f"{auto.target:.3g}",
            )

    def pace(self, rate: float | None) -> None:
        """The pacer's current rate in requests per second (None: not known yet)."""
        if self._auto is not None:
            self._auto.target = rate

    # -- what the people see -------------------------------------------------------------------
    @property
    def mean_in_flight(self) -> float:
        self._tick()
        elapsed = self._since - self._started_at
        return self._area / elapsed if elapsed > 0 else float(self.in_flight)

    def _tick(self) -> None:
        now = self._clock()
        self._area += self.in_flight * (now - self._since)
        self._since = now

    def describe(self) -> str:
        """For the progress bar and logs, e.g. ``in flight 12/18 (auto, max 64)``."""
        mode = "fixed" if self.fixed is not None else f"auto, max {self.maximum}"
        return f"in flight {self.in_flight}/{self.limit} ({mode})"

    def report(self) -> dict[str, object]:
        """For the summary: the mode, the limit reached, mean and peak in flight."""
        return {
            "mode": "fixed" if self.fixed is not None else "auto",
            "max": self.maximum,
            "limit": self.limit,
            "mean_in_flight": round(self.mean_in_flight, 2),
            "peak_in_flight": self.peak,
        }

"""How many requests may be in flight: fixed, or sized from the pace and the latency observed.

The :class:`Concurrency` meter has aiometer's shape: :meth:`~Concurrency.acquire` a slot before a
request, :meth:`~Concurrency.started` / :meth:`~Concurrency.finished` around the request itself,
:meth:`~Concurrency.release` after.  With ``fixed=N`` it is a semaphore of N.  In auto mode:

* **Little's law** sizes it: to send ``rate`` requests per second when each takes ``latency``
  seconds, ``rate * latency`` must be in flight; the limit is that times 1.5 (latency varies) plus
  two slots waiting at the pacer, so the pacer always has a sender ready.  A server 200 ms away
  needs 18 in flight for 90/s, which a fixed 8 caps at 40/s.
* **The jump**: once the pace and the latency of a request sent alone (the preflight) are known,
  the limit goes straight to what Little's law needs (a server 200 ms away would otherwise spend
  its first seconds doubling from 8).  The sample after a jump is checked against that unloaded
  latency: when its typical latency rose beyond the noise, the server queues, and the limit drops
  to what it served without a queue (its throughput times the unloaded latency, Netflix's
  gradient ``limit * minRTT / RTT``), from where the gradient below takes over.
* **A slower network** is not a queue: a queue we cause keeps the server busy, so its latency
  rises with what we have in flight and throughput holds.  A sample whose typical latency is
  :data:`SHIFT` times the last one's *and* whose throughput is a :data:`SHIFT`-th of it was slowed
  by something else (the network, or a server that got slower for everyone): the limit starts
  afresh from Little's law at the new latency, and that sample is the new unloaded reference, so
  the sample after the new jump is checked for a queue as the first one was.
* **The gradient** keeps it from pushing a struggling server harder (the idea of Netflix's
  concurrency-limits and Envoy's adaptive concurrency, measured on throughput): while the pace is
  not reached, each sample of answers gives the mean in flight and, by Little's law, the
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
#: A sample of answers is at least this many (fewer make the throughput too noisy to compare).
SAMPLE = 50
#: Samples in a row without more throughput before the limit is cut.
STALLS = 2
#: A batch whose latencies spread wider than this (standard deviation of their logs, a factor of
#: e^1.5 = 4.5) mixes two levels: it straddles a jump in latency, or the network is bimodal.  A
#: long tail of 150 ms median and 1.5 s p99 spreads 1.0; 10 ms -> 2 s straddled 1.6-2.6.
MIXED = 1.5
#: A sample whose typical latency is this many times the last one's while its throughput fell as
#: many times: the network slowed, not the server's queue (which keeps throughput up).
SHIFT = 3.0
#: A sample also closes after this many seconds once it holds :data:`SAMPLE_MIN` answers: at a
#: few answers a second (a small limit on a slow network) 50 answers would take minutes.
SAMPLE_SECONDS = 2.0
SAMPLE_MIN = 6
#: Samples after a jump checked for a queue, until one is clearly queued or clearly not: the first
#: can still hold answers sent before the queue built up (its fastest among them).
CHECKS = 3


class Sample(NamedTuple):
    """A sample of answers: the mean in flight; the mean latency; the typical latency (geometric
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
        """Throughput as comparable from sample to sample (in flight / typical latency)."""
        return self.in_flight / self.typical


class Alone:
    """Latencies (logs) of requests answered while nothing else was in flight: the server
    unloaded.  The trap: one or three samples of a long tail say little of its median, so a queue
    is told by the *fastest* answer of a sample: in a queue every request waits, on a long-tailed
    network most are fast."""

    __slots__ = ("count", "logs", "slowest")

    def __init__(self) -> None:
        self.count, self.logs, self.slowest = 0, 0.0, -math.inf

    def add(self, ln: float) -> None:
        self.count, self.logs, self.slowest = self.count + 1, self.logs + ln, max(self.slowest, ln)

    @classmethod
    def level(cls, sample: Sample, slowest: float) -> Alone:
        """A sample taken as the unloaded level (its typical latency; its slowest answer, a log)."""
        alone = cls()
        alone.count, alone.logs, alone.slowest = 1, math.log(sample.typical), slowest
        return alone

    @property
    def typical(self) -> float:
        """The unloaded typical latency (the geometric mean of the latencies added)."""
        return math.exp(self.logs / self.count)

    def queued(self, sample: Sample, fastest: float) -> float | None:
        """How many times the sample's typical latency exceeds the unloaded one, when even its
        fastest answer (a log) took twice as long as every unloaded one; else None (a milder
        queue is the gradient's to find)."""
        if fastest <= self.slowest + math.log(2):
            return None
        return sample.typical / self.typical

    def unqueued(self, sample: Sample) -> bool:
        """Whether the sample's typical latency is within twice the unloaded one: no queue."""
        return sample.typical <= 2 * self.typical


class Gathering:
    """The answers of the sample being gathered: sums of latency, of its log and its square, the
    fastest and slowest (logs), where it started (time, in-flight integral), the latest latencies."""

    __slots__ = ("count", "fastest", "logs", "recent", "slowest", "squares", "start", "total")

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=SAMPLE_MIN)
        self.restart(0.0, 0.0)

    def restart(self, now: float, area: float) -> None:
        self.count, self.total, self.logs, self.squares, self.fastest = 0, 0.0, 0.0, 0.0, math.inf
        self.slowest = -math.inf
        self.start = (now, area)

    def add(self, latency: float) -> float:
        """Count one answer; its latency's log."""
        ln = math.log(max(latency, 1e-6))
        self.count, self.total, self.logs, self.squares = (
            self.count + 1, self.total + latency, self.logs + ln, self.squares + ln * ln,
        )  # fmt: skip
        self.fastest, self.slowest = min(self.fastest, ln), max(self.slowest, ln)
        self.recent.append(latency)
        return ln

    def full(self, size: int, now: float, *, timed: bool) -> bool:
        """``size`` answers, or (``timed``) :data:`SAMPLE_SECONDS` with at least :data:`SAMPLE_MIN`.
        The trap: the sample after a change of the limit must hold the answers it waits for (a
        queue shows only once the requests sent before it are answered), so it is never timed."""
        if self.count >= size:
            return True
        return timed and self.count >= SAMPLE_MIN and now - self.start[0] >= SAMPLE_SECONDS

    def close(self, now: float, area: float) -> tuple[Sample, bool] | None:
        """The sample, and whether it mixes two levels of latency (see :data:`MIXED`); None when
        no time went by."""
        started, started_area = self.start
        if now <= started:
            return None
        count, mean_log = self.count, self.logs / self.count
        spread = math.sqrt(max(0.0, self.squares / count - mean_log * mean_log) / count)
        in_flight = (area - started_area) / (now - started)
        sample = Sample(in_flight, self.total / count, math.exp(mean_log), spread)
        return sample, spread * math.sqrt(count) > MIXED


class AutoLimit:
    """The auto policy: Little's law for what the pace needs, the gradient for what the server
    takes.  Fed one answer at a time with the in-flight integral; no clock, no slots."""

    __slots__ = (
        "_alone", "_best", "_checks", "_drain", "_grad", "_last", "_sample", "_seen", "_settling",
        "_slow_start", "_stalls", "latency", "limit", "maximum", "target",
    )  # fmt: skip

    def __init__(self, initial: int, maximum: int) -> None:
        self.maximum = maximum
        self.limit = max(1, min(initial, maximum))
        self.target: float | None = None  # the pace, requests per second
        self.latency: float | None = None  # mean latency (a slow EWMA), for Little's law
        self._grad = float(self.limit)  # the gradient's limit: grows while it is used
        self._sample = Gathering()
        self._stalls = 0
        self._slow_start = self._settling = True
        self._best = Sample(0.0, math.inf, math.inf, 0.0)  # the sample of best throughput below the pace
        self._alone = Alone()
        self._checks = 0  # samples after a jump left to compare with the unloaded latency
        self._seen = 0  # answers averaged into :attr:`latency`
        self._drain = 0  # after a cut: the old level, whose answers the settling sample waits out
        self._last: Sample | None = None  # the last sample closed that held one level of latency

    def retarget(self, target: float | None) -> None:
        """The pace changed (requests per second; None: not known yet)."""
        self.target = target
        self._jump()

    def _jump(self) -> bool:
        """In slow start, with a pace and an unloaded latency known: straight to Little's law."""
        if not self._slow_start or self.target is None or self.latency is None or not self._alone.count:
            return False
        needed = math.ceil(min(self.maximum, self.target * self.latency * 1.5 + 2))
        if needed <= self.limit:
            return False
        self._grad = max(self._grad, float(needed))
        self.limit, self._settling, self._checks = needed, True, CHECKS
        return True

    def answered(self, latency: float, now: float, area: float, peak: int) -> bool:
        """One answer's ``latency``; ``area`` is the in-flight integral at ``now`` and ``peak`` the
        most in flight since the last sample.  True when a sample closed (the limit may change)."""
        # A slow average: a long tail (a 1.5 s p99) would make a fast one jump about.  Until 50
        # answers it is their plain mean: a few fast first answers must not hold the limit low.
        self._seen += 1
        mean = self.latency if self.latency is not None else latency
        self.latency = mean + (latency - mean) * max(0.02, 1 / self._seen)
        gathering = self._sample
        ln = gathering.add(latency)
        if peak <= 1 and self._slow_start:
            self._alone.add(ln)
            self._jump()
        if not gathering.full(self._sample_size(), now, timed=not (self._settling or self._checks)):
            return False
        closed = gathering.close(now, area)
        if closed is not None:
            sample, mixed = closed
            if mixed:
                # Two levels of latency in one sample (a jump): it is nobody's reference; the next
                # sample, at one level, is judged against the last one before it.
                self._best, self._stalls = Sample(0.0, math.inf, math.inf, 0.0), 0
            elif _shifted(sample, self._last):
                self._relearn(sample, gathering.slowest)
            elif not self._queued(sample, gathering.fastest):
                self._update(sample, peak)
            if not mixed:
                self._last = sample
        gathering.restart(now, area)
        return True

    def _relearn(self, sample: Sample, slowest: float) -> None:
        """The latency changed level without our load (see :func:`_shifted`): what was learnt
        of the old level is nobody's reference.  ``sample`` is the new unloaded level (``slowest``:
        its slowest answer, a log) and the gradient's new best; Little's law sizes the limit from
        the latest answers (slow start, the jump), and the sample after it is checked for a queue
        against that level.  The trap: forgetting the level instead would leave nothing to tell a
        queue by, and a limit at the maximum would never be cut again."""
        self._best = sample
        self._stalls, self._slow_start, self._drain = 0, True, 0
        self._alone = Alone.level(sample, slowest)
        recent = self._sample.recent
        self.latency, self._seen = sorted(recent)[len(recent) // 2], len(recent)  # a plain mean for a while
        self._jump()

    def _queued(self, sample: Sample, fastest: float) -> bool:
        """After a jump: True when the server queues (the limit then drops to what it served
        unqueued, times the tolerance, and the gradient goes on from there)."""
        if not self._checks or self._settling:
            return False  # the sample right after the jump mixes the levels (a queue building up)
        if self.target is not None and sample.throughput >= 0.95 * self.target:
            self._checks = 0
            return False
        over = self._alone.queued(sample, fastest)
        if over is None:
            # Not clearly queued: done if clearly not, else the next sample is checked too.
            self._checks = 0 if self._alone.unqueued(sample) else self._checks - 1
            return False
        self._checks = 0
        unqueued = sample.in_flight / over
        self._best = Sample(unqueued, sample.latency / over, sample.typical / over, sample.spread)
        self._grad, self._stalls, self._slow_start = max(1.0, TOLERANCE * unqueued), 0, False
        self._drain, self._settling = self.limit, True
        self.limit = max(1, min(self.maximum, math.ceil(self._grad)))
        return True

    def _sample_size(self) -> int:
        if self._settling or self._checks:
            # The requests sent before the change, about; after a jump, as few answers as show
            # a queue, as a queue costs the server while it lasts.
            return max(8 if self._settling else 16, self.limit, self._drain)
        # In slow start a doubling shows even through a long tail's noise: judge it sooner.
        return max(16 if self._slow_start else SAMPLE, 2 * self.limit)

    def _update(self, sample: Sample, peak: int) -> None:
        """One sample of answers, ``peak`` in flight at most."""
        target, best = self.target, self._best
        stalled = False
        at_pace = target is not None and sample.throughput >= 0.95 * target
        if at_pace or self._settling:
            # At the pace more in flight could not raise throughput; and the sample after a change
            # of the limit (or the first) mixes the old and new levels (its answers' latency lags
            # the in-flight count): neither says anything of the server.
            pass
        elif sample.capacity >= 1.1 * best.capacity or sample.capacity < 0.6 * best.capacity:
            self._best = sample  # more throughput, or the server changed
        elif sample.in_flight > TOLERANCE * best.in_flight:
            # More in flight, no more throughput, and latency up by more than its noise: requests
            # only queue at the server.
            noise = 2 * math.hypot(sample.spread, best.spread)
            stalled = math.log(sample.typical / best.typical) > max(math.log(TOLERANCE - 0.1), noise)
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
            if self._slow_start and self._alone.count:
                # Until a cut, Little's law (the jump), and never down: the first answers of a
                # long tail are its fast ones, so the first samples' latency is low.
                self._grad = max(self._grad, needed)
                needed = max(needed, self.limit)
        before, self.limit = self.limit, max(1, min(self.maximum, math.ceil(min(needed, self._grad))))
        self._settling, self._drain = self.limit != before, 0


def _shifted(sample: Sample, last: Sample | None) -> bool:
    """True when ``sample``'s typical latency is :data:`SHIFT` times the last one's and its
    throughput a :data:`SHIFT`-th: slowed by something other than our load.  A queue we cause
    keeps the server busy (latency up with in flight, throughput held), and a slower pace lowers
    throughput without raising latency.  The trap: only upwards.  Latency falling is a queue
    draining after a cut or a faster network, and needs nothing done (Little's law's need falls
    with the mean latency, and spare slots cost nothing); and in flight alone cannot tell it, as
    a slower network fills the slots a pace left free (1 in flight at 10 ms, 3 at 2 s)."""
    if last is None:
        return False
    return sample.typical >= SHIFT * last.typical and sample.throughput * SHIFT <= last.throughput


class Concurrency:
    """Slots for requests in flight: ``fixed`` N, or auto (:class:`AutoLimit`) up to ``maximum``."""

    __slots__ = (
        "_area",
        "_auto",
        "_clock",
        "_held",
        "_peak_sample",
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
        self.in_flight = self.peak = self._peak_sample = 0
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
        self._peak_sample = max(self._peak_sample, self.in_flight)

    def finished(self, latency: float | None) -> None:
        """A request ended; ``latency`` is None when its answer says nothing of capacity."""
        self._tick()
        self.in_flight -= 1
        auto = self._auto
        if latency is None or auto is None:
            return
        before = auto.limit
        if auto.answered(latency, self._since, self._area, self._peak_sample):
            self._peak_sample = self.in_flight
        self._changed(before)

    def pace(self, rate: float | None) -> None:
        """The pacer's current rate in requests per second (None: not known yet)."""
        auto = self._auto
        if auto is not None and auto.target != rate:
            before = auto.limit
            auto.retarget(rate)
            self._changed(before)

    def _changed(self, before: int) -> None:
        auto = self._auto
        assert auto is not None
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

"""A simulated sender pool and server on one virtual clock, to ask the concurrency meter what it
would do: no sleeping, no network (the tenacity way: build the state, ask the policy)."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from batch_override.pacing.concurrency import Concurrency


@dataclass
class Outcome:
    sent: int
    duration: float
    mean_in_flight: float
    limit: int
    sends: list[float] = field(default_factory=list)  # when each request went

    def rate(self, start: float, end: float) -> float:
        """Requests sent per second between ``start`` and ``end``."""
        return sum(start <= t < end for t in self.sends) / (end - start)

    @property
    def throughput(self) -> float:
        return self.sent / self.duration


def network(median: float, p99: float | None = None, seed: int = 1) -> Callable[[float], float]:
    """Latency independent of load: fixed, or lognormal with the given median and p99."""
    rng = random.Random(seed)
    sigma = 0.0 if p99 is None else math.log(p99 / median) / 2.326
    return lambda _now: median * math.exp(sigma * rng.gauss(0, 1))


def simulate(
    rate: float,
    *,
    latency: Callable[[float], float] | None = None,
    capacity: int | None = None,
    service: float = 0.05,
    seconds: float = 30.0,
    fixed: int | None = None,
    maximum: int = 64,
    probe: bool = False,
    capacity_from: float = 0.0,
    capacity_until: float = math.inf,
    clock: float = 0.0,
) -> Outcome:
    """Send at ``rate`` per second for ``seconds`` through the meter.  The server answers after
    ``latency`` (network), or serves ``capacity`` requests at once for ``service`` s each, FIFO.
    ``probe``: the first request goes alone (the job's preflight), the others after its answer.
    ``capacity_from`` / ``capacity_until``: the ``capacity`` server answers only in that span (of
    the run's seconds), ``latency`` before and after it (the server changed under the run).
    ``clock``: the virtual clock's reading at the start (a monotonic clock's is anything: a policy
    must not take it for the time since the start)."""
    now = [clock]
    seconds += clock
    meter = Concurrency(fixed, maximum, clock=lambda: now[0])
    meter.pace(rate)
    done: list[tuple[float, int]] = []  # (answer time, id)
    busy: list[float] = []  # capacity server: when each busy worker frees
    started: dict[int, float] = {}
    next_tick, sent, ident = 0.0, 0, 0
    sends: list[float] = []
    while now[0] < seconds:
        if done and done[0][0] <= min(next_tick, seconds):
            now[0], rid = heapq.heappop(done)
            meter.finished(now[0] - started.pop(rid))
            meter.release()
            continue
        now[0] = max(now[0], next_tick)
        if not meter.try_acquire():
            next_tick = done[0][0] if done else math.inf  # a slot frees with the next answer
            continue
        ident += 1
        sent += 1
        sends.append(now[0])
        started[ident] = now[0]
        meter.started()
        if capacity is None or not capacity_from <= now[0] - clock < capacity_until:
            assert latency is not None
            heapq.heappush(done, (now[0] + latency(now[0]), ident))
        else:
            busy = [t for t in busy if t > now[0]]
            free_at = now[0] if len(busy) < capacity else sorted(busy)[len(busy) - capacity]
            busy.append(free_at + service)
            heapq.heappush(done, (free_at + service, ident))
        next_tick = now[0] + 1 / rate if not probe or sent > 1 else done[0][0]
    return Outcome(sent, seconds - clock, meter.mean_in_flight, meter.limit, [t - clock for t in sends])


def jump(at: float, before: float, after: float, p99: float = 2.0, seed: int = 1) -> Callable[[float], float]:
    """Latency independent of load that jumps from ``before`` to ``after`` at ``at`` (lognormal
    noise of that p99 / median ratio around each level)."""
    rng = random.Random(seed)
    sigma = math.log(p99) / 2.326
    return lambda now: (before if now < at else after) * math.exp(sigma * rng.gauss(0, 1))

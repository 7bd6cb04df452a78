"""A simulated client and Laravel throttle on one virtual clock, to ask the pacer what it would do.

Tenacity-style: :func:`simulate` builds the state (a :class:`Pacer` on an injected clock, a fixed
window server, always-ready senders) and returns every send and answer; no sleeping, no network.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from batch_override.config import Rate
from batch_override.pacing.backoff import Backoff
from batch_override.pacing.pacer import Pacer, Ticket


@dataclass
class Throttle:
    """Laravel's fixed window: ``floor=True`` expires it at ``floor(first hit + decay)`` as the cache
    store does; ``headers=False`` is a proxy that strips the X-RateLimit headers."""

    limit: int
    decay: float
    floor: bool = False
    headers: bool = True
    start: float = -math.inf
    end: float = -math.inf
    count: int = 0
    windows: list[list[float]] = field(default_factory=list)  # accepted arrival times per window
    throttled: int = 0

    def hit(self, now: float, epoch: float) -> tuple[int, dict[str, str]]:
        if now >= self.end:
            self.start, self.count = now, 0
            self.end = math.floor(epoch + now + self.decay) - epoch if self.floor else now + self.decay
            self.windows.append([])
        if self.count >= self.limit:
            self.throttled += 1
            wait = max(1, math.ceil(self.end - now))
            rate = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": "0"}
            return 429, ({**rate, "Retry-After": str(wait)} if self.headers else {})
        self.count += 1
        self.windows[-1].append(now)
        if not self.headers:
            return 201, {}
        return 201, {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.limit - self.count),
        }


@dataclass
class Run:
    pacer: Pacer
    sends: list[float]
    statuses: list[int]
    server: Throttle | None

    @property
    def share_429(self) -> float:
        return self.statuses.count(429) / max(1, len(self.statuses))


Answer = Callable[[float, int], tuple[int, Mapping[str, str]]]


def simulate(
    rate: Rate | None,
    server: Throttle | Answer | None,
    *,
    sends: int,
    latency: float | Callable[[], float] = 0.05,
    headroom: float = 0.1,
    epoch: float = 1_700_000_000.3,
    backoff_base: float = 0.5,
    until: float = math.inf,
) -> Run:
    """Send ``sends`` requests as fast as the pacer allows (or until virtual time ``until``).
    ``latency`` is each round trip (a function: drawn per request), half of it before the server
    counts the request."""
    trip = latency if callable(latency) else lambda: latency
    now = [0.0]
    pacer = Pacer(rate, headroom=headroom, clock=lambda: now[0], backoff=Backoff(backoff_base))
    # Arrivals at the server and answers at the client, in time order (a long tail reorders both).
    events: list[tuple[float, int, Ticket, float, tuple[int, Mapping[str, str]] | None]] = []
    sent: list[float] = []
    statuses: list[int] = []
    order = 0
    asleep = (-math.inf, 0)  # as Pacer.acquire sleeps: until this time, unless the pace changes

    def happen(at: float, *, answers: bool = True) -> None:
        nonlocal order
        while events and events[0][0] <= at:
            when, _, ticket, answered_at, answer = heapq.heappop(events)
            if answer is None:  # the request reaches the server
                if isinstance(server, Throttle):
                    answer = server.hit(when, epoch)
                else:
                    answer = (201, {}) if server is None else server(when, ticket.seq)
                order += 1
                heapq.heappush(events, (answered_at, order, ticket, answered_at, answer))
            elif answers:
                statuses.append(answer[0])
                pacer.observe(ticket, *answer)

    while len(sent) < sends and now[0] < until:
        happen(now[0])
        if now[0] < asleep[0] and pacer.repaces == asleep[1]:
            now[0] = min(asleep[0], events[0][0] if events else math.inf)
            continue
        wait = pacer.wait(now[0])
        if wait is None or wait > 0:
            step = math.inf if wait is None else now[0] + wait
            asleep = (step, pacer.repaces) if wait is not None else (-math.inf, 0)
            now[0] = min(step, events[0][0] if events else math.inf)
            assert math.isfinite(now[0]), "the pacer waits for an answer that cannot come"
            continue
        ticket = pacer.grant(now[0])
        sent.append(now[0])
        delay = trip()
        order += 1
        heapq.heappush(events, (now[0] + delay / 2, order, ticket, now[0] + delay, None))
    happen(math.inf, answers=False)  # the requests still on their way are counted all the same
    return Run(pacer, sent, statuses, server if isinstance(server, Throttle) else None)


def max_in_tenth(times: list[float], window: float) -> int:
    """The most sends in any tenth of a window (sliding)."""
    tenth, best, j = window / 10, 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - tenth:
            j += 1
        best = max(best, i - j + 1)
    return best

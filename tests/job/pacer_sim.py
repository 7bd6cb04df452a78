"""Simulated clients and a Laravel throttle on one virtual clock, to ask the pacer what it would do.

Tenacity-style: :func:`simulate` (one job) and :func:`simulate_jobs` (several on one key) build the
state and return every send and answer; no sleeping, no network.  The jobs are the real
:class:`Pacer` driven through :meth:`Pacer.acquire` on an event loop whose clock is virtual
(:class:`VirtualLoop`: a select with a timeout moves the clock instead of waiting), so the
simulation cannot drift from the pacer's own sleep-and-wake rule.  Each job sends as fast as the
pacer allows (always-ready senders, no concurrency limit).  The server may share the key with
other traffic (:func:`steady`, :func:`bursts`), counted at its own times.
"""

from __future__ import annotations

import asyncio
import math
import selectors
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from batch_override.config import Rate
from batch_override.pacing.backoff import Backoff
from batch_override.pacing.pacer import Pacer, Ticket


class _VirtualSelector(selectors.BaseSelector):
    """Never waits: a select with a timeout moves the virtual clock on by that timeout."""

    def __init__(self) -> None:
        self.now = 0.0
        self._keys: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = selectors.SelectorKey(
            fileobj, fileobj if isinstance(fileobj, int) else fileobj.fileno(), events, data
        )
        self._keys[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._keys.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("the simulation waits for something that cannot happen")
        # Time passes, if by a hair, in every turn of the loop, as on a real clock: a wait below
        # the clock's resolution (0.15 + 3e-17 == 0.15) would otherwise spin forever.
        self.now = max(self.now + max(0.0, timeout), math.nextafter(self.now, math.inf))
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._keys


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop on a virtual clock starting at 0: ``asyncio.sleep(60)`` takes no time."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now

    def stall(self, seconds: float) -> None:
        """The loop was busy ``seconds`` (a callback that blocked it): the clock jumps on."""
        self._virtual.now += seconds


def steady(rate: float, start: float = 0.0) -> Iterator[float]:
    """Other traffic: ``rate`` requests a second, evenly spaced, from ``start``."""
    n = 0
    while True:
        yield start + n / rate
        n += 1


def bursts(size: int, every: float, start: float = 0.0) -> Iterator[float]:
    """Other traffic: ``size`` requests at once every ``every`` seconds, from ``start``."""
    n = 0
    while True:
        for _ in range(size):
            yield start + n * every
        n += 1


@dataclass
class Throttle:
    """Laravel's fixed window: ``floor=True`` expires it at ``floor(first hit + decay)`` as the cache
    store does; ``headers=False`` is a proxy that strips the X-RateLimit headers; ``other``: the
    arrival times (in order) of other traffic on the key, which does not retry a 429; ``skew``: not
    None, a 429's ``Retry-After`` is an HTTP date on a server clock ``skew`` seconds off the
    simulation's, with a ``Date`` header on that clock (a CDN's form)."""

    limit: int
    decay: float
    floor: bool = False
    headers: bool = True
    other: Iterable[float] | None = None
    skew: float | None = None
    start: float = -math.inf
    end: float = -math.inf
    count: int = 0
    windows: list[list[float]] = field(default_factory=list)  # the jobs' accepted arrivals per window
    opened: list[float] = field(default_factory=list)  # when each window opened
    others: list[int] = field(default_factory=list)  # the other traffic's accepted, per window
    throttled: int = 0  # the jobs' 429s
    other_throttled: int = 0
    other_accepted: int = 0
    _other: Iterator[float] | None = field(default=None, repr=False)
    _due: float = field(default=math.inf, repr=False)

    def __post_init__(self) -> None:
        if self.other is not None:
            self._other = iter(self.other)
            self._due = next(self._other)

    def _count(self, now: float, epoch: float) -> bool:
        if now >= self.end:
            self.start, self.count = now, 0
            self.end = math.floor(epoch + now + self.decay) - epoch if self.floor else now + self.decay
            self.windows.append([])
            self.opened.append(now)
            self.others.append(0)
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def hit(self, now: float, epoch: float) -> tuple[int, dict[str, str]]:
        while self._other is not None and self._due <= now:
            if self._count(self._due, epoch):
                self.others[-1] += 1
                self.other_accepted += 1
            else:
                self.other_throttled += 1
            self._due = next(self._other)
        if not self._count(now, epoch):
            self.throttled += 1
            wait = max(1, math.ceil(self.end - now))
            rate = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": "0"}
            if self.skew is not None:
                clock = epoch + self.skew
                retry = {"Date": formatdate(clock + now, usegmt=True)}
                retry["Retry-After"] = formatdate(clock + self.end, usegmt=True)
            else:
                retry = {"Retry-After": str(wait)}
            return 429, ({**rate, **retry} if self.headers else {})
        self.windows[-1].append(now)
        if not self.headers:
            return 201, {}
        return 201, {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.limit - self.count),
        }

    @property
    def other_share_429(self) -> float:
        return self.other_throttled / max(1, self.other_throttled + self.other_accepted)


@dataclass
class Run:
    pacer: Pacer
    sends: list[float]
    statuses: list[int]
    server: Throttle | None

    @property
    def share_429(self) -> float:
        return self.statuses.count(429) / max(1, len(self.statuses))

    def pauses(self) -> list[float]:
        """The gaps between consecutive sends."""
        return [b - a for a, b in zip(self.sends, self.sends[1:], strict=False)]


Answer = Callable[[float, int], tuple[int, Mapping[str, str]]]


@dataclass(frozen=True)
class Job:
    """One batch-override run in a simulation: its rate (None: auto), rows, start and headroom."""

    rate: Rate | None = None
    sends: int = 100
    start: float = 0.0
    headroom: float = 0.1
    backoff_base: float = 0.5


def simulate_jobs(
    jobs: list[Job],
    server: Throttle | Answer | None,
    *,
    latency: float | Callable[[], float] = 0.05,
    epoch: float = 1_700_000_000.3,
    until: float = math.inf,
) -> list[Run]:
    """Run ``jobs`` on one key until each has made its sends (or virtual time ``until``).
    ``latency`` is each round trip (a function: drawn per request), half of it before the server
    counts the request.  Requests still on their way at the end are counted all the same."""
    trip = latency if callable(latency) else lambda: latency
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(_run(jobs, server, trip, epoch, until))
    finally:
        loop.close()


async def _run(
    jobs: list[Job], server: Throttle | Answer | None, trip: Callable[[], float], epoch: float, until: float
) -> list[Run]:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    if math.isfinite(until):
        loop.call_at(until, stopped.set)
    flying: set[asyncio.Task[None]] = set()

    async def request(pacer: Pacer, ticket: Ticket, delay: float, statuses: list[int]) -> None:
        await asyncio.sleep(delay / 2)
        now = loop.time()
        if isinstance(server, Throttle):
            answer: tuple[int, Mapping[str, str]] = server.hit(now, epoch)
        else:
            answer = (201, {}) if server is None else server(now, ticket.seq)
        await asyncio.sleep(delay / 2)
        if not stopped.is_set():
            statuses.append(answer[0])
            pacer.observe(ticket, *answer)

    async def job(spec: Job, run: Run) -> None:
        await asyncio.sleep(spec.start)
        while len(run.sends) < spec.sends and not stopped.is_set():
            ticket = await run.pacer.acquire()
            if ticket is None:
                break
            run.sends.append(ticket.sent_at)
            task = asyncio.ensure_future(request(run.pacer, ticket, trip(), run.statuses))
            flying.add(task)
            task.add_done_callback(flying.discard)

    runs = [
        Run(
            Pacer(
                spec.rate,
                headroom=spec.headroom,
                clock=loop.time,
                stopped=stopped,
                backoff=Backoff(spec.backoff_base),
            ),
            [],
            [],
            server if isinstance(server, Throttle) else None,
        )
        for spec in jobs
    ]
    await asyncio.gather(*(job(spec, run) for spec, run in zip(jobs, runs, strict=True)))
    stopped.set()  # answers from now on are not the pacer's business, but still counted
    while flying:
        await asyncio.gather(*flying)
    return runs


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
    """One job: send ``sends`` requests as fast as the pacer allows (or until virtual time ``until``)."""
    job = Job(rate, sends, headroom=headroom, backoff_base=backoff_base)
    (run,) = simulate_jobs([job], server, latency=latency, epoch=epoch, until=until)
    return run


def max_in_tenth(times: list[float], window: float) -> int:
    """The most sends in any tenth of a window (sliding)."""
    tenth, best, j = window / 10, 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - tenth:
            j += 1
        best = max(best, i - j + 1)
    return best

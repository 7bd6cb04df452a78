"""Pacing requests to a Laravel-style fixed-window throttle without being throttled.

The :class:`Pacer` composes three small parts:

* :class:`~.sliding_log.SlidingLog`, the rate meter: at most ``limit`` sends in any ``period``,
  evenly spaced on an absolute grid (never a burst, no drift);
* :class:`~.window.ServerWindow`: where we stand in the server's current window, from
  ``X-RateLimit-Remaining``; when the window's budget is spent it holds until the window has
  surely ended (even spacing alone can put one request too many into a window when arrival
  times jitter; this cannot);
* :class:`~.window.WindowLearner`: how long the server's window lasts, learned from the counts
  (a window reopening, a request still counted late) and from ``Retry-After`` on a 429.

With an explicit rate the limit and period are the user's, paced exactly.  With ``auto`` the limit
is ``X-RateLimit-Limit`` less the headroom over the learned window; until a window is seen to end
it is assumed to last 60 s (Laravel's default), so a minute window is right from the start and a
1 s window shows itself within two requests.  Without any ``X-RateLimit`` headers auto paces at
60/min exactly.

The traps: a 429 means the model was wrong (or other traffic shares the key); every sender then
holds until ``Retry-After`` has passed, or, when the 429 says nothing, for ``backoff_base`` doubling.
Header values that are absurd are ignored (see :mod:`.rate_headers`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import NamedTuple

from ..config import Rate
from .backoff import Backoff
from .rate_headers import HeaderReader, retry_after_seconds
from .sliding_log import CatchUp, SlidingLog
from .window import CONTRADICTIONS, DEFAULT_WINDOW, ServerWindow, WindowLearner

log = logging.getLogger("batch_override")

#: Auto mode's pace when the server sends no X-RateLimit headers (a proxy may strip them):
#: Laravel's default throttle, 60 requests per minute, paced exactly.
FALLBACK_RATE = Rate(60, 60.0)
#: The budget is paced over the learned window stretched by this share.  A real window can outlast
#: its whole-second estimate (Laravel on Redis: by some milliseconds) and arrivals jitter,
#: so an exact ``budget`` per ``estimate`` can land ``budget + 1`` in one server window.
WINDOW_MARGIN = 0.01
#: Answers a server gives before its throttle counts the request (Laravel authenticates first):
#: their lack of X-RateLimit headers says nothing of the throttle.  A wrong key's 401 concluded
#: "no headers" and warned of it before the refusal was said.
_BEFORE_THROTTLE = frozenset({401, 403})
#: Paces remembered as told (see :meth:`PaceModel.retold`): a bound, not a limit ever met in use.
_TOLD_AT_MOST = 1000

__all__ = ["FALLBACK_RATE", "Pacer", "SlidingLog", "Ticket", "retry_after_seconds"]


async def _sleep(stopped: asyncio.Event, seconds: float, *until: asyncio.Event) -> bool:
    """Sleep, but wake at once when the run stops (or one of ``until`` is set: then True).

    The trap: the pacer sets ``until`` and clears it at once (a pulse), so whether it fired must
    be read from its waiter, not from the event afterwards (that read False, and the first
    answer's window was then taken as lost: the minute's guess doubled to two)."""
    waiters = [asyncio.ensure_future(event.wait()) for event in (stopped, *until)]
    try:
        done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return any(waiter in done for waiter in waiters[1:])


def _carried(old: list[SlidingLog], probe: deque[float], caught: deque[float]) -> deque[float]:
    """The sends new meters start from: the old meters' longest log (the probe's, before any),
    and a catch-up's sends, which the steady meter did not count.  A catch-up is for the window
    whose length just showed: a new length ends it (:meth:`.CatchUp.stop`)."""
    recent = max((m.recent for m in old), key=len, default=probe)
    return deque(sorted([*recent, *caught])) if caught else recent


class Shape(NamedTuple):
    """What a pace's meters are made of (see :attr:`PaceModel.shape`)."""

    server_limit: int | None
    estimate: float  # the window's length as learnt (or guessed)
    fallback: bool
    reserved: int
    others: float


class Ticket(NamedTuple):
    """A granted turn: the send's sequence number and time, handed back to :meth:`Pacer.observe`."""

    seq: int
    sent_at: float


class PaceModel:
    """What pace the answers so far call for: the user's rate exactly, auto's fallback exactly, or
    the server's limit less headroom over the learned window, less what other traffic on the key
    takes of it.  No clock, no I/O."""

    __slots__ = (
        "_told",
        "_told_before",
        "counts_ignored",
        "fallback",
        "fixed",
        "headroom",
        "learner",
        "others",
        "reserved",
        "server_limit",
    )

    def __init__(self, fixed: Rate | None, headroom: float, learner: WindowLearner) -> None:
        self.fixed = fixed
        self.headroom = headroom if fixed is None else 0.0  # headroom is for advertised limits
        self.learner = learner
        self.server_limit: int | None = None
        self.fallback = False  # auto mode, and the server sends no X-RateLimit headers
        self.others = 0  # other traffic's expected requests per window (ServerWindow.others)
        self.reserved = 0  # of the current window, left to the other traffic (ServerWindow.reserved)
        self.counts_ignored = False  # X-RateLimit-Remaining contradicts the answers: not read
        self._told = ""  # the pace last described (see retold)
        self._told_before: set[str] = set()

    @property
    def window_budget(self) -> int | None:
        """Requests, everyone's, allowed per server window: the limit less the headroom."""
        if self.server_limit is None:
            return None
        return max(1, math.floor(self.server_limit * (1 - self.headroom)))

    @property
    def budget(self) -> int | None:
        """Our sends per server window: the window's budget less what of the current window is
        left to the other traffic, once the window's length is known (None: no server limit known).

        Before that, the whole budget over the guessed window: what the others take "per window"
        is then their count in a minute's guess, and a second job on a key another job fills
        (40 per 15 s: 34 of 36) paced the 2 left over 60 s, asleep up to 54 s, and with so few
        sends it saw the count restart too rarely to learn the window (72 s for 15 s).  The
        count-based hold keeps the key from being overfilled meanwhile (:meth:`.ServerWindow.hold`).
        The trap: until the length shows, the reserve is not kept; a neighbour taking most of a
        window that the guess gets right (70 % of 60 per minute, simulated) sees 2 % of its
        requests answered 429 in the first window (0.3 % while the reserve applied at once)."""
        total = self.window_budget
        if total is None:
            return None
        return max(1, total - self.reserved) if self.fixed is None and self.learner.known else total

    @property
    def cap(self) -> int | None:
        """Requests counted per server window, everyone's, past which the pacer holds until the
        window ends (None: no hold)."""
        if self.counts_ignored:
            return None
        # The pace keeps the headroom; the hold guards the server's own limit once the window is
        # known (it costs a round trip per window), and the budget while it is still a guess, or
        # while others share the key: the headroom is theirs, whatever the order of arrivals.
        cap = self.server_limit if self.learner.known and not self.others else self.window_budget
        if self.fixed is not None and cap is not None:  # the user's limit, per server window
            cap = min(cap, math.ceil(self.fixed.limit * self.learner.estimate / self.fixed.period))
        return cap

    @property
    def shape(self) -> Shape:
        """What the meters are made of (:meth:`meters`), and what :meth:`describe` tells."""
        return Shape(self.server_limit, self.learner.estimate, self.fallback, self.reserved, self.others)

    def meters(self) -> list[tuple[int, float]]:
        """(limit, period) of each rate meter the pace is made of; none before the first answer."""
        wanted: list[tuple[int, float]] = []
        if self.fixed is not None:
            wanted.append((self.fixed.limit, self.fixed.period))
        elif self.fallback and self.server_limit is None:
            wanted.append((FALLBACK_RATE.limit, FALLBACK_RATE.period))
        budget = self.budget
        if budget is not None:
            wanted.append((budget, self.learner.estimate * (1 + WINDOW_MARGIN)))
        return wanted

    def counts_read(self, others: int, reserved: int, contradictions: int, limit: int) -> None:
        """What the window made of the counts so far: ``others`` per window, ``reserved`` of the
        current one, ``contradictions`` in a row (see :class:`~.window.ServerWindow`)."""
        if contradictions >= CONTRADICTIONS:
            self.counts_ignored = True
            log.warning(
                "ignoring X-RateLimit-Remaining: %d answers in a row contradict it (it does not "
                "move while they are accepted); pacing at the limit over the window",
                contradictions,
            )
        if self.fixed is None:
            # Less than half the headroom is left to the headroom: a long tail's reordered
            # counts show a few "others" that are our own stragglers.
            shared = others > self.headroom / 2 * limit
            self.others = others if shared else 0
            self.reserved = reserved if shared else 0

    def retold(self) -> str | None:
        """:meth:`describe`, when it changed since the last call to a pace not told before (else
        None).  The reserve for other traffic moves with the answers: the pace per window is worth
        a line, not each move.  The trap: two replicas configured with different limits answer
        ``X-RateLimit-Limit`` 60 and 100 in turn, and the pace flips with every answer (8 lines
        for 9 requests); a pace already told is not told again, so they cost two lines."""
        told, self._told = self._told, self.describe()
        if self._told == told or self._told in self._told_before:
            return None
        if len(self._told_before) < _TOLD_AT_MOST:
            self._told_before.add(self._told)
        return self._told

    def no_headers(self) -> None:
        if self.fixed is None and self.server_limit is None and not self.fallback:
            self.fallback = True
            log.warning(
                "the server sends no X-RateLimit headers: pacing at %s (set --rate to choose)",
                FALLBACK_RATE,
            )

    def describe(self) -> str:
        if self.fixed is not None:
            return f"{self.fixed} (evenly spaced)"
        if self.fallback and self.server_limit is None:
            return f"auto: no X-RateLimit headers, {FALLBACK_RATE}"
        total = self.window_budget
        if total is None:
            return "auto (learning)"
        if not self.learner.known:  # the whole budget until then (see budget)
            seen = f"; other traffic seen, ~{self.others}" if self.others else ""
            return f"auto: {total}/{self.learner.estimate:g}s, window assumed until one ends{seen}"
        # The pace of a window that the other traffic takes its share of (the current window's
        # budget moves as the reserve does).
        others = f", of {total}: other traffic takes ~{self.others}" if self.others else ""
        return f"auto: {max(1, total - self.others)}/{self.learner.estimate:g}s{others}"


class Pacer:
    """Decides when the next request may start.  Call :meth:`acquire` before each request and
    :meth:`observe` with its answer.  ``rate=None`` means auto."""

    def __init__(
        self,
        rate: Rate | None,
        *,
        headroom: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        stopped: asyncio.Event | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._stopped = stopped or asyncio.Event()
        self._clock = clock  # injected: tests ask :meth:`wait` and :meth:`grant` on a virtual clock
        self._backoff = backoff or Backoff()
        self._lock = asyncio.Lock()
        self._answered = asyncio.Event()
        self._repaced = asyncio.Event()  # set (and cleared) when an answer changes the pace
        self._headers = HeaderReader()
        learner = WindowLearner(rate.period if rate is not None else DEFAULT_WINDOW)
        self.model = PaceModel(rate, headroom, learner)
        self.window = ServerWindow(learner, exact=rate is not None)
        self._meters: list[SlidingLog] = []
        self._catch_up = CatchUp()
        self._shape: Shape | None = None  # what the meters were built from (see _rebuild)
        self.rate: float | None = None  # requests per second (None before the first answer in auto)
        self._seq = 0
        self._blocked_until = -math.inf
        self._bare_429s = 0  # 429s in a row that said nothing of when to come back
        self._probing = False
        self._probe_sent: deque[float] = deque(maxlen=1)
        self.throttled = 0
        self._rebuild()

    @property
    def period(self) -> float:
        return self.window.learner.estimate

    @property
    def fallback(self) -> bool:
        return self.model.fallback

    def describe(self) -> str:
        return self.model.describe()

    def _rebuild(self) -> None:
        model = self.model  # called on every answer: most change nothing the meters come from
        if (shape := model.shape) == self._shape:
            return
        same_estimate = self._shape is not None and self._shape.estimate == shape.estimate
        caught, self._shape = deque() if same_estimate else self._catch_up.stop(), shape  # see _carried
        wanted, old = model.meters(), self._meters
        if [(m.limit, m.period) for m in old] != wanted:
            recent = _carried(old, self._probe_sent, caught)
            self._meters = [SlidingLog(limit, period, recent) for limit, period in wanted]
            self.rate = min(limit / period for limit, period in wanted) if wanted else None
            # A sender asleep on the old pace (1.33 s apart while a 1 s window is still a
            # minute's guess) must not sleep through the new one: wake it to ask again.
            self._repaced.set()
            self._repaced.clear()
            if (told := model.retold()) is not None and old and model.fixed is None:
                log.info("pacing %s", told)

    def wait(self, now: float) -> float | None:
        """Seconds before the next send may go (0: now); None: wait for an answer first."""
        if now < self._blocked_until:
            return self._blocked_until - now
        if not self._meters:
            return None if self._probing else 0.0  # auto: one request alone tells the limit
        cap = self.model.cap
        if cap is not None and ((hold := self.window.hold(now, cap, self._seq + 1)) is None or hold > 0):
            return hold
        catching_up = self._catch_up.wait(now)
        return max(m.wait(now) for m in self._meters) if catching_up is None else catching_up

    # -- the two calls -------------------------------------------------------------------------
    async def acquire(self) -> Ticket | None:
        """Wait for a turn; the ticket goes back to :meth:`observe` with the answer.  None when the
        run stopped while waiting (nothing may be sent then)."""
        if not self._lock.locked() and not self._stopped.is_set() and self.wait(self._clock()) == 0:
            return self.grant(self._clock())  # the common case at full speed: nothing to wait for
        async with self._lock:
            while not self._stopped.is_set():
                if (wait := self.wait(now := self._clock())) is None:
                    answered = await _sleep(self._stopped, self.period, self._answered)
                    if not answered and self._meters:
                        self.window.assume_ended(self._seq + 1)  # the opener's answer was lost
                elif wait > 0:
                    # An answer may end a hold (ServerWindow.hold), a new pace a meter's wait.
                    await _sleep(self._stopped, wait, self._repaced, self._answered)
                else:
                    return self.grant(now)
            return None

    def grant(self, sent: float) -> Ticket:
        """Record a send at ``sent`` (when :meth:`wait` said 0); :meth:`acquire` is the async way."""
        if not self._catch_up.record(sent):
            for meter in self._meters:
                meter.record(sent)
        self._probing = not self._meters
        if self._probing:
            self._probe_sent.append(sent)  # counts against the pace the answer will set
        self._seq += 1
        self.window.sent(self._seq, sent)
        return Ticket(self._seq, sent)

    def observe(self, ticket: Ticket, status: int | None, headers: Mapping[str, str]) -> None:
        """Learn from an answer (``status`` None: no answer, nothing to learn)."""
        self.window.answered(ticket.seq)
        if status is not None:
            self._learn(ticket, status, headers, self._clock())
        self._probing = False  # only one request is in flight while probing: this one
        self._answered.set()
        self._answered.clear()

    def _learn(self, ticket: Ticket, status: int, headers: Mapping[str, str], now: float) -> None:
        found = self._headers.read(headers, status)
        if found.limit is not None:
            self.model.server_limit = found.limit
        if status == 429:
            self.throttled += 1
            wait = found.wait  # a date that reads 0 says nothing (see RateHeaders.wait)
            if wait is None:  # a proxy's or CDN's 429: the whole step (see Backoff.ceiling)
                wait = self._backoff.ceiling(self._bare_429s)
                self._bare_429s += 1
            else:
                self._bare_429s = 0
                self.window.throttled(ticket.seq, ticket.sent_at, wait, now)
            self._blocked_until = max(self._blocked_until, now + wait)
        else:
            self._bare_429s = 0
            remaining = None if self.model.counts_ignored else found.remaining
            if found.limit is not None and remaining is not None:
                window, counted = self.window, found.limit - remaining
                shown = counted >= 1 and window.counted(
                    ticket.seq, ticket.sent_at, counted, now, full=not remaining
                )
                # Before the catch-up, which spends what the other traffic leaves of this window
                # (an earlier run that filled the last one has gone: 4 of 40 caught up, not 35).
                self.model.counts_read(
                    window.others, window.reserved(now), window.contradictions, found.limit
                )
                if shown:
                    self._rebuild()  # the window's length just showed: catch up in the window it opened
                    steady = self._meters[-1]  # the budget's meter (PaceModel.meters puts it last)
                    self._catch_up.start(now, ticket.sent_at, (self.model.budget or 0) - window.used, steady)
            elif found.limit is None and status not in _BEFORE_THROTTLE:
                self.model.no_headers()
        self._rebuild()

"""Progress off a terminal: every ``--progress-interval`` seconds one progress line, and a callback.

:class:`Ticker` takes a :class:`Snapshot` of the running job at each tick (start + k x interval,
on an absolute grid, so ticks never drift), logs it as one line (``progress`` with its numbers as
fields under ``--log-format json``) and hands it to ``on_tick`` (the command line refreshes its
metrics there).  It knows nothing of metrics or the command line: the job must not import them.

Contract:
- ``on_tick`` runs in a worker thread (a Pushgateway push may block for seconds) and the next tick
  waits for it: a slow callback skips ticks, it never stacks them.  An exception from it is one
  warning per run; the run goes on.  After cancelling :meth:`Ticker.run`, await
  :meth:`Ticker.drain`: a callback still running then finishes before anything the caller does
  next (a final metrics push must not be overwritten by a late in-progress one).
- The rate is rows finished over the last :data:`RATE_WINDOW` seconds (or since the start, when
  shorter), so rows finished without a request (skipped, invalid) early in a run stop weighing on
  the ETA a minute later.  ETA = rows left / rate; ``None`` before any row finished.
- ``last_progress`` is the wall-clock time of the first tick that saw more rows done than the one
  before (the ticker's start before any): a stuck run's stays put while its ticks go on.

Trap: rows a ``--limit`` leaves unattempted are in ``total`` but never finish, so such a run's
ETA is too long and ``done`` never reaches ``total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..summary import Summary

log = logging.getLogger("batch_override")

#: Seconds of history the rate (and so the ETA) is measured over.
RATE_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A running job at one moment: what a progress line and the in-progress metrics show."""

    done: int
    total: int
    outcomes: dict[str, int]
    elapsed: float  # seconds since sending started
    rate: float  # rows finished per second, recently (see RATE_WINDOW)
    eta: float | None  # seconds left at that rate; None before any row finished
    requests: int
    throttled: int  # 429 answers so far
    in_flight: int
    concurrency_limit: int | None
    pace: str  # the pacer's own words: "auto: 45/1s", "5/1s (evenly spaced)"
    window: float | None  # the server's window as learnt, seconds
    last_progress: float = field(default=0.0)  # Unix time rows done last grew

    def line(self) -> str:
        """``progress 40/100 rows (40%): submitted=38, not_ready=2; 5.0 rows/s; ...; ETA 0:00:12``."""
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()) if v) or "none yet"
        parts = [f"progress {self.done}/{self.total} rows{share}: {counts}", f"{self.rate:.1f} rows/s"]
        parts.append(f"{self.requests} requests, {self.throttled} answered 429")
        if self.pace:
            parts.append(f"pace {self.pace}")
        if self.concurrency_limit is not None:
            parts.append(f"in flight {self.in_flight}/{self.concurrency_limit}")
        parts.append(f"ETA {_clock(self.eta)}")
        return "; ".join(parts)

    def fields(self) -> dict[str, Any]:
        """The numbers, for a JSON log line (``eta_s`` None when not known)."""
        out = asdict(self)
        out["eta_s"] = None if self.eta is None else round(self.eta, 1)
        out["rows_per_s"] = round(self.rate, 3)
        out["elapsed_s"] = round(self.elapsed, 3)
        for renamed in ("eta", "rate", "elapsed"):
            del out[renamed]
        return out


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class Ticker:
    """Snapshots of ``summary`` (counted live by the recorder) every ``interval`` seconds.

    The sending stage sets :attr:`pacer`, :attr:`requester` and :attr:`slots` once they exist
    (a dry run has none: its lines show rows alone).
    """

    def __init__(
        self,
        summary: Summary,
        interval: float,
        on_tick: Callable[[Snapshot], None] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.summary = summary
        self.interval = interval
        self.on_tick = on_tick
        self.pacer: Any = None
        self.requester: Any = None
        self.slots: Any = None
        self._clock, self._wall = clock, wall
        self._started = clock()
        self._history: deque[tuple[float, int]] = deque([(self._started, 0)])
        self._last_done = 0
        self._last_progress = wall()
        self._warned = False
        self._pending: asyncio.Future[None] | None = None  # the callback running in its thread

    def snapshot(self) -> Snapshot:
        now = self._clock()
        summary = self.summary
        done = sum(summary.outcomes.values())
        history = self._history
        history.append((now, done))
        while len(history) > 2 and now - history[1][0] >= RATE_WINDOW:
            history.popleft()
        then, done_then = history[0]
        rate = (done - done_then) / (now - then) if now > then else 0.0
        if done > self._last_done:
            self._last_done, self._last_progress = done, self._wall()
        left = max(0, summary.rows - done)
        eta = left / rate if rate > 0 else (0.0 if left == 0 else None)
        pacer, slots = self.pacer, self.slots
        return Snapshot(
            done=done,
            total=summary.rows,
            outcomes=dict(summary.outcomes),
            elapsed=now - self._started,
            rate=rate,
            eta=eta,
            requests=self.requester.requests if self.requester is not None else 0,
            throttled=pacer.throttled if pacer is not None else 0,
            in_flight=slots.in_flight if slots is not None else 0,
            concurrency_limit=slots.limit if slots is not None else None,
            pace=pacer.describe() if pacer is not None else "",
            window=pacer.period if pacer is not None else None,
            last_progress=self._last_progress,
        )

    async def run(self) -> None:
        """Tick until cancelled (the runner cancels it when sending ends)."""
        tick = 0
        while True:
            tick += 1
            delay = self._started + tick * self.interval - self._clock()
            if delay < 0:  # a slow callback: skip the ticks it overran
                tick += int(-delay // self.interval) + 1
                delay = self._started + tick * self.interval - self._clock()
            await asyncio.sleep(delay)
            snap = self.snapshot()
            log.info("%s", snap.line(), extra={"fields": {"progress": snap.fields()}})
            if self.on_tick is not None:
                await self._call(snap)
                await self.drain()

    async def _call(self, snap: Snapshot) -> None:
        assert self.on_tick is not None
        self._pending = asyncio.ensure_future(asyncio.to_thread(self.on_tick, snap))
        # Shielded: a cancel of run() must not orphan a push that would land after the final one.
        with contextlib.suppress(Exception):  # drain() reports it
            await asyncio.shield(self._pending)

    async def drain(self) -> None:
        """Wait for a callback still running (after :meth:`run` was cancelled)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            await pending
        except Exception as exc:  # the run matters more than its progress report
            if not self._warned:
                self._warned = True
                log.warning("progress callback failed (further failures not logged): %s", exc)


__all__ = ["RATE_WINDOW", "Snapshot", "Ticker"]

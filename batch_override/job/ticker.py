"""Progress while a job runs: snapshots on a steady beat, handed to whoever listens.

Two listen, each through its own :class:`Ticker`, both given
:class:`~batch_override.summary.ProgressSnapshot` (the one progress vocabulary):

- ``on_progress`` (the Python API): every :data:`ON_PROGRESS_INTERVAL` seconds from the start of
  the run, and once at the end (``final``), its rate measured over :data:`ON_PROGRESS_SPAN`;
- ``--progress-interval`` while rows are sent: one log line a tick (``progress`` with the numbers
  as fields under ``--log-format json``), and ``on_tick``, where the command line refreshes its
  in-progress metrics; its rate is measured over :data:`LINES_SPAN`.

Contract:
- Ticks are on an absolute grid (start + k x interval), so they never drift.
- The callback runs in a worker thread of the ticker's own (a push may block for seconds), one
  call at a time: a call still running when a tick is due makes that tick skip the callback (its
  progress line still goes out), so a slow callback never slows the run nor stacks calls.  A
  callback that raises is one warning per ticker; the run goes on.
- :meth:`Ticker.finish` waits for a call still running (a late in-progress push must never land
  after the final one the command line makes next), then, when asked, makes the final call; it
  waits at most ``wait`` seconds for them: a slower callback ends after ``run_job`` returned.

Trap: the thread is the ticker's own daemon thread, on purpose: neither the loop's default
executor (``asyncio.run`` waits for it) nor a ``ThreadPoolExecutor`` (joined at interpreter exit),
so a callback that never returns keeps neither ``run_job`` from returning nor the host process
from exiting; its final call is abandoned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from ..summary import OnProgress, ProgressSnapshot

log = logging.getLogger("batch_override")

#: ``on_progress``: seconds between calls, seconds of history behind its rate, and the longest
#: wait for its final call.
ON_PROGRESS_INTERVAL = 1.0
ON_PROGRESS_SPAN = 10.0
FINAL_WAIT = 1.0
#: ``--progress-interval`` lines: seconds of history behind their rate (and so the ETA).
LINES_SPAN = 60.0


class Meter:
    """Rows per second over the last ``span`` seconds, the ETA at that rate, and when rows done
    last grew.  Read it once per tick: each :meth:`read` is one point of its history."""

    def __init__(
        self,
        span: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.span = span
        self._clock, self._wall = clock, wall
        self._history: deque[tuple[float, int]] = deque([(clock(), 0)])
        self._last_done = 0
        self.last_progress = wall()  # the start, before any row finished

    def read(self, done: int, total: int) -> tuple[float, float | None]:
        """``(rows_per_s, eta_s)`` now; ``eta_s`` None before any row finished (0 when none is left)."""
        now = self._clock()
        history = self._history
        history.append((now, done))
        while len(history) > 2 and now - history[1][0] >= self.span:
            history.popleft()
        then, done_then = history[0]
        rate = (done - done_then) / (now - then) if now > then else 0.0
        if done > self._last_done:
            self._last_done, self.last_progress = done, self._wall()
        left = max(0, total - done)
        eta = left / rate if rate > 0 else (0.0 if left == 0 else None)
        return rate, eta


class _DaemonWorker:
    """Calls run one at a time, in order, in one daemon thread started on the first call.

    The trap it avoids: a ``ThreadPoolExecutor``'s threads are joined at interpreter exit, so a
    call that never returns would keep the process alive; this thread is never joined.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[tuple[Callable[[], None], concurrent.futures.Future[None]] | None]
        self._calls = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, call: Callable[[], None]) -> concurrent.futures.Future[None]:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._calls.put((call, future))
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()
        return future

    def shutdown(self) -> None:
        """The thread ends once the calls queued are done (never waited for)."""
        self._calls.put(None)

    def _work(self) -> None:
        while (item := self._calls.get()) is not None:
            call, future = item
            if future.set_running_or_notify_cancel():
                try:
                    call()
                except BaseException as exc:  # handed to whoever waits for the future
                    future.set_exception(exc)
                else:
                    future.set_result(None)


class Ticker:
    """Every ``interval`` seconds: ``take(final=False)``, logged as a progress line when
    ``lines``, and handed to ``callback`` (see the module's contract); ``name`` is the
    callback's in its warning."""

    def __init__(
        self,
        interval: float,
        take: Callable[[bool], ProgressSnapshot],
        callback: OnProgress | None = None,
        *,
        lines: bool = False,
        name: str = "the progress callback",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._take = take
        self._callback = callback
        self._lines = lines
        self._name = name
        self._clock = clock
        self._worker: _DaemonWorker | None = None
        self._pending: concurrent.futures.Future[None] | None = None
        self._warned = False

    async def run(self) -> None:
        """Tick until cancelled."""
        started, tick = self._clock(), 0
        while True:
            tick += 1
            delay = started + tick * self.interval - self._clock()
            if delay < 0:  # the loop was busy: skip the ticks it overran
                tick += int(-delay // self.interval) + 1
                delay = started + tick * self.interval - self._clock()
            await asyncio.sleep(delay)
            self.tick()

    def tick(self, final: bool = False) -> None:
        snap = self._take(final)
        if self._lines:
            log.info("%s", snap.line(), extra={"fields": {"progress": snap.fields()}})
        if self._callback is None:
            return
        if not final and self._pending is not None and not self._pending.done():
            return  # the last call is still running: skip this one
        if self._worker is None:
            self._worker = _DaemonWorker("progress")
        self._pending = self._worker.submit(functools.partial(self._call, snap))

    def _call(self, snap: ProgressSnapshot) -> None:
        assert self._callback is not None
        try:
            self._callback(snap)
        except Exception as exc:  # the run matters more than its progress report
            if not self._warned:
                self._warned = True
                log.warning(
                    "%s raised %s: %s (the run goes on; not logged again)",
                    self._name,
                    type(exc).__name__,
                    exc,
                )

    async def finish(self, *, final: bool, wait: float | None) -> None:
        """Wait for a call still running and, with ``final``, the final one: at most ``wait`` s."""
        if final and self._callback is not None:
            self.tick(final=True)  # queued behind a call still running: one thread
        pending, worker = self._pending, self._worker
        if pending is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(pending)), wait)
        if worker is not None:
            worker.shutdown()


@contextlib.asynccontextmanager
async def ticking(ticker: Ticker | None, *, final: bool, wait: float | None) -> AsyncIterator[None]:
    """``ticker`` running while the block runs (nothing when None), then :meth:`Ticker.finish`."""
    if ticker is None:
        yield
        return
    task = asyncio.ensure_future(ticker.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ticker.finish(final=final, wait=wait)


__all__ = [
    "FINAL_WAIT",
    "LINES_SPAN",
    "ON_PROGRESS_INTERVAL",
    "ON_PROGRESS_SPAN",
    "Meter",
    "Ticker",
    "ticking",
]

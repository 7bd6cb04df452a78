"""Around the run: the ``on_progress`` callback and the deadline (``--max-duration``, ``--stop-at``).

Contract for ``on_progress``: it is called about once a second and once at the end, in a
worker thread of its own, one call at a time, with an immutable
:class:`~batch_override.summary.ProgressSnapshot`.  A call still running when the next is due
is not waited for: that tick is skipped, so a callback that sleeps 5 s is called every 5 s and
never slows the run.  A callback that raises gets one warning; the run goes on.  The trap: the
final call (after any call still running) is waited for at most :data:`FINAL_WAIT` seconds;
a slower one finishes after
``run_job`` has returned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator

from ..config import RunConfig
from ..errors import ExitCode
from ..schedule import format_duration
from ..stopping import Stopper
from ..summary import ProgressSnapshot

log = logging.getLogger("batch_override")

OnProgress = Callable[[ProgressSnapshot], object]
#: Seconds between two calls of ``on_progress``, and the longest wait for its final call.
INTERVAL = 1.0
FINAL_WAIT = 1.0
_RATE_SPAN = 10.0  # seconds of history behind rows_per_s and eta_s


class ProgressFeed:
    """Calls ``callback`` with snapshots from ``snapshot(final, rows_per_s, eta_s)``."""

    def __init__(self, callback: OnProgress, snapshot: Callable[..., ProgressSnapshot]) -> None:
        self._callback = callback
        self._snapshot = snapshot
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="on_progress")
        self._pending: concurrent.futures.Future[None] | None = None
        self._warned = False
        self._history: deque[tuple[float, int]] = deque()

    def _call(self, snap: ProgressSnapshot) -> None:
        try:
            self._callback(snap)
        except Exception as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "on_progress raised %s: %s (the run goes on; not logged again)", type(exc).__name__, exc
                )

    def _take(self, final: bool) -> ProgressSnapshot:
        now = time.monotonic()
        first = self._snapshot(False, 0.0, None)
        self._history.append((now, first.rows_done))
        while len(self._history) > 2 and now - self._history[1][0] >= _RATE_SPAN:
            self._history.popleft()
        (t0, d0) = self._history[0]
        rate = (first.rows_done - d0) / (now - t0) if now > t0 else 0.0
        left = first.rows_total - first.rows_done
        eta = left / rate if rate > 0 else (0.0 if left == 0 else None)
        snap: ProgressSnapshot = self._snapshot(final, rate, eta)
        return snap

    def tick(self) -> None:
        if self._pending is not None and not self._pending.done():
            return  # the last call is still running: skip this one
        self._pending = self._pool.submit(self._call, self._take(False))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            self.tick()

    async def finish(self) -> None:
        """The final call, after any call still running (one thread): waited for ``FINAL_WAIT``."""
        last = self._pool.submit(self._call, self._take(True))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.wrap_future(last), FINAL_WAIT)
        self._pool.shutdown(wait=False)


@contextlib.asynccontextmanager
async def progress_fed(
    callback: OnProgress | None, snapshot: Callable[..., ProgressSnapshot]
) -> AsyncIterator[None]:
    """``callback`` fed while the block runs (nothing when it is None), and once at its end."""
    if callback is None:
        yield
        return
    feed = ProgressFeed(callback, snapshot)
    task = asyncio.ensure_future(feed.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await feed.finish()


def deadline_in(config: RunConfig, now: float) -> tuple[float, str] | None:
    """Seconds from ``now`` (a Unix time) to the run's deadline and the option that sets it."""
    found: list[tuple[float, str]] = []
    if config.max_duration is not None:
        found.append((config.max_duration, f"--max-duration {format_duration(config.max_duration)}"))
    if config.stop_at is not None:
        found.append((config.stop_at.next_after(now) - now, f"--stop-at {config.stop_at}"))
    return min(found) if found else None


@contextlib.contextmanager
def deadline_armed(config: RunConfig, stopper: Stopper) -> Iterator[None]:
    """Stop the run as on SIGTERM (exit 7) at its deadline, if it has one."""
    deadline = deadline_in(config, time.time())
    if deadline is None:
        yield
        return
    seconds, option = deadline
    log.info("deadline: %s, in %.0fs", option, seconds)
    reason = f"deadline ({option}) reached: finishing in-flight rows, recording the rest as aborted"
    timer = asyncio.get_running_loop().call_later(seconds, stopper.request, ExitCode.DEADLINE, reason)
    try:
        yield
    finally:
        timer.cancel()

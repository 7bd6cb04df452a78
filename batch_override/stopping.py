"""Stopping a run: why it stopped, which exit code wins, and the grace period that bounds it.

Contract: the first :meth:`Stopper.request` stops the run: ``stopped`` is set (the pacer, the
breaker and backoff sleeps wake on it, so no new request starts), ``halted`` tells reader threads
to end at their next batch, and ``grace`` seconds later every sender still busy with a row is
cancelled (:meth:`Stopper.cut_off`) and records that row itself.  Later stops are kept: they
can only change the exit code (:meth:`Stopper.decisive`: 70, then 6, then the first stop).

The trap: only *busy* senders may be cut off.  A sender waiting on the queue is what drains it
after a stop; cancelling it could leave the producer blocked on a full queue forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

from .errors import ExitCode, first_line
from .outcome import ErrorCode

log = logging.getLogger("batch_override")

T = TypeVar("T")

#: The signals that stop a run; the exit code is 128 + the signal's number (129, 130, 143).
_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


#: The error code of the rows a deadline left unsent (outcome ``aborted``).
DEADLINE_CODE = ErrorCode.DEADLINE


class Stop(NamedTuple):
    exit_code: int
    reason: str


class Halted(Exception):
    """Raised in a reader thread at a batch boundary once the run has stopped."""


class Stopper:
    """The run's stops, in order, and the grace-period cut-off (see the module docstring)."""

    def __init__(self, grace: float) -> None:
        self.stops: list[Stop] = []
        self.stopped = asyncio.Event()
        self.halted = threading.Event()
        self.error: BaseException | None = None  # the first unexpected error, for the caller
        self.grace_over = False
        self._grace = grace
        self._busy: set[asyncio.Task[Any]] = set()
        self._cut: set[asyncio.Task[Any]] = set()  # cancelled by cut_off, not yet seen by the task
        self._signalled = False

    @property
    def abort_code(self) -> ErrorCode:
        """The error code of rows left unsent: ``deadline`` after a deadline, else ``not_sent``."""
        if self.stops and self.stops[0].exit_code == ExitCode.DEADLINE:
            return DEADLINE_CODE
        return ErrorCode.NOT_SENT

    @property
    def reason(self) -> str:
        """The first stop's reason (what an ``aborted`` line says)."""
        return self.stops[0].reason if self.stops else "stopped"

    def decisive(self) -> Stop | None:
        """The stop that sets the exit code: a bug (70), then an unwritable ledger (6), then the first."""
        for worst in (ExitCode.INTERNAL, ExitCode.LEDGER_WRITE):
            for stop in self.stops:
                if stop.exit_code == worst:
                    return stop
        return self.stops[0] if self.stops else None

    def request(self, exit_code: int, reason: str) -> None:
        self.stops.append(Stop(exit_code, reason))
        if exit_code == ExitCode.INTERNAL:
            pass  # the caller re-raises the error: the command line reports it in one line
        elif len(self.stops) == 1:
            # A deadline is the stop the user planned (exit 7 says so): not an error.
            log.log(
                logging.WARNING if exit_code == ExitCode.DEADLINE else logging.ERROR, "stopping: %s", reason
            )
        elif exit_code == ExitCode.LEDGER_WRITE:
            log.error("%s", reason)
        if len(self.stops) > 1:
            return
        self.stopped.set()
        self.halted.set()
        asyncio.get_running_loop().call_later(self._grace, self.cut_off)

    def fail(self, exc: BaseException) -> None:
        """An unexpected error (a bug): stop with exit 70; the run re-raises ``exc`` at its end."""
        if self.error is None:
            self.error = exc
        else:  # only the first is re-raised: show this one here
            log.error("another internal error: %s: %s", type(exc).__name__, first_line(exc))
            log.debug("its traceback:", exc_info=exc)
        self.request(ExitCode.INTERNAL, f"internal error: {type(exc).__name__}: {first_line(exc)}")

    def on_signal(self, signum: int) -> bool:
        """React to SIGINT/SIGTERM/SIGHUP; True when the process must exit at once (a second signal).

        The first signal stops the run, or, when it has stopped already (401, outage...), cuts the
        grace period short; the exit code stays the first stop's.
        """
        if self._signalled:
            return True
        self._signalled = True
        name = signal.Signals(signum).name
        if not self.stops:
            code = 128 + signum if signum in _SIGNALS else ExitCode.SIGTERM
            self.request(code, f"signal {name}: finishing in-flight rows, leaving the rest for the next run")
        else:
            log.error("signal %s while stopping (%s): cutting off the rows in flight", name, self.reason)
            self.cut_off()
        return False

    def on_stop_request(self, reason: str) -> None:
        """A :class:`StopHandle`'s stop: as a first signal (exit 130), or, once the run has
        stopped, a cut-off of the grace period."""
        if not self.stops:
            self.request(ExitCode.SIGINT, reason)
        else:
            self.cut_off()

    def cut_off(self) -> None:
        """The grace period is over: cancel every sender still busy with a row."""
        if self.grace_over:
            return
        self.grace_over = True
        for task in list(self._busy):
            task.cancel()
            self._cut.add(task)

    @contextlib.contextmanager
    def busy(self) -> Iterator[asyncio.Task[Any]]:
        """Mark the current task as working on a row: :meth:`cut_off` may cancel it."""
        task = asyncio.current_task()
        assert task is not None
        self._busy.add(task)
        try:
            yield task
        finally:
            self._busy.discard(task)

    def was_cut_off(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task``'s CancelledError came from :meth:`cut_off` alone; if so it is consumed
        (the task goes on), else it must propagate (someone cancelled the run itself)."""
        if task not in self._cut:
            return False
        self._cut.discard(task)
        return task.uncancel() == 0

    def interruptible(self, batches: Iterable[T]) -> Iterator[T]:
        """``batches``, raising :class:`Halted` between two of them once the run has stopped."""
        for batch in batches:
            if self.halted.is_set():
                raise Halted
            yield batch

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread.  A cancel stops the run and waits for the thread to
        end (it checks ``halted`` between batches), then propagates: nothing outlives the run."""
        future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if not self.stops:
                self.request(ExitCode.SIGINT, "cancelled by the caller")
            await asyncio.wait({future})
            if not future.cancelled():
                future.exception()  # retrieved: a Halted there is the expected end
            raise


#: Seconds between two looks at ``halted`` while waiting for work nothing can interrupt, and
#: how long a stopped run waits for such work to end by itself before it abandons it.
POLL, SETTLE = 0.1, 1.0


def unless_halted(fn: Callable[[], T], halted: threading.Event) -> T:
    """``fn()`` in a daemon thread, waited for in steps: raises :class:`Halted` once ``halted``
    is set, abandoning the thread (for a pyarrow read of a store that stopped answering, which
    nothing can cancel).  The trap: the thread goes on until ``fn`` returns and whatever it
    returns or raises then is dropped, so ``fn`` must own no resource its caller cleans up
    only on success; a daemon thread, so interpreter exit never waits for it."""
    outcome: list[Any] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append((fn(), None))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append((None, exc))
        finally:
            done.set()

    threading.Thread(target=work, name="batch-override uninterruptible", daemon=True).start()
    while not done.wait(POLL):
        if halted.is_set():
            raise Halted
    result, error = outcome[0]
    if error is not None:
        raise error
    return result  # type: ignore[no-any-return]


class _Abandonable(Generic[T]):
    """``fn(*args)`` in a daemon thread whose result reaches the loop's ``future``, unless the
    waiter gave up first: then the thread itself hands the result to ``discard``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, discard: Callable[[T], object]) -> None:
        self.future: asyncio.Future[T] = loop.create_future()
        self._loop, self._discard = loop, discard
        self._lock = threading.Lock()
        self._abandoned = self._handed = False

    def run(self, fn: Callable[..., T], *args: Any) -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the loop, or dropped once abandoned
            self._hand(self.future.set_exception, exc)
        else:
            if not self._hand(self.future.set_result, result):
                self._discard(result)

    def _hand(self, setter: Callable[[Any], None], value: Any) -> bool:
        with self._lock:
            if self._abandoned:
                return False
            self._handed = True
        try:
            self._loop.call_soon_threadsafe(setter, value)
        except RuntimeError:  # the loop has closed: nobody waits any more
            return False
        return True

    async def abandon(self) -> None:
        """Give up on the result, after :data:`SETTLE` s for work that heeds ``halted`` (its
        copy is then removed before the run ends): discarded by the thread, or here when it is
        already on its way."""
        await asyncio.wait({self.future}, timeout=SETTLE)
        with self._lock:
            self._abandoned = not self._handed
        if self._handed:  # scheduled on the loop already: it arrives on a next turn
            await asyncio.wait({self.future})
            if not self.future.exception():
                self._discard(self.future.result())


async def abandonable(
    stopper: Stopper, fn: Callable[..., T], *args: Any, discard: Callable[[T], object]
) -> T:
    """``fn(*args)`` in a daemon thread, for work nothing can interrupt (opening the input:
    a FIFO without a writer, standard input, an object-store copy).  When the run (``stopper``)
    stops first, raises :class:`Halted`; when cancelled, stops the run and re-raises; either
    within :data:`SETTLE` s.  The thread is then abandoned, and what it returns later is given
    to ``discard``.

    The trap: never ``asyncio.to_thread`` here: ``asyncio.run`` waits for the default
    executor's threads, and interpreter exit joins them, so a stalled read would hold both.
    """
    work: _Abandonable[T] = _Abandonable(asyncio.get_running_loop(), discard)
    threading.Thread(target=work.run, args=(fn, *args), name="batch-override input", daemon=True).start()
    stopped = asyncio.ensure_future(stopper.stopped.wait())
    waited: set[asyncio.Future[Any]] = {work.future, stopped}
    try:
        await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        if not stopper.stops:
            stopper.request(ExitCode.SIGINT, "cancelled by the caller")
        await work.abandon()
        raise
    finally:
        stopped.cancel()
    if not work.future.done():
        await work.abandon()
        raise Halted
    return work.future.result()


class StopHandle:
    """Stops runs from any thread, as a first SIGINT would (exit 130, ``--grace`` for the rows
    in flight, the rest ``aborted``); a second :meth:`stop` cuts the grace period short.

    Pass one as ``run_job(..., stop=handle)``, to one run or to several (a UI's one stop button):
    :meth:`stop` stops every run attached at that moment, i.e. started and not yet ended.  The
    trap: a stop is not carried over, so a run started after :meth:`stop` (a handle reused for the
    next run) runs; a run that must not start once stopped checks :attr:`stopped` first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets: list[tuple[asyncio.AbstractEventLoop, Stopper]] = []
        self._stopped = False

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was ever called."""
        with self._lock:
            return self._stopped

    def stop(self, reason: str = "stopped by the caller") -> int:
        """Ask every run attached now to stop; returns at once (each ends within ``--grace`` and
        a moment) with how many runs were asked."""
        with self._lock:
            self._stopped = True
            targets = list(self._targets)
        asked = 0
        for loop, stopper in targets:
            with contextlib.suppress(RuntimeError):  # the loop has closed: that run is over
                loop.call_soon_threadsafe(stopper.on_stop_request, reason)
                asked += 1
        return asked

    @contextlib.contextmanager
    def attached(self, stopper: Stopper) -> Iterator[None]:
        """Deliver stops to ``stopper`` (on the running loop) while the block runs."""
        target = (asyncio.get_running_loop(), stopper)
        with self._lock:
            self._targets.append(target)
        try:
            yield
        finally:
            with self._lock:
                self._targets.remove(target)


class Interrupts:
    """How the caller's thread stops a run it waits for: a KeyboardInterrupt (Ctrl-C, a
    notebook's Interrupt), or a cancel of the task that called ``run_job`` (under
    ``asyncio.run``, a first Ctrl-C only cancels the main task: its loop is blocked here, so the
    request is seen by polling ``Task.cancelling``), or a host's own exception raised into the
    waiting thread (an orchestrator's SIGTERM handler).  The first stops the run as SIGINT would,
    a second cuts its grace short; the first is raised once the run has wound down, so the run
    never goes on behind the caller's back with the ledger's lock held.  The trap: a stop made
    before the run attached its handle would be lost (a handle does not carry stops over), so it
    is repeated until it reaches the run.
    """

    _INTERRUPTED = (
        "interrupted (KeyboardInterrupt): finishing in-flight rows, leaving the rest for the next run"
    )
    _CANCELLED = "cancelled by the caller: finishing in-flight rows, leaving the rest for the next run"
    _HOST = "stopped by the host's exception"
    _REST = "finishing in-flight rows, leaving the rest for the next run"

    def __init__(self, handle: StopHandle) -> None:
        self._handle = handle
        self._undelivered: str | None = None
        self.raised: BaseException | None = None
        try:
            self._task = asyncio.current_task()
        except RuntimeError:  # no running loop in this thread
            self._task = None
        self._cancels = self._task.cancelling() if self._task is not None else 0

    def wait(self, done: threading.Event) -> BaseException | None:
        """Wait for ``done`` in steps (a KeyboardInterrupt is raised between two; a join it
        interrupts may report the thread ended while it still runs); returns what to raise."""
        while not done.is_set():
            try:
                while not done.wait(0.1):
                    self._poll()
            except KeyboardInterrupt as exc:
                self._stop(exc, self._INTERRUPTED)
            except Exception as exc:  # a host's own, raised into this thread (its SIGTERM handler)
                self._stop(exc, f"{self._HOST} ({type(exc).__name__}): {self._REST}")
        return self.raised

    def _poll(self) -> None:
        if self._undelivered is not None and self._handle.stop(self._undelivered):
            self._undelivered = None
        task = self._task
        if task is not None and task.cancelling() > self._cancels:
            self._cancels = task.cancelling()
            self._stop(asyncio.CancelledError(), self._CANCELLED)

    def _stop(self, exc: BaseException, reason: str) -> None:
        self.raised = self.raised or exc
        self._undelivered = None if self._handle.stop(reason) else reason


@contextlib.contextmanager
def signals_handled(
    stopper: Stopper, exit_now: Callable[[int], None], enabled: bool = True
) -> Iterator[None]:
    """SIGINT/SIGTERM/SIGHUP go to ``stopper`` while the block runs; a second one calls ``exit_now(code)``.

    SIGHUP (the terminal closed under a run without ``nohup``, or a supervisor's reload) is a
    SIGTERM: the run stops the same way and exits 129 with its summary, finish record and metrics.
    Only when ``enabled`` and on the main thread: elsewhere (a notebook's worker thread, a host
    that owns its signals) nothing is installed and the host's handlers stay as they are.
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int) -> None:
        if stopper.on_signal(signum):
            log.error("second signal: exiting at once")
            stop = stopper.decisive()
            exit_now(stop.exit_code if stop is not None else 128 + signum)

    for signum in _SIGNALS:
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or no signal support: the caller handles signals
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)

"""The job: read and plan every row, then send the sendable ones under the pacer, ledger each.

Shape (one TaskGroup, so nothing leaks when one part fails or the run is cancelled)::

    input --(pass 1: validate, index)--> plan --(pass 2: batches)--> queue --> N senders
                                          \\-> immediate ledger lines          \\-> ledger lines

The termination guarantee: whatever stops the run (401/403, wrong URL, failure threshold,
outage, a signal, a cancel of :func:`run_job_async`, an unwritable ledger, a bug in any stage),
no new request starts, rows in flight get ``--grace`` seconds and are then cut off, every row
sent and not finished is recorded ``aborted``, every row never sent is counted ``not_attempted``
(no line, unless ``--record-skipped``; the counts add up to the rows read), the run log gets its
finish record and the lock is released.  A signal or cancel during pass 1 ends reading at the
next batch; one while the input is opened (a copy of a pipe or an object waiting for data)
abandons the opening at once (:func:`~.stopping.abandonable`).  See :mod:`stopping` for how,
and for the exit code when several things went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import uuid
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import aiohttp

from ..apikey import ApiKey
from ..config import RunConfig
from ..errors import BatchOverrideError, ExitCode, LedgerWriteError, failure_of
from ..input.batch import Batch
from ..input.source import BatchSource
from ..ledger import runlog
from ..ledger import state as resume_state
from ..ledger.format import utc_now
from ..ledger.resume import ResumeIndex
from ..ledger.writer import LedgerLock, check_ledger_path
from ..outcome import Outcome
from ..pacing.backoff import Backoff
from ..pacing.concurrency import Concurrency
from ..pacing.pacer import Pacer
from ..sending.breaker import MAX_ROWS, MIN_ROWS, MIN_STREAK, Breaker, OutageTooLong
from ..sending.client import make_session
from ..sending.requester import Requester
from ..stopping import Halted, StopHandle, Stopper, abandonable, signals_handled
from ..summary import OnProgress, ProgressSnapshot, Summary
from .deadline import deadline_armed
from .estimate import estimate
from .ledger_files import log_run, open_ledger, save_state
from .parts import DEFAULT_PARTS, Parts
from .plan import InputIndex, index_input
from .producer import PassTwo, produce
from .progress import Progress, logging_redirected
from .recorder import Item, Recorder
from .sender import Sender, preflight
from .ticker import FINAL_WAIT, LINES_SPAN, ON_PROGRESS_INTERVAL, ON_PROGRESS_SPAN, Meter, Ticker, ticking

log = logging.getLogger("batch_override")


@dataclass(slots=True)
class _Job:
    config: RunConfig
    api_key: ApiKey | None
    parts: Parts
    run_id: str
    started: float
    stopper: Stopper
    recorder: Recorder | None = None  # once the input is planned
    on_tick: OnProgress | None = None
    summary: Summary | None = None
    pacer: Pacer | None = None  # once sending starts
    slots: Concurrency | None = None
    requester: Requester | None = None
    sends: int = 0  # the rows the run will send (its plan's, less what the ledger settled)

    def exit_now(self, code: int) -> None:
        """A second signal: sync the ledger and leave (the kernel releases the lock)."""
        if self.recorder is not None:
            self.recorder.close()
        os._exit(code)

    def snapshot(self, meter: Meter, final: bool) -> ProgressSnapshot:
        """The run now (see :class:`ProgressSnapshot`), its rate and ETA read from ``meter``."""
        summary = self.summary
        outcomes = dict(summary.outcomes) if summary is not None else {}
        pacer, slots = self.pacer, self.slots
        done = sum(outcomes.values())
        total = (summary.rows - summary.not_attempted) if summary is not None else 0
        # The rate and the ETA are of the rows to send: skipped rows finish by the thousand at
        # the start and would promise a rate the pace never allows.
        sent = self.recorder.sends_done if self.recorder is not None else 0
        rows_per_s, eta_s = meter.read(sent, self.sends)
        return ProgressSnapshot(
            run_id=self.run_id,
            rows_done=done,
            rows_total=total,
            outcomes=MappingProxyType(outcomes),
            requests=self.requester.requests if self.requester is not None else 0,
            elapsed_s=time.monotonic() - self.started,
            rows_per_s=rows_per_s,
            eta_s=eta_s,
            pace=pacer.describe() if pacer is not None else "not sending yet",
            window_s=pacer.period if pacer is not None else None,
            in_flight=slots.in_flight if slots is not None else 0,
            concurrency_limit=slots.limit if slots is not None else None,
            throttled=pacer.throttled if pacer is not None else 0,
            last_progress=meter.last_progress,
            final=final,
        )


async def run_job_async(
    config: RunConfig,
    api_key: ApiKey | None,
    parts: Parts = DEFAULT_PARTS,
    *,
    handle_signals: bool = False,
    on_progress: OnProgress | None = None,
    stop: StopHandle | Sequence[StopHandle] | None = None,
    on_tick: OnProgress | None = None,
) -> Summary:
    """Run one job to the end and return its summary (``summary.exit_code`` says how it went).

    Raises :class:`~.errors.BatchOverrideError` for problems found before anything is sent
    (unreadable input, ledger mismatch, ledger held by another run), and with
    ``config.raise_on_failure`` a :class:`~.errors.RunFailed` subclass for a run that did not
    exit 0.  A cancel stops the run as a signal would, waits for it to wind down (at most
    ``--grace`` and a moment), then re-raises :class:`asyncio.CancelledError`.  An unexpected
    error is re-raised once the run has ended cleanly (exit code 70 in its run-log record).

    ``handle_signals``: SIGINT/SIGTERM stop the run (a second one exits at once), only on the
    main thread; off, the host's handlers stay.  ``on_progress`` and ``stop`` (one handle or
    several): see :mod:`.ticker` and :class:`~.stopping.StopHandle`.  With
    ``config.progress_interval``, ``on_tick`` gets the :class:`ProgressSnapshot` of each progress
    line, in a worker thread (the command line refreshes its metrics there).  ``parts`` is the
    seam tests use to inject faults.
    """
    if not config.dry_run and api_key is None:
        raise BatchOverrideError("no API key given")
    started = time.monotonic()
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    lock = None
    if config.ledger is not None:
        # First of all, so a second run started by cron exits at once, however big its input.
        check_ledger_path(config.ledger)
        lock = LedgerLock(config.ledger)
        lock.acquire(
            {"pid": os.getpid(), "host": runlog.user_at_host(), "run_id": run_id, "started_at": utc_now()}
        )
    job = _Job(config, api_key, parts, run_id, started, Stopper(config.grace), on_tick=on_tick)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(signals_handled(job.stopper, job.exit_now, handle_signals))
            for handle in (stop,) if isinstance(stop, StopHandle) else stop or ():
                stack.enter_context(handle.attached(job.stopper))
            stack.enter_context(deadline_armed(config, job.stopper))
            on_progress_ticker = _ticker(
                job, ON_PROGRESS_INTERVAL, ON_PROGRESS_SPAN, on_progress, name="on_progress"
            )
            async with ticking(on_progress_ticker, final=True, wait=FINAL_WAIT):
                summary = await _run_locked(job)
    finally:
        if lock is not None:
            lock.release()
    if job.stopper.error is not None:
        raise job.stopper.error
    failure = failure_of(summary) if config.raise_on_failure else None
    if failure is not None:
        raise failure
    return summary


async def _open_source(job: _Job) -> BatchSource:
    """The input opened (standard input, a FIFO or an object copied first) in a thread the run
    abandons when it stops or is cancelled first (:class:`Halted`, CancelledError): a producer
    that never closes its pipe, or a store that stopped answering, never holds a stop."""
    stopper = job.stopper
    return await abandonable(stopper, job.parts.source, job.config, stopper.halted, discard=BatchSource.close)


async def _run_locked(job: _Job) -> Summary:
    config, stopper = job.config, job.stopper
    summary = Summary(
        run_id=job.run_id,
        ledger=str(config.ledger) if config.ledger else None,
        api_url=config.api_url,
        dry_run=config.dry_run,
    )
    if config.ok_outcomes is not None:
        summary.ok_outcomes = config.ok_outcomes
    try:
        source = await _open_source(job)
    except Halted:  # a stop while the input was opened: nothing was read, sent or written
        _conclude(summary, stopper, job.started)
        return summary
    try:
        job.summary = summary
        read = _Counted(stopper.interruptible(source.batches()))
        try:
            index, _ = await asyncio.gather(
                stopper.in_thread(index_input, read),
                asyncio.to_thread(source.compute_sha256),
            )
        except Halted:  # a signal during pass 1: nothing was sent or written
            summary.rows = read.rows  # what was read, all not attempted
            _conclude(summary, stopper, job.started)
            return summary
        summary.rows = index.rows
        await _run_planned(job, source, index, summary)
        return summary
    finally:
        source.close()


class _Counted:
    """Batches passed through, counting their rows (what a stop during pass 1 has read)."""

    def __init__(self, batches: Iterable[Batch]) -> None:
        self._batches = batches
        self.rows = 0

    def __iter__(self) -> Iterator[Batch]:
        for batch in self._batches:
            self.rows += len(batch)
            yield batch


async def _run_planned(job: _Job, source: BatchSource, index: InputIndex, summary: Summary) -> None:
    config, stopper = job.config, job.stopper
    ledger = open_ledger(config, job.parts, job.run_id, source) if config.ledger is not None else None
    job.recorder = recorder = Recorder(summary, stopper, ledger, None, record_skipped=config.record_skipped)
    fingerprint = job.api_key.fingerprint if job.api_key else "-"
    scope = resume_state.scope_of(config.api_url, fingerprint)
    logged = False
    state: resume_state.ResumeState | None = None
    try:
        resume = ResumeIndex.empty()
        if config.ledger is not None:
            trusted = runlog.trusted_runs(runlog.runlog_path(config.ledger), config.api_url, fingerprint)
            state = await asyncio.to_thread(resume_state.load, config.ledger, scope, list(trusted))
            resume = state.index(trusted, first_seen=config.give_up_after_days is not None)
            log_run(config, job.run_id, source, fingerprint, runlog.STARTED, summary)
            logged = True
        _log_start(job, source, index, resume)
        sends = await asyncio.to_thread(index.count_sends, resume, retry_rejected=config.retry_rejected)
        job.sends = sends if config.limit is None else min(sends, config.limit)
        recorder.progress = Progress(job.sends, enabled=config.progress)
        with logging_redirected(recorder.progress.enabled, log):
            await _with_ticker(job, _send_all(job, source, index, resume, recorder))
    except BatchOverrideError as exc:
        if not logged:
            raise  # found before anything was sent: the caller reports it
        stopper.request(exc.exit_code, str(exc))
    except Exception as exc:
        stopper.fail(exc)
    finally:
        if recorder.progress is not None:
            recorder.progress.close()
        recorder.close()
        _conclude(summary, stopper, job.started)
        if logged:
            # Logged by log_run; the ledger is whole, and the started record keeps its lines trusted.
            with contextlib.suppress(LedgerWriteError):
                log_run(config, job.run_id, source, fingerprint, runlog.FINISHED, summary)
        if state is not None and config.ledger is not None:
            save_state(config.ledger, scope, state, fingerprint, config.api_url)


def _ticker(
    job: _Job,
    interval: float | None,
    span: float,
    callback: OnProgress | None,
    *,
    lines: bool = False,
    name: str,
) -> Ticker | None:
    """A :class:`Ticker` of ``job``'s snapshots every ``interval`` s, its rate over ``span`` s
    (None when there is no interval, or nothing listens)."""
    if interval is None or (callback is None and not lines):
        return None
    return Ticker(interval, functools.partial(job.snapshot, Meter(span)), callback, lines=lines, name=name)


async def _with_ticker(job: _Job, sending: Coroutine[object, object, None]) -> None:
    """Await ``sending`` with progress lines beside it when ``--progress-interval`` asks; a
    refresh still running is waited for (the final metrics come after it)."""
    ticker = _ticker(
        job, job.config.progress_interval, LINES_SPAN, job.on_tick, lines=True, name="the progress callback"
    )
    async with ticking(ticker, final=False, wait=None):
        await sending


def _conclude(summary: Summary, stopper: Stopper, started: float) -> None:
    summary.duration = time.monotonic() - started
    # Every row read either finished (counted by outcome, with or without a line) or was never
    # attempted (past --limit, or not reached before a stop): the counts add up to the rows read.
    summary.not_attempted = max(0, summary.rows - sum(summary.outcomes.values()))
    stop = stopper.decisive()
    if stop is not None:
        summary.exit_code, summary.stop_reason = stop.exit_code, stop.reason
    else:
        summary.exit_code = ExitCode.OK if summary.all_succeeded else ExitCode.SOME_ROWS_FAILED


def _log_start(job: _Job, source: BatchSource, index: InputIndex, resume: ResumeIndex) -> None:
    log.info(
        "run %s: %s -> %s (%s); %d rows: %d valid, %d invalid, %d duplicate, %d conflict; "
        "%d already in the ledger index",
        job.run_id,
        source.display,
        job.config.api_url,
        job.config.media if not source.columns.media else "per-row media",
        index.rows,
        index.rows - index.invalid,
        index.invalid,
        index.duplicates,
        index.conflicts,
        len(resume),
    )


async def _send_all(
    job: _Job, source: BatchSource, index: InputIndex, resume: ResumeIndex, recorder: Recorder
) -> None:
    config, stopper = job.config, job.stopper
    if config.dry_run or job.api_key is None:
        pacer = await _probe_limit(job, recorder) if job.api_key is not None and config.preflight else None
        await produce(PassTwo(config, source, index, resume, recorder, stopper, None))
        planned = recorder.summary.outcomes.get(Outcome.PLANNED.value, 0)
        if not stopper.stops:  # a dry run the preflight stopped has nothing to estimate
            _estimate(job, pacer, planned + int(config.preflight))
        return
    # One policy for the probes and the bare 429s (the senders' retries draw from their own).
    backoff = Backoff(config.backoff_base, config.backoff_cap)
    pacer = job.parts.pacer(
        config.fixed_rate,
        headroom=config.headroom,
        stopped=stopper.stopped,
        backoff=backoff,
    )
    # The senders, the pool and the queue size from the most that may be in flight; the slots
    # (auto: Little's law and the gradient) decide how many are, and the breaker's streak is
    # that many (a round trip's worth of failures from a failing server).
    senders = config.senders
    slots = Concurrency(config.fixed_concurrency, config.max_concurrency)
    breaker = Breaker(
        lambda: max(MIN_STREAK, slots.limit),
        rows_needed=min(MAX_ROWS, max(MIN_ROWS, senders)),
        max_outage=config.max_outage,
        backoff=backoff,
        max_wait=config.max_wait,
        clock=job.parts.clock,
        stopped=stopper.stopped,
    )
    job.pacer, job.slots = pacer, slots
    queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=senders * 4)
    if recorder.progress is not None:
        recorder.progress.concurrency = slots.describe
    async with _session(job, senders) as session:
        requester = job.requester = Requester(
            job.parts.client(session, config.api_url), pacer, stopper, slots
        )
        sender = Sender(config, requester, breaker, recorder, stopper, job.parts.clock)
        estimated = functools.partial(_estimate, job, pacer, job.sends + int(config.preflight), sender)
        sender.after_preflight = estimated
        if not config.preflight:
            estimated()
        producer = produce(PassTwo(config, source, index, resume, recorder, stopper, queue), senders)
        workers = [sender.work(queue) for _ in range(senders)]
        pipeline = asyncio.ensure_future(_pipeline(stopper, producer, workers))
        try:
            await _wind_down_on_cancel(pipeline, stopper)
        finally:
            recorder.summary.throttled = pacer.throttled
            recorder.summary.requests = requester.requests
            recorder.summary.concurrency = slots.report()


def _estimate(job: _Job, pacer: Pacer | None, requests: int, sender: Sender | None = None) -> None:
    """Log the estimate of ``requests`` (the preflight included, as the summary counts them: a dry
    run and a run say one count) and keep it; a range is said again once ``sender`` knows the window."""
    assert job.summary is not None
    made = estimate(job.config, pacer, requests)
    job.summary.estimate, job.summary.estimate_s = str(made), made.seconds
    log.info("estimate: %s", job.summary.estimate)
    if made.fastest is not None and sender is not None and pacer is not None:
        sender.on_window_known = functools.partial(_revise, job, pacer, requests)


def _revise(job: _Job, pacer: Pacer, requests: int) -> None:
    assert job.summary is not None
    made = estimate(job.config, pacer, requests)
    job.summary.revised_estimate, job.summary.revised_estimate_s = str(made), made.seconds
    log.info("estimate, the server's window now known to last %gs: %s", pacer.period, made)


def _session(job: _Job, concurrency: int) -> aiohttp.ClientSession:
    config, resolver = job.config, job.parts.resolver
    assert job.api_key is not None
    return make_session(
        job.api_key,
        concurrency=concurrency,
        timeout=config.timeout,
        ca_bundle=config.ca_bundle,
        resolver=resolver() if resolver is not None else None,
    )


async def _probe_limit(job: _Job, recorder: Recorder) -> Pacer | None:
    """A dry run's preflight, the run's own (:func:`.sender.preflight`): it reads the advertised
    limit for the estimate, and stops the dry run where it would stop the run (exit 3 for a wrong
    URL or key, exit 5 past ``--max-outage``).  Nothing is recorded."""
    config, stopper = job.config, job.stopper
    backoff = Backoff(config.backoff_base, config.backoff_cap)
    pacer = job.parts.pacer(
        config.fixed_rate, headroom=config.headroom, stopped=stopper.stopped, backoff=backoff
    )
    breaker = Breaker(
        MIN_STREAK,
        max_outage=config.max_outage,
        backoff=backoff,
        max_wait=config.max_wait,
        clock=job.parts.clock,
        stopped=stopper.stopped,
    )
    async with _session(job, 1) as session:
        requester = Requester(job.parts.client(session, config.api_url), pacer, stopper, Concurrency(1, 1))
        sender = Sender(config, requester, breaker, recorder, stopper, job.parts.clock)
        try:
            accepted = await preflight(sender, config.media, "0" * 64)
        except OutageTooLong as exc:
            stopper.request(ExitCode.OUTAGE, str(exc))
            accepted = False
    assert job.summary is not None
    job.summary.requests = requester.requests
    return pacer if accepted else None


#: A stage of the pipeline: a coroutine run for what it does, not for a value.
_Stage = Coroutine[object, object, None]


async def _pipeline(stopper: Stopper, producer: _Stage, workers: list[_Stage]) -> None:
    """The producer and the senders in one TaskGroup.  Each stage catches its own errors (and
    stops the run); one that escapes anyway is a bug: the TaskGroup cancels the others."""
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(producer)
            for worker in workers:
                group.create_task(worker)
    except Exception as exc:
        stopper.fail(exc.exceptions[0] if isinstance(exc, ExceptionGroup) else exc)


async def _wind_down_on_cancel(pipeline: asyncio.Future[None], stopper: Stopper) -> None:
    """Await ``pipeline``.  A cancel of the run stops it as a signal would (or, once it has
    stopped, cuts the grace period short), waits for it to wind down, then propagates; a
    second cancel cancels the pipeline itself."""
    try:
        await asyncio.shield(pipeline)
    except asyncio.CancelledError:
        if stopper.stops:
            stopper.cut_off()
        else:
            stopper.request(ExitCode.SIGINT, "cancelled by the caller")
        await pipeline
        raise

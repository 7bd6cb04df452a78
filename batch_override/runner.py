"""The job: read and plan every row, then send the sendable ones under the pacer, ledger each.

Shape (one TaskGroup, so nothing leaks when one part fails or the run is cancelled)::

    input --(pass 1: validate, index)--> plan --(pass 2: batches)--> queue --> N senders
                                          \\-> immediate ledger lines          \\-> ledger lines

A stop (401/403, wrong URL, failure threshold, outage, signal) makes the producer write every
row it has not handed out as ``aborted`` and lets in-flight requests finish (up to the grace
period), so every input row still gets exactly one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import signal
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.contrib.logging import logging_redirect_tqdm

from . import __version__, runlog
from .apikey import ApiKey
from .breaker import Breaker, OutageTooLong
from .client import BODIES, EMPTY_BODY, Answer, Client, make_session
from .config import Rate, RunConfig
from .errors import BatchOverrideError, ExitCode, InputError
from .keys import make_keys
from .ledger import (
    LedgerLock,
    LedgerWriter,
    LineValues,
    check_ledger_path,
    repair_torn_tail,
    utc_now,
)
from .outcome import Action, Outcome, Verdict
from .pacing import Pacer, retry_after_seconds
from .plan import InputChanged, InputIndex, Plan, index_input, plan_batch
from .progress import Progress
from .resume import ResumeIndex, load_resume_index
from .source import Batch, CorrectionsFile
from .summary import Summary

log = logging.getLogger("batch_override")

_PLAN_LINE = {
    Plan.INVALID: (Outcome.INVALID, "invalid_row", ""),
    Plan.DUPLICATE: (Outcome.DUPLICATE, "", "repeats an earlier row of this input; sent once"),
    Plan.CONFLICT: (
        Outcome.CONFLICT,
        "conflicting_classifications",
        "this (media, hash) appears with both classifications in the input; none sent",
    ),
    Plan.SKIPPED: (Outcome.SKIPPED, "", "accepted in an earlier run"),
    Plan.REJECTED: (
        Outcome.REJECTED,
        "previously_rejected",
        "rejected in an earlier run; --retry-rejected sends it again",
    ),
    Plan.LOCKED: (
        Outcome.REJECTED,
        "classification_locked",
        "an earlier run had the other classification accepted; the server keeps the first",
    ),
}


@dataclass(slots=True)
class Item:
    row: int
    media: str
    hash: str
    classification: str
    carried: tuple[str, ...]
    first_seen: float = math.nan  # unix time of the key's first ledger line (--give-up-after)


class Stop(Exception):
    """Why sending stopped early; carries the exit code."""

    def __init__(self, exit_code: int, reason: str) -> None:
        super().__init__(reason)
        self.exit_code = exit_code
        self.reason = reason


class _Run:
    def __init__(
        self, config: RunConfig, api_key: ApiKey | None, source: CorrectionsFile, run_id: str
    ) -> None:
        self.config = config
        self.api_key = api_key
        self.source = source
        self.run_id = run_id
        self.summary = Summary(
            run_id=self.run_id,
            ledger=str(config.ledger) if config.ledger else None,
            api_url=config.api_url,
            dry_run=config.dry_run,
        )
        if config.ok_outcomes is not None:
            self.summary.ok_outcomes = config.ok_outcomes
        self.stop: Stop | None = None
        self.stopped = asyncio.Event()
        self.ledger: LedgerWriter | None = None
        self.recent: deque[bool] = deque(maxlen=config.failure_window)
        self.last_answer = time.monotonic()
        self.rng = random.Random()
        self.cancel_in_flight: Any = lambda: None
        self.resume = ResumeIndex.empty()
        self.progress: Progress | None = None
        self.retrying: set[int] = set()  # rows waiting on a retry, for the progress bar

    # -- stopping ----------------------------------------------------------------------------
    def request_stop(self, exit_code: int, reason: str) -> None:
        if self.stop is None:
            self.stop = Stop(exit_code, reason)
            self.summary.stop_reason = reason
            self.stopped.set()
            log.error("stopping: %s", reason)

    # -- ledger lines --------------------------------------------------------------------------
    def finish(
        self, item: Item, outcome: Outcome, code: str, status: int | None, attempts: int, msg: str
    ) -> None:
        self.summary.count(outcome, code)
        if self.progress is not None:
            if item.row in self.retrying:
                self.retrying.discard(item.row)
                self.progress.retrying(-1)
            self.progress.advance(outcome.value)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "row %d: %s %s (HTTP %s, %d attempts) %s",
                item.row,
                outcome.value,
                code,
                status,
                attempts,
                msg,
            )
        if self.ledger is not None:
            line = LineValues(
                item.row, item.media, item.hash, item.classification, outcome, code, status, attempts, msg
            )
            self.ledger.write(line, item.carried)

    def immediate(self, batch: Batch, plan: np.ndarray[Any, Any], idx: np.ndarray[Any, Any]) -> None:
        """Ledger lines for rows finished without a request (``idx`` positions in the batch)."""
        if len(idx) == 0:
            return
        codes = plan[idx]
        for code in np.unique(codes).tolist():
            outcome, err, _ = self._line_for(Plan(code))
            self.summary.count(outcome, err, int(np.count_nonzero(codes == code)))
            if self.progress is not None:
                self.progress.advance(outcome.value, int(np.count_nonzero(codes == code)))
        if self.ledger is None:
            return
        take = pa.array(idx)
        messages = np.empty(len(idx), dtype=object)
        outcomes = np.empty(len(idx), dtype=object)
        errors = np.empty(len(idx), dtype=object)
        for code in np.unique(codes).tolist():
            outcome, err, msg = self._line_for(Plan(code))
            sel = codes == code
            outcomes[sel], errors[sel], messages[sel] = outcome.value, err, msg
        invalid = codes == Plan.INVALID
        hashes = batch.hash.take(take)
        classes = batch.classification.take(take)
        media = batch.media.take(take)
        if invalid.any():
            reasons = batch.reasons()
            messages[invalid] = [reasons[i] for i in idx[invalid].tolist()]
            inv = pa.array(invalid)
            hashes = pa.compute.if_else(inv, self.ledger.text_array(batch.raw_hash.take(take)), hashes)
            classes = pa.compute.if_else(
                inv, self.ledger.text_array(batch.raw_classification.take(take)), classes
            )
            if batch.raw_media is not None:
                media = pa.compute.if_else(inv, self.ledger.text_array(batch.raw_media.take(take)), media)
        table = self.ledger.bulk_table(
            rows=batch.start + idx,
            media=media,
            hashes=hashes,
            classes=classes,
            outcomes=pa.array(outcomes, pa.string()),
            error_codes=pa.array(errors, pa.string()),
            messages=pa.array(messages, pa.string()),
            carried=[self.ledger.text_array(c.take(take)) for c in batch.carried],
        )
        self.ledger.write_table(table)

    def _line_for(self, plan: Plan) -> tuple[Outcome, str, str]:
        if plan == Plan.SEND:
            return (Outcome.PLANNED, "", "dry run: not sent")
        if plan == Plan.ABORTED:
            reason = self.stop.reason if self.stop is not None else "stopped"
            return (Outcome.ABORTED, "not_sent", f"not sent: {reason}")
        return _PLAN_LINE[plan]

    def items(self, batch: Batch, idx: np.ndarray[Any, Any]) -> list[Item]:
        take = pa.array(idx)
        media = batch.media.take(take).to_pylist()
        hashes = batch.hash.take(take).to_pylist()
        classes = batch.classification.take(take).to_pylist()
        carried: list[list[str]] = []
        if batch.carried and self.ledger is not None:
            carried = [self.ledger.text_array(c.take(take)).to_pylist() for c in batch.carried]
        rows = (batch.start + idx).tolist()
        items = [
            Item(rows[j], media[j], hashes[j], classes[j], tuple(col[j] for col in carried))
            for j in range(len(rows))
        ]
        if self.resume.first_run is not None:
            seen = self.resume.first_seen_of(
                make_keys(batch.hash.take(take), batch.media.take(take), batch.classification.take(take))
            ).tolist()
            for item, when in zip(items, seen, strict=True):
                item.first_seen = when
        return items


async def _next_batch(iterator: Any) -> Batch | None:
    """The next batch of pass two; None at the end, or when the input cannot be read any more:
    pass one read it whole, so the producer finds it changed (it has fewer batches than planned)."""
    try:
        return await asyncio.to_thread(next, iterator, None)
    except InputError:
        return None


async def run_job_async(config: RunConfig, api_key: ApiKey | None) -> Summary:
    """Run one job to the end and return its summary (``summary.exit_code`` says how it went).

    Raises :class:`~.errors.BatchOverrideError` for problems found before anything is sent
    (unreadable input, ledger mismatch, ledger held by another run).
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
    try:
        return await _run_locked(config, api_key, run_id, started)
    finally:
        if lock is not None:
            lock.release()


async def _run_locked(config: RunConfig, api_key: ApiKey | None, run_id: str, started: float) -> Summary:
    source = await asyncio.to_thread(_open_input, config)
    try:
        index, _ = await asyncio.gather(
            asyncio.to_thread(index_input, source.batches()), asyncio.to_thread(source.compute_sha256)
        )
        run = _Run(config, api_key, source, run_id)
        run.summary.rows = index.rows
        resume = ResumeIndex.empty()
        if config.ledger is not None:
            torn = repair_torn_tail(config.ledger)
            if torn:
                log.warning(
                    "ledger %s: cut off a torn last line (%d bytes) left by an interrupted run",
                    config.ledger,
                    torn,
                )
            run.ledger = LedgerWriter(
                config.ledger,
                source.columns.carried,
                run.run_id,
                neutralize=config.neutralize_formulas,
                fsync_interval=config.fsync_interval,
            )
            fingerprint = api_key.fingerprint if api_key else "-"
            trusted = runlog.trusted_runs(runlog.runlog_path(config.ledger), config.api_url, fingerprint)
            resume = await asyncio.to_thread(
                load_resume_index,
                config.ledger,
                trusted,
                first_seen=config.give_up_after_days is not None,
            )
            run.resume = resume
            runlog.append(runlog.runlog_path(config.ledger), _run_record(run, source, fingerprint, "started"))
        log.info(
            "run %s: %s -> %s (%s); %d rows: %d valid, %d invalid, %d duplicate, %d conflict; "
            "%d already in the ledger index",
            run.run_id,
            source.display,
            config.api_url,
            config.media if not source.columns.media else "per-row media",
            index.rows,
            index.rows - index.invalid,
            index.invalid,
            index.duplicates,
            index.conflicts,
            len(resume),
        )
        try:
            run.progress = Progress(index.rows, enabled=config.progress)
            with logging_redirect_tqdm(loggers=[log]) if run.progress.enabled else contextlib.nullcontext():
                await _send_all(run, index, resume)
        finally:
            if run.progress is not None:
                run.progress.close()
            run.summary.duration = time.monotonic() - started
            run.summary.exit_code = _exit_code(run)
            if run.ledger is not None:
                run.ledger.close()
                assert config.ledger is not None
                record = _run_record(run, source, api_key.fingerprint if api_key else "-", "finished")
                record["summary"] = run.summary.to_dict()
                runlog.append(runlog.runlog_path(config.ledger), record)
        return run.summary
    finally:
        source.close()


def _open_input(config: RunConfig) -> CorrectionsFile:
    if not isinstance(config.input, str):
        from .frames import TableInput  # pandas only for a DataFrame or Table input

        return TableInput(config.input, config)
    return CorrectionsFile(
        config.input,
        hash_column=config.hash_column,
        classification_column=config.classification_column,
        media_column=config.media_column,
        default_media=config.media,
        batch_rows=config.batch_rows,
        label_map=config.label_map,
        encoding=config.encoding,
    )


def _run_record(run: _Run, source: CorrectionsFile, fingerprint: str, event: str) -> dict[str, Any]:
    return {
        "event": event,
        "run_id": run.run_id,
        "api_url": runlog.normalise_url(run.config.api_url),
        "key_fingerprint": fingerprint,
        "tool_version": __version__,
        "user_host": runlog.user_at_host(),
        # A path resolved; "<stdin>", "<DataFrame>" and "<pyarrow.Table>" as they are.
        "input": source.display if source.display.startswith("<") else str(Path(source.display).resolve()),
        "input_sha256": source.sha256,
        "input_rows": run.summary.rows,
        # The input's own names for these columns: the retry file reuses them (report.py).
        "columns": {
            "hash": source.columns.hash,
            "classification": source.columns.classification,
            "media": source.columns.media or run.config.media_column or "media",
        },
        "dry_run": run.config.dry_run,
        "at": utc_now(),
    }


def _exit_code(run: _Run) -> int:
    if run.stop is not None:
        return run.stop.exit_code
    return ExitCode.OK if run.summary.all_succeeded else ExitCode.SOME_ROWS_FAILED


async def _send_all(run: _Run, index: InputIndex, resume: ResumeIndex) -> None:
    config = run.config
    if config.dry_run or run.api_key is None:
        await _produce(run, index, resume, queue=None)
        return
    rate = None if config.rate == "auto" else config.rate
    assert rate is None or isinstance(rate, Rate)
    pacer = Pacer(rate, headroom=config.headroom, stopped=run.stopped)
    breaker = Breaker(
        max(3, config.concurrency),
        rows_needed=min(3, max(2, config.concurrency)),
        max_outage=config.max_outage,
        backoff_base=config.backoff_base,
        stopped=run.stopped,
    )
    queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=config.concurrency * 4)
    async with make_session(
        run.api_key, concurrency=config.concurrency, timeout=config.timeout, ca_bundle=config.ca_bundle
    ) as session:
        client = Client(session, config.api_url)
        sender = _Sender(run, client, pacer, breaker)
        with _signals(run):
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(_produce(run, index, resume, queue))
                    for _ in range(config.concurrency):
                        group.create_task(sender.work(queue))
            finally:
                run.summary.throttled = pacer.throttled
                run.summary.requests = sender.requests


@contextlib.contextmanager
def _signals(run: _Run) -> Any:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(signum: int) -> None:
        code = ExitCode.SIGINT if signum == signal.SIGINT else ExitCode.SIGTERM
        if run.stop is not None and run.stop.reason.startswith("signal"):
            log.error("second signal: exiting at once")
            if run.ledger is not None:
                run.ledger.close()
            os._exit(code)
        run.request_stop(
            code,
            f"signal {signal.Signals(signum).name}: finishing in-flight rows, recording the rest as aborted",
        )
        loop.call_later(run.config.grace, run.cancel_in_flight)

    for signum in (signal.SIGINT, signal.SIGTERM):
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


async def _produce(
    run: _Run, index: InputIndex, resume: ResumeIndex, queue: asyncio.Queue[Item | None] | None
) -> None:
    """Pass two: plan each batch, write immediate lines, hand sendable rows to the senders."""
    config = run.config
    iterator = iter(run.source.batches())
    first_valid = 0
    to_send = 0
    limit_reached = False
    # Read one batch ahead: pyarrow reads and normalises the next batch (in a thread, mostly
    # outside the GIL) while this one is planned and ledgered.
    ahead = asyncio.ensure_future(_next_batch(iterator))
    number = 0
    try:
        while (batch := await ahead) is not None:
            ahead = asyncio.ensure_future(_next_batch(iterator))
            index.check_batch(
                number, batch, display=run.source.display, handed_out=queue is not None and to_send > 0
            )
            number += 1
            if limit_reached:
                run.summary.not_attempted += len(batch)
                continue
            plan = plan_batch(batch, first_valid, index, resume, retry_rejected=config.retry_rejected)
            first_valid += int(np.count_nonzero(batch.valid))
            send_at = np.flatnonzero(plan == Plan.SEND)
            if config.limit is not None and to_send + len(send_at) > config.limit:
                keep = config.limit - to_send
                cut = int(send_at[keep]) if keep < len(send_at) else len(plan)
                run.summary.not_attempted += len(plan) - cut
                plan, send_at = plan[:cut], send_at[:keep]
                limit_reached = True
            to_send += len(send_at)
            if queue is None:
                run.immediate(batch, plan, np.arange(len(plan)))
                continue
            run.immediate(batch, plan, np.flatnonzero(plan != Plan.SEND))
            if len(send_at) == 0:
                continue
            if run.stop is not None:
                plan[send_at] = Plan.ABORTED
                run.immediate(batch, plan, send_at)
                continue
            for item in run.items(batch, send_at):
                if run.stop is not None:
                    _abort_items(run, [item])
                    continue
                await queue.put(item)
        index.check_batch(
            number, None, display=run.source.display, handed_out=queue is not None and to_send > 0
        )
    except InputChanged as exc:  # the rows from here on are not the rows planned: none gets a line
        run.request_stop(exc.exit_code, str(exc))
    finally:
        if not ahead.done():
            ahead.cancel()
        if queue is not None:
            for _ in range(config.concurrency):
                await queue.put(None)


def _abort_items(run: _Run, items: Sequence[Item]) -> None:
    reason = run.stop.reason if run.stop is not None else "stopped"
    for item in items:
        run.finish(item, Outcome.ABORTED, "not_sent", None, 0, f"not sent: {reason}")


class _Sender:
    """The senders' shared state: pacing, the outage breaker, the failure threshold."""

    def __init__(self, run: _Run, client: Client, pacer: Pacer, breaker: Breaker) -> None:
        self.run = run
        self.client = client
        self.pacer = pacer
        self.breaker = breaker
        self.requests = 0
        self._preflight_lock = asyncio.Lock()
        self._preflight_done = not run.config.preflight
        self._in_flight: set[asyncio.Task[Any]] = set()  # senders awaiting an answer
        self._grace_over = False
        run.cancel_in_flight = self.cancel_in_flight

    def cancel_in_flight(self) -> None:
        """The grace period is over: cut off the requests still in flight."""
        self._grace_over = True
        for task in list(self._in_flight):
            task.cancel()

    async def work(self, queue: asyncio.Queue[Item | None]) -> None:
        while (item := await queue.get()) is not None:
            try:
                await self._work_on(item)
            except OutageTooLong as exc:
                self.run.request_stop(ExitCode.OUTAGE, str(exc))
                _abort_items(self.run, [item])

    async def _work_on(self, item: Item) -> None:
        if self.run.stop is None and not self._preflight_done:
            async with self._preflight_lock:
                if not self._preflight_done:
                    await self._preflight(item)
                    self._preflight_done = True
        if self.run.stop is not None:
            _abort_items(self.run, [item])
            return
        await self._process(item)

    async def _attempt(self, media: str, sha256: str, body: bytes) -> Answer | None:
        """One request under the pacer; None when the run stopped before it could be sent, and
        :data:`_INTERRUPTED` when the grace period after a signal cut it off in flight."""
        ticket = await self.pacer.acquire()
        if ticket is None:
            return None
        self.requests += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("POST %s %s (%d bytes)", media, sha256, len(body))
        # The sender itself is what the grace period cancels (no extra task per request).
        sender = asyncio.current_task()
        assert sender is not None
        self._in_flight.add(sender)
        try:
            answer = await self.client.post(media, sha256, body)
        except asyncio.CancelledError:
            if self._grace_over and sender.uncancel() == 0:
                return _INTERRUPTED
            raise
        finally:
            self._in_flight.discard(sender)
        self.pacer.observe(ticket, answer.status, answer.headers)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "  -> %s %s in %.0f ms",
                answer.status or "no answer",
                answer.verdict.error_code or answer.verdict.outcome.value,
                (time.monotonic() - ticket.sent_at) * 1000,
            )
        return answer

    async def _preflight(self, item: Item) -> None:
        """An empty body proves the key works (validation 400) without recording anything."""
        config = self.run.config
        tries = 0
        while self.run.stop is None:
            tries += 1
            probe = await self.breaker.wait_turn()
            answer = await self._attempt(item.media, item.hash, EMPTY_BODY)
            if answer is None or answer is _INTERRUPTED:
                return
            verdict = answer.verdict
            if verdict.action is Action.ABORT:
                self.run.request_stop(ExitCode.ABORTED, f"preflight: {_why(answer)}")
                return
            if verdict.action is Action.RETRY:
                # Nothing else is in flight: each failed try stands for another sender.
                self.breaker.failed(verdict.error_code, probe, row=-tries)
                await self._backoff(0)
                continue
            self.breaker.succeeded(probe)
            if verdict.action is Action.THROTTLED:
                self._check_wait(answer)
                continue
            log.info(
                "preflight: the key is accepted by %s (pacing %s)", config.api_url, self.pacer.describe()
            )
            return

    async def _process(self, item: Item) -> None:
        run, config = self.run, self.run.config
        attempts = retries = 0
        body = BODIES[item.classification]
        last: Answer | None = None
        while True:
            if run.stop is not None and attempts > 0 and last is not None:
                # Stopping: a row mid-retry ends with its last answer, not another attempt.
                self._finish(item, last, attempts)
                return
            if run.stop is not None:
                _abort_items(run, [item])
                return
            try:
                probe = await self.breaker.wait_turn() if self.breaker.is_open else False
            except OutageTooLong as exc:
                run.request_stop(ExitCode.OUTAGE, str(exc))
                continue
            answer = await self._attempt(item.media, item.hash, body)
            if answer is None:
                continue  # stopped before sending: the checks above end the row
            if answer is _INTERRUPTED:
                self._finish(item, answer, attempts + 1)
                return
            attempts += 1
            last = answer
            verdict = answer.verdict
            if verdict.action in (Action.RETRY, Action.THROTTLED) and item.row not in run.retrying:
                run.retrying.add(item.row)
                if run.progress is not None:
                    run.progress.retrying(+1)
            if verdict.action is Action.RETRY:
                in_outage = self.breaker.failed(verdict.error_code, probe, item.row)
                if not in_outage:
                    retries += 1
                    if retries > config.max_retries:
                        self._finish(item, answer, attempts)
                        return
                    await self._backoff(retries - 1)
                continue
            self.breaker.succeeded(probe)
            if verdict.action is Action.THROTTLED:
                self._check_wait(answer)
                continue
            run.last_answer = time.monotonic()
            if verdict.action is Action.ABORT:
                self._finish(item, answer, attempts)
                run.request_stop(ExitCode.ABORTED, _why(answer))
                return
            self._finish(item, answer, attempts)
            return

    def _finish(self, item: Item, answer: Answer, attempts: int) -> None:
        verdict = answer.verdict
        outcome, code, message = verdict.outcome, verdict.error_code, verdict.message
        days = self.run.config.give_up_after_days
        if outcome is Outcome.NOT_READY and days is not None and time.time() - item.first_seen > days * 86400:
            since = time.strftime("%Y-%m-%d", time.gmtime(item.first_seen))
            outcome, code = Outcome.REJECTED, "gave_up"
            message = f"not ready since {since}; gave up after {days:g} days (--give-up-after): {message}"
        self.run.finish(item, outcome, code, answer.status, attempts, message)
        self._count_failure(verdict.outcome in (Outcome.FAILED, Outcome.REJECTED))

    def _count_failure(self, failed: bool) -> None:
        run, config = self.run, self.run.config
        run.recent.append(failed)
        if len(run.recent) == config.failure_window:
            rate = sum(run.recent) / len(run.recent)
            if rate > config.max_failure_rate:
                run.request_stop(
                    ExitCode.ABORTED,
                    f"{rate:.0%} of the last {len(run.recent)} rows failed or were rejected "
                    f"(--max-failure-rate {config.max_failure_rate:g}): wrong --media, key or input?",
                )

    def _check_wait(self, answer: Answer) -> None:
        config = self.run.config
        wait = retry_after_seconds(answer.headers)
        if wait is not None and wait > config.max_wait:
            self.run.request_stop(
                ExitCode.OUTAGE,
                f"the server asks to wait {wait:.0f}s (> --max-wait {config.max_wait:g}s): quota spent?",
            )
        elif time.monotonic() - self.run.last_answer > config.max_outage:
            self.run.request_stop(ExitCode.OUTAGE, f"throttled for over --max-outage {config.max_outage:g}s")

    async def _backoff(self, n: int) -> None:
        config = self.run.config
        delay = min(config.backoff_cap, config.backoff_base * 2**n) * self.run.rng.uniform(0.5, 1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.run.stopped.wait(), timeout=delay)


_INTERRUPTED = Answer(
    Verdict(
        Outcome.ABORTED,
        "interrupted",
        Action.DONE,
        "request cut off at the end of the grace period; a rerun sends it again",
    ),
    None,
    {},
)


def _why(answer: Answer) -> str:
    verdict = answer.verdict
    hints = {
        "unauthorized": "the API key was refused (401): check IDENTIFAI_API_KEY / --api-key-file",
        "forbidden": "the key is not allowed (403): API access or terms of service",
        "not_found": "404 from the server: is --api-url right?",
        "method_not_allowed": "405 from the server: is --api-url right?",
        "redirect": f"HTTP {answer.status} redirect (not followed): is --api-url right?",
        "tls_error": "the server's TLS certificate is not trusted: use --ca-bundle PEM or SSL_CERT_FILE",
    }
    return hints.get(verdict.error_code, f"{verdict.error_code}: {verdict.message}")

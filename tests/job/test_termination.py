"""No path through the job waits forever: every failure ends the run within --grace plus 2 s.

Each case runs the job in-process against a small loopback server, with a fault injected
through :class:`~batch_override.job.parts.Parts` (a ledger writer whose k-th write fails, a client,
pacer or input whose k-th call raises) or a cancel at the k-th request or ledger write.  Every
case must return within 2 s with the lock released and the run log's finish record written; and,
unless the ledger itself failed, every row must have exactly one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from batch_override.apikey import ApiKey
from batch_override.config import Rate, RunConfig
from batch_override.emulator import DEMO_API_KEY
from batch_override.input.batch import Batch, InputOptions
from batch_override.input.file_input import CorrectionsFile
from batch_override.job.parts import Parts
from batch_override.job.runner import run_job_async
from batch_override.ledger import runlog
from batch_override.ledger.writer import LedgerLock, LedgerWriter
from batch_override.pacing.pacer import Pacer, Ticket
from batch_override.sending.client import Answer, Client
from batch_override.summary import Summary
from tests.support import latest, read_ledger, serve_app, sha, write_csv

ROWS = 40
GRACE = 0.2
#: Not a hang: a run that is stopped ends within --grace and a moment; the grace itself is checked
#: on a virtual clock (tests/test_stopping.py), so a loaded machine never fails a verdict here.
DEADLINE = 30.0
KEY = ApiKey(DEMO_API_KEY)


@dataclass
class Server:
    """Answers 201 after ``latency`` seconds (``hold``: never, until the test ends)."""

    latency: float = 0.02
    hold: bool = False
    hits: int = 0
    url: str = ""
    _marks: dict[int, asyncio.Event] = field(default_factory=dict)
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def reached(self, k: int) -> asyncio.Event:
        """Set once the k-th request has arrived."""
        event = self._marks.setdefault(k, asyncio.Event())
        if self.hits >= k:
            event.set()
        return event

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.hits += 1
        for k, event in self._marks.items():
            if self.hits >= k:
                event.set()
        if self.hold:
            await self._release.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.latency)
        return web.json_response({"classification": "human"}, status=201)


@contextlib.asynccontextmanager
async def serve(**kw: Any) -> AsyncIterator[Server]:
    server = Server(**kw)
    app = web.Application()
    app.router.add_post("/api/{endpoint}/{hash}/override", server.handle)
    async with serve_app(app, shutdown_timeout=0.5) as server.url:
        try:
            yield server
        finally:
            server._release.set()


def make_config(tmp_path: Path, url: str, **kw: Any) -> RunConfig:
    # Every fifth row is invalid and every seventh repeats the one before it, so that the
    # producer writes ledger lines of its own (in bulk) between the senders' lines.
    rows: list[tuple[str, str]] = []
    for i in range(ROWS):
        if i % 5 == 4:
            rows.append(("not-a-hash", "human"))
        elif i % 7 == 6:
            rows.append(rows[-1])
        else:
            rows.append((sha(i), "human"))
    corrections = write_csv(tmp_path / "c.csv", rows)
    settings: dict[str, Any] = {
        "rate": Rate(1000, 1.0),
        "concurrency": 3,
        "grace": GRACE,
        "preflight": False,
        "batch_rows": 6,
        "backoff_base": 0.01,
    }
    settings.update(kw)
    return RunConfig(input=str(corrections), ledger=tmp_path / "l.csv", api_url=url, **settings)


def assert_lock_released(ledger: Path) -> None:
    lock = LedgerLock(ledger)
    lock.acquire({"pid": 0})  # raises LedgerLocked while a run still holds it
    lock.release()


def finish_record(ledger: Path) -> dict[str, Any]:
    records = [r for r in runlog.records(runlog.runlog_path(ledger)) if r.get("event") == "finished"]
    assert records, "no finish record in the run log"
    return records[-1]


def assert_every_row_once(ledger: Path) -> None:
    """Every row at most one line, and the rows without one counted ``not_attempted``."""
    rows = sorted(read_ledger(ledger)["row"])
    assert len(set(rows)) == len(rows) and set(rows) <= set(range(ROWS))
    summary = finish_record(ledger)["summary"]
    assert len(rows) + summary["not_attempted"] == ROWS == summary["rows"]


async def ends_within_deadline(run: asyncio.Future[Summary], started: float) -> Summary | BaseException:
    """The run's summary or what it raised, failing if it took longer than the deadline."""
    try:
        result: Summary | BaseException = await asyncio.wait_for(asyncio.shield(run), DEADLINE)
    except (asyncio.CancelledError, Exception) as exc:
        result = exc
    elapsed = time.monotonic() - started
    assert run.done(), f"the run is still going after {elapsed:.2f}s"
    return result


async def cancel_when(event: asyncio.Event, run: asyncio.Future[Summary]) -> Summary | BaseException:
    """Cancel ``run`` as soon as ``event`` is set; what it ended with, within the deadline."""
    await asyncio.wait_for(event.wait(), 10)
    started = time.monotonic()
    run.cancel()
    return await ends_within_deadline(run, started)


# -- a cancel from the Python API ---------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 5, 12])
async def test_cancelling_the_run_after_the_kth_request_records_every_row_and_reraises(
    tmp_path: Path, k: int
) -> None:
    async with serve(latency=0.05) as server:
        config = make_config(tmp_path, server.url)
        result = await cancel_when(server.reached(k), asyncio.ensure_future(run_job_async(config, KEY)))
    assert isinstance(result, asyncio.CancelledError)
    assert_lock_released(config.ledger)  # type: ignore[arg-type]
    assert_every_row_once(config.ledger)  # type: ignore[arg-type]
    outcomes = set(read_ledger(config.ledger)["outcome"])  # type: ignore[arg-type]
    assert outcomes <= {"submitted", "aborted", "invalid", "duplicate"}
    summary = finish_record(config.ledger)["summary"]  # type: ignore[arg-type]
    assert summary["exit_code"] == 130 and summary["not_attempted"] > 0  # the rest: no line, counted


class MarkingWriter(LedgerWriter):
    """A ledger writer that calls ``then()`` at its k-th write and raises ``error`` there (if any)."""

    def __init__(self, *args: Any, at: int, then: Callable[[], None] = lambda: None,
                 error: BaseException | None = None, **kw: Any) -> None:  # fmt: skip
        self.at, self.then, self.error, self.calls = at, then, error, 0
        super().__init__(*args, **kw)

    def _write_some(self, fd: int, data: memoryview) -> int:
        self.calls += 1
        if self.calls == self.at:
            self.then()
            if self.error is not None:
                raise self.error
        return super()._write_some(fd, data)


@pytest.mark.parametrize("k", [2, 4, 9])
async def test_cancelling_the_run_after_the_kth_ledger_write_records_every_row_and_reraises(
    tmp_path: Path, k: int
) -> None:
    written = asyncio.Event()
    parts = Parts(ledger_writer=functools.partial(MarkingWriter, at=k, then=written.set))
    async with serve(latency=0.05) as server:
        config = make_config(tmp_path, server.url)
        result = await cancel_when(written, asyncio.ensure_future(run_job_async(config, KEY, parts)))
    assert isinstance(result, asyncio.CancelledError)
    assert_lock_released(config.ledger)  # type: ignore[arg-type]
    assert_every_row_once(config.ledger)  # type: ignore[arg-type]


async def test_wait_for_on_a_run_with_requests_that_never_answer_returns_on_time(tmp_path: Path) -> None:
    async with serve(hold=True) as server:
        config = make_config(tmp_path, server.url)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run_job_async(config, KEY), 1.0)
        assert time.monotonic() - started < 1.0 + DEADLINE
    assert_lock_released(config.ledger)  # type: ignore[arg-type]
    lines = read_ledger(config.ledger)  # type: ignore[arg-type]
    assert_every_row_once(config.ledger)  # type: ignore[arg-type]
    assert set(lines["error_code"].dropna()) <= {"interrupted", "invalid_row"}


class SlowSource(CorrectionsFile):
    """Pass one pauses at batch ``at`` until the test lets it go, after telling the test."""

    def __init__(
        self, *args: Any, at: int, paused: Callable[[], object], go: threading.Event, **kw: Any
    ) -> None:
        self.at, self.paused, self.go, self.passes, self.read = at, paused, go, 0, 0
        super().__init__(*args, **kw)

    def batches(self) -> Iterator[Batch]:
        self.passes += 1
        for n, batch in enumerate(super().batches()):
            if self.passes == 1 and n == self.at:
                self.paused()
                self.go.wait(10)
            self.read += 1
            yield batch


@dataclass
class PausedRead:
    """A run started on a 20-batch input and held inside pass 1, after its second batch."""

    run: asyncio.Future[Summary]
    config: RunConfig
    source: SlowSource
    go: threading.Event


@contextlib.asynccontextmanager
async def run_paused_in_pass_one(tmp_path: Path, server: Server) -> AsyncIterator[PausedRead]:
    loop = asyncio.get_running_loop()
    paused, go = asyncio.Event(), threading.Event()
    sources: list[SlowSource] = []

    def source(config: RunConfig, halted: threading.Event) -> SlowSource:
        paused_now = lambda: loop.call_soon_threadsafe(paused.set)  # noqa: E731 - called from the reader thread
        sources.append(SlowSource(str(config.input), InputOptions.of(config), at=1, paused=paused_now, go=go))
        return sources[-1]

    config = make_config(tmp_path, server.url, batch_rows=2)
    run = asyncio.ensure_future(run_job_async(config, KEY, Parts(source=source), handle_signals=True))
    try:
        await asyncio.wait_for(paused.wait(), 10)
        yield PausedRead(run, config, sources[0], go)
    finally:
        go.set()


async def test_cancelling_the_run_while_it_reads_the_input_ends_reading_at_the_next_batch(
    tmp_path: Path,
) -> None:
    async with serve() as server, run_paused_in_pass_one(tmp_path, server) as paused:
        started = time.monotonic()
        paused.run.cancel()
        for _ in range(3):  # loop turns, not time: the cancel reaches the reader's task first
            await asyncio.sleep(0)
        paused.go.set()
        result = await ends_within_deadline(paused.run, started)
        assert server.hits == 0
    assert isinstance(result, asyncio.CancelledError)
    assert paused.source.read <= 3  # of 20 batches: reading stopped at once
    assert_lock_released(paused.config.ledger)  # type: ignore[arg-type]


async def test_a_sigterm_while_the_input_is_read_ends_the_run_before_anything_is_sent_or_written(
    tmp_path: Path,
) -> None:
    async with serve() as server, run_paused_in_pass_one(tmp_path, server) as paused:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None):
            paused.go.set()
            await paused.run
            pytest.skip("the run could not install its signal handlers here (not the main thread)")
        started = time.monotonic()
        signal.raise_signal(signal.SIGTERM)  # handled by the run's loop, not by the default action
        for _ in range(5):  # loop turns, not time: the handler runs before reading goes on
            await asyncio.sleep(0)
        paused.go.set()
        result = await ends_within_deadline(paused.run, started)
        assert server.hits == 0
    assert isinstance(result, Summary), result
    assert result.exit_code == 143
    assert paused.source.read <= 3
    assert not paused.config.ledger.exists()  # type: ignore[union-attr]
    assert_lock_released(paused.config.ledger)  # type: ignore[arg-type]


# -- a stage that raises ----------------------------------------------------------------------


class FailingClient(Client):
    def __init__(self, *args: Any, at: int, **kw: Any) -> None:
        self.at, self.calls = at, 0
        super().__init__(*args, **kw)

    async def post(self, media: str, sha256: str, body: bytes) -> Answer:
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("a bug in the sender")
        return await super().post(media, sha256, body)


class FailingPacer(Pacer):
    def __init__(self, *args: Any, at: int, **kw: Any) -> None:
        self.at, self.calls = at, 0
        super().__init__(*args, **kw)

    async def acquire(self) -> Ticket | None:
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("a bug in the pacer")
        return await super().acquire()


class FailingSource(CorrectionsFile):
    """Pass two raises at batch ``at``."""

    def __init__(self, *args: Any, at: int, **kw: Any) -> None:
        self.at, self.passes = at, 0
        super().__init__(*args, **kw)

    def batches(self) -> Iterator[Batch]:
        self.passes += 1
        for n, batch in enumerate(super().batches()):
            if self.passes == 2 and n == self.at:
                raise RuntimeError("a bug in the producer")
            yield batch


STAGES = {
    "sender": lambda k: Parts(client=functools.partial(FailingClient, at=k)),
    "pacer": lambda k: Parts(pacer=functools.partial(FailingPacer, at=k)),
    "producer": lambda k: Parts(
        source=lambda config, halted: FailingSource(str(config.input), InputOptions.of(config), at=k)
    ),
    "ledger writer": lambda k: Parts(
        ledger_writer=functools.partial(MarkingWriter, at=k, error=RuntimeError("a bug in the writer"))
    ),
}


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("stage", list(STAGES))
async def test_a_bug_in_any_stage_ends_the_run_with_exit_70_and_the_lock_released(
    tmp_path: Path, stage: str, k: int
) -> None:
    async with serve() as server:
        config = make_config(tmp_path, server.url)
        started = time.monotonic()
        run = asyncio.ensure_future(run_job_async(config, KEY, STAGES[stage](k + 1)))
        result = await ends_within_deadline(run, started)
    assert isinstance(result, RuntimeError), result
    assert_lock_released(config.ledger)  # type: ignore[arg-type]
    assert finish_record(config.ledger)["summary"]["exit_code"] == 70  # type: ignore[arg-type]
    lines = read_ledger(config.ledger)  # type: ignore[arg-type]
    assert not lines["row"].duplicated().any()
    if stage in ("sender", "pacer"):
        assert_every_row_once(config.ledger)  # type: ignore[arg-type]  # the rest counted not_attempted


# -- a ledger that cannot be written ------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 8])
async def test_a_full_disk_stops_the_run_with_exit_6_writes_nothing_more_and_the_rerun_completes(
    tmp_path: Path, k: int
) -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    async with serve() as server:
        config = make_config(tmp_path, server.url)
        ledger = config.ledger
        assert ledger is not None
        writers: list[MarkingWriter] = []

        def writer(*args: Any, **kw: Any) -> MarkingWriter:
            writers.append(MarkingWriter(*args, at=k + 1, error=full, **kw))  # +1: the header
            return writers[-1]

        started = time.monotonic()
        run = asyncio.ensure_future(run_job_async(config, KEY, Parts(ledger_writer=writer)))
        result = await ends_within_deadline(run, started)
        assert isinstance(result, Summary), result
        assert result.exit_code == 6
        assert str(ledger) in result.stop_reason and "No space left on device" in result.stop_reason
        assert writers[0].calls == k + 1  # not one write after the failed one
        assert_lock_released(ledger)
        assert finish_record(ledger)["summary"]["exit_code"] == 6

        rerun = await asyncio.wait_for(run_job_async(config, KEY), 30)
    assert rerun.exit_code == 1  # the invalid rows
    final = latest(read_ledger(ledger))
    assert list(final["row"]) == list(range(ROWS))
    assert set(final["outcome"]) <= {"submitted", "skipped", "invalid", "duplicate"}


async def test_a_disk_that_fills_up_at_the_header_is_exit_6_before_anything_is_sent(tmp_path: Path) -> None:
    from batch_override.errors import LedgerWriteError

    full = OSError(errno.ENOSPC, "No space left on device")
    async with serve() as server:
        config = make_config(tmp_path, server.url)
        with pytest.raises(LedgerWriteError) as raised:
            await asyncio.wait_for(
                run_job_async(
                    config, KEY, Parts(ledger_writer=functools.partial(MarkingWriter, at=1, error=full))
                ),
                5,
            )
        assert server.hits == 0
    assert raised.value.exit_code == 6
    assert_lock_released(config.ledger)  # type: ignore[arg-type]

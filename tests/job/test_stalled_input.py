"""A stop while the input is still being read: standard input or a FIFO whose producer never
closes its end, an object store that stopped answering.  A StopHandle, a deadline or a cancel
ends the run at once (bounded by ``--grace`` and a moment), nothing sent, the lock released and
the temporary copy removed (the signal, a process's own, is tests/cli/test_termination.py's)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from batch_override import StopHandle
from batch_override.apikey import ApiKey
from batch_override.config import RunConfig
from batch_override.emulator import DEMO_API_KEY
from batch_override.errors import ExitCode
from batch_override.job.runner import run_job_async
from batch_override.ledger.writer import LedgerLock
from batch_override.summary import Summary
from tests.object_stores import aws_env
from tests.support import serve_app, sha

__all__ = ["aws_env"]  # a fixture

KEY = ApiKey(DEMO_API_KEY)
GRACE = 0.2
HEADER_AND_A_ROW = f"hash,classification\n{sha(0)},human\n".encode()


@contextlib.asynccontextmanager
async def api() -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback API that counts what it is sent (nothing, here)."""
    hits: list[str] = []

    async def any_request(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({}, status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_request)
    async with serve_app(app) as url:
        yield url, hits


@contextlib.contextmanager
def stalled_fifo(tmp_path: Path, writer: bool) -> Iterator[Path]:
    """A FIFO whose producer wrote a header and a row and never closes it (``writer``), or that
    no producer ever opens.  At the end a producer comes and goes, so that a thread the run
    abandoned in ``open`` returns (and, seeing the run stopped, removes what it made)."""
    fifo = tmp_path / "corrections.csv"
    os.mkfifo(fifo)
    held = os.open(fifo, os.O_RDWR) if writer else None  # O_RDWR: no wait for a reader
    if held is not None:
        os.write(held, HEADER_AND_A_ROW)
    try:
        yield fifo
    finally:
        if held is not None:
            os.close(held)
        with contextlib.suppress(OSError):  # no reader left: nobody to wake
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@contextlib.contextmanager
def stalled_stdin(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``run -`` on a pipe whose producer wrote a header and a row and never closes it."""
    read_end, write_end = os.pipe()
    os.write(write_end, HEADER_AND_A_ROW)
    stdin = open(read_end, encoding="utf-8")  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdin", stdin)
    try:
        yield "-"
    finally:
        os.close(write_end)
        stdin.close()


def config(tmp_path: Path, url: str, source: str, **kw: Any) -> RunConfig:
    return RunConfig(input=source, ledger=tmp_path / "l.csv", api_url=url, grace=GRACE, **kw)


def assert_ended_cleanly(summary: Summary, tmp_path: Path, spool: Path, hits: list[str]) -> None:
    assert summary.rows == 0 and hits == []  # nothing read, nothing sent
    assert not (tmp_path / "l.csv").exists()  # nothing written
    assert list(spool.iterdir()) == []  # the temporary copy is gone
    lock = LedgerLock(tmp_path / "l.csv")
    lock.acquire({"pid": 0})  # raises LedgerLocked while the run still holds it
    lock.release()


async def copying(spool: Path) -> None:
    """Until the run has begun its copy (its folder exists)."""
    while not any(spool.iterdir()):
        await asyncio.sleep(0.01)


async def stopped_within_bounds(run: asyncio.Future[Summary]) -> Summary:
    """The run's summary; ``--grace`` + 2 s is the promise, 10 s only says "not a hang"."""
    return await asyncio.wait_for(run, 10)


@pytest.mark.parametrize("stream", ["stdin pipe", "fifo with a writer", "fifo without a writer"])
async def test_a_stop_handle_ends_a_run_whose_input_stream_stalls(
    tmp_path: Path, spool: Path, monkeypatch: pytest.MonkeyPatch, stream: str
) -> None:
    handle = StopHandle()
    with (
        stalled_stdin(monkeypatch)
        if stream == "stdin pipe"
        else stalled_fifo(tmp_path, writer=stream == "fifo with a writer")
    ) as source:
        async with api() as (url, hits):
            run = asyncio.ensure_future(run_job_async(config(tmp_path, url, str(source)), KEY, stop=handle))
            if stream != "fifo without a writer":  # no copy begins before a writer opens it
                await asyncio.wait_for(copying(spool), 10)
            for _ in range(5):  # loop turns: the run has attached the handle
                await asyncio.sleep(0)
            handle.stop("the Stop button")
            summary = await stopped_within_bounds(run)
        assert (summary.exit_code, summary.stop_reason) == (ExitCode.SIGINT, "the Stop button")
        assert_ended_cleanly(summary, tmp_path, spool, hits)


async def test_a_deadline_ends_a_run_whose_input_stream_stalls(tmp_path: Path, spool: Path) -> None:
    with stalled_fifo(tmp_path, writer=True) as fifo:
        async with api() as (url, hits):
            started = time.monotonic()
            summary = await stopped_within_bounds(
                asyncio.ensure_future(
                    run_job_async(config(tmp_path, url, str(fifo), max_duration="0.3s"), KEY)
                )
            )
            assert time.monotonic() - started >= 0.3
    assert summary.exit_code == ExitCode.DEADLINE
    assert_ended_cleanly(summary, tmp_path, spool, hits)


async def test_a_cancel_by_the_host_ends_a_run_whose_input_stream_stalls(tmp_path: Path, spool: Path) -> None:
    with stalled_fifo(tmp_path, writer=True) as fifo:
        async with api() as (url, hits):
            run = asyncio.ensure_future(run_job_async(config(tmp_path, url, str(fifo)), KEY))
            await asyncio.wait_for(copying(spool), 10)
            run.cancel()  # what asyncio.wait_for, or a host's exception under asyncio.run, does
            with pytest.raises(asyncio.CancelledError):
                await stopped_within_bounds(run)
    assert list(spool.iterdir()) == []
    assert hits == [] and not (tmp_path / "l.csv").exists()
    lock = LedgerLock(tmp_path / "l.csv")
    lock.acquire({"pid": 0})
    lock.release()


@contextlib.asynccontextmanager
async def silent_store() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An S3 endpoint that takes every request and never answers (until it is shut down)."""
    asked, closing = asyncio.Event(), asyncio.Event()

    async def never_answer(request: web.Request) -> web.Response:
        asked.set()
        await closing.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", never_answer)
    try:
        async with serve_app(app, shutdown_timeout=0.1) as url:
            yield url, asked
    finally:
        closing.set()


async def test_a_stop_handle_ends_a_run_whose_object_store_stopped_answering(
    tmp_path: Path, spool: Path, aws_env: dict[str, str]
) -> None:
    handle = StopHandle()
    async with silent_store() as (store, asked), api() as (url, hits):
        cfg = config(tmp_path, url, "s3://corrections/c.csv", s3_endpoint=store, s3_region="us-east-1")
        run = asyncio.ensure_future(run_job_async(cfg, KEY, stop=handle))
        await asyncio.wait_for(asked.wait(), 10)
        handle.stop("the Stop button")
        summary = await stopped_within_bounds(run)
        assert summary.exit_code == ExitCode.SIGINT
        assert_ended_cleanly(summary, tmp_path, spool, hits)
    assert threading.active_count() < 50  # the abandoned reader is one daemon thread, not a pool

"""A nightly rerun costs what its new work costs: rows the run never attempts are counted, not
ledgered, and resume reads a state beside the ledger that is rebuilt whenever it does not fit."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from batch_override import run_job
from batch_override.apikey import ApiKey
from batch_override.cli.metrics import render_metrics
from batch_override.config import Rate, RunConfig
from batch_override.emulator import DEMO_API_KEY
from batch_override.job.runner import run_job_async
from batch_override.ledger import runlog
from batch_override.ledger import state as resume_state
from batch_override.ledger.lock import LedgerLock
from batch_override.report.run_report import summarize
from batch_override.stopping import StopHandle
from batch_override.summary import Summary
from tests.job.support import Hit, scripted
from tests.support import read_ledger, sha, write_csv


def config(tmp_path: Path, url: str, rows: int, **kw: Any) -> RunConfig:
    corrections = tmp_path / "c.csv"
    if not corrections.exists():
        write_csv(corrections, [(sha(i), "human") for i in range(rows)])
    settings: dict[str, Any] = {"rate": Rate(10_000, 1.0), "backoff_base": 0.01, "concurrency": 4}
    settings.update(kw)
    return RunConfig(input=str(corrections), ledger=tmp_path / "l.csv", api_url=url, **settings)


async def run(cfg: RunConfig, **kw: Any) -> Summary:
    return await asyncio.wait_for(run_job_async(cfg, ApiKey(DEMO_API_KEY), **kw), 30)


def lines(ledger: Path) -> int:
    return len(ledger.read_bytes().splitlines()) - 1


def finished(ledger: Path) -> runlog.RunSummary:
    records = list(runlog.read_records(runlog.runlog_path(ledger)))
    summary = records[-1].summary
    assert records[-1].event == runlog.FINISHED and summary is not None
    return summary


def adds_up(summary: Summary | runlog.RunSummary) -> bool:
    return summary.rows == sum(summary.outcomes.values()) + summary.not_attempted


async def test_the_rerun_of_a_done_file_writes_no_line_and_counts_skipped_in_summary_runlog_metrics_report(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    cfg = config(tmp_path, emulator.url, 50)
    await run(cfg)
    size = cfg.ledger.stat().st_size  # type: ignore[union-attr]

    again = await run(cfg)

    assert cfg.ledger is not None and cfg.ledger.stat().st_size == size
    assert dict(again.outcomes) == {"skipped": 50} and again.exit_code == 0 and adds_up(again)
    assert dict(finished(cfg.ledger).outcomes) == {"skipped": 50}
    metrics = render_metrics(again, job="nightly", last_success_unix=None)
    assert 'batch_override_rows{job="nightly",outcome="skipped"} 50.0' in metrics
    assert 'batch_override_run_rows_done{job="nightly"} 50.0' in metrics
    assert 'batch_override_rows_not_attempted{job="nightly"} 0.0' in metrics
    report = summarize(cfg.ledger)  # the latest run wrote no line: the run log names it
    assert report.run_id == again.run_id and dict(report.outcomes) == {"skipped": 50}


async def test_record_skipped_keeps_the_full_per_run_record(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    cfg = config(tmp_path, emulator.url, 20, record_skipped=True)
    await run(cfg)
    await run(cfg)
    assert cfg.ledger is not None
    ledger = read_ledger(cfg.ledger)
    assert list(ledger["outcome"]).count("skipped") == 20 and lines(cfg.ledger) == 40


async def test_a_cumulative_file_appends_only_the_new_outcomes_each_night(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = tmp_path / "c.csv"
    for night in range(1, 4):
        write_csv(corrections, [(sha(i), "human") for i in range(10 * night)])
        summary = await run(config(tmp_path, emulator.url, 0))
        assert summary.outcomes["submitted"] == 10 and summary.outcomes["skipped"] == 10 * (night - 1)
        assert lines(tmp_path / "l.csv") == 10 * night


async def test_rows_rejected_in_an_earlier_run_are_counted_not_rewritten_and_report_shows_them(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="no_request")
    cfg = config(tmp_path, emulator.url, 30)
    await run(cfg)
    assert cfg.ledger is not None
    size, sent = cfg.ledger.stat().st_size, emulator.stats()["requests"]

    again = await run(cfg)

    assert cfg.ledger.stat().st_size == size and emulator.stats()["requests"] == sent
    assert dict(again.outcomes) == {"rejected": 30} and again.exit_code == 1 and adds_up(again)
    assert dict(again.error_codes) == {"previously_rejected": 30}
    assert dict(finished(cfg.ledger).error_codes) == {"previously_rejected": 30}
    metrics = render_metrics(again, job="nightly", last_success_unix=None)
    assert 'batch_override_rows{job="nightly",outcome="rejected"} 30.0' in metrics
    report = summarize(cfg.ledger)
    assert report.run_id == again.run_id and dict(report.outcomes) == {"rejected": 30}
    assert dict(report.error_codes) == {"previously_rejected": 30}


async def test_retry_rejected_still_sends_rows_whose_rejection_was_only_counted(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="no_request")
    cfg = config(tmp_path, emulator.url, 10)
    await run(cfg)
    await run(cfg)  # counted previously_rejected, no line: the first run's line still says rejected
    sent = emulator.stats()["requests"]

    retried = await run(dataclasses.replace(cfg, retry_rejected=True))

    assert emulator.stats()["requests"] - sent == 10 + 1  # every row and the preflight
    assert dict(retried.error_codes) == {"no_request": 10}


async def test_record_skipped_writes_the_previously_rejected_lines_too(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="no_request")
    cfg = config(tmp_path, emulator.url, 10, record_skipped=True)
    await run(cfg)
    await run(cfg)
    assert cfg.ledger is not None
    assert list(read_ledger(cfg.ledger)["error_code"]).count("previously_rejected") == 10


async def test_a_locked_classification_is_written_once_then_counted(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    accepted = write_csv(tmp_path / "a.csv", [(sha(i), "human") for i in range(5)])
    other = write_csv(tmp_path / "b.csv", [(sha(i), "artificial") for i in range(5)])
    cfg = dataclasses.replace(config(tmp_path, emulator.url, 0), input=str(accepted))
    await run(cfg)
    locked = dataclasses.replace(cfg, input=str(other))
    await run(locked)  # the first time: the verdict gets its line
    assert cfg.ledger is not None
    assert list(read_ledger(cfg.ledger)["error_code"]).count("classification_locked") == 5
    size = cfg.ledger.stat().st_size

    again = await run(locked)

    assert cfg.ledger.stat().st_size == size
    assert dict(again.error_codes) == {"classification_locked": 5} and adds_up(again)
    assert dict(summarize(cfg.ledger).error_codes) == {"classification_locked": 5}


# Stops: every kind counts the rows it never reached, and the counts add up to the rows read.


async def slow_answer(request: web.Request, _hit: Hit, _n: int) -> web.StreamResponse:
    await asyncio.sleep(0.05)
    return web.json_response({}, status=201)


@pytest.mark.parametrize("kind", ["stop_handle", "deadline", "cancel"])
async def test_a_stopped_run_counts_the_rows_never_reached_as_not_attempted(
    tmp_path: Path, kind: str
) -> None:
    async with scripted(slow_answer) as server:
        extra: dict[str, Any] = {"max_duration": 0.4} if kind == "deadline" else {}
        # No preflight: this server accepts anything, which the preflight rightly calls "not the API".
        cfg = config(tmp_path, server.url, 400, rate=Rate(40, 1.0), grace=5, preflight=False, **extra)
        handle = StopHandle()
        task = asyncio.ensure_future(run(cfg, stop=handle))
        for _ in range(3000):  # sending (not a hang: bounded)
            if len(server.overrides) >= 5 or task.done():
                break
            await asyncio.sleep(0.01)
        if kind == "stop_handle":
            handle.stop()
        elif kind == "cancel":
            task.cancel()
        summary = (await asyncio.gather(task, return_exceptions=True))[0]
    assert cfg.ledger is not None
    logged = finished(cfg.ledger)
    assert logged.not_attempted > 300 and adds_up(logged)
    if isinstance(summary, Summary):
        assert summary.not_attempted == logged.not_attempted and adds_up(summary)
    ledger = read_ledger(cfg.ledger)
    # Every line is a row with an attempt: one line per request, none for the rows never reached.
    assert len(ledger) == logged.rows - logged.not_attempted == len(server.overrides)
    assert "not_sent" not in set(ledger["error_code"])


class HostStop(Exception):
    """An orchestrator's own exception, raised from its SIGTERM handler (Airflow, Dagster)."""


def _stopped_by_the_host(tmp_path: Path) -> tuple[RunConfig, list[str]]:
    """``run_job`` on 200 rows at 40/s, from this thread, while a signal handler raises the host's
    exception into it once rows are in flight; the config and the server's hits.  Asserts that
    the exception was raised only once the run had wound down: its finish record written and
    the lock free at once (a run must not go on behind the host's back, sending and holding it)."""
    served = threading.Event()
    hits: list[str] = []
    previous = signal.getsignal(signal.SIGUSR1)

    def raise_host_stop(_signum: int, _frame: object) -> None:
        raise HostStop("terminated by the orchestrator")

    signal.signal(signal.SIGUSR1, raise_host_stop)
    server_thread, url = _serve_in_thread(hits, served)  # on a thread of its own
    try:
        cfg = config(tmp_path, url, 200, rate=Rate(40, 1.0), preflight=False)  # it accepts anything

        def stop_once_served() -> None:
            if served.wait(10):
                os.kill(os.getpid(), signal.SIGUSR1)

        killer = threading.Thread(target=stop_once_served)
        killer.start()
        with pytest.raises(HostStop):
            run_job(cfg, DEMO_API_KEY)
        assert cfg.ledger is not None
        assert finished(cfg.ledger).exit_code == 130  # wound down as a stop, before the raise
        lock = LedgerLock(cfg.ledger)
        lock.acquire({"pid": 0})  # LedgerLocked while the run still held it
        lock.release()
        killer.join(10)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        _stop_server(server_thread)
    return cfg, hits


def test_a_hosts_exception_raised_into_the_run_records_rows_as_a_stop_does(tmp_path: Path) -> None:
    """In-process and synchronous, like a task runner: ``run_job`` under ``asyncio.run`` on the main
    thread, and a signal handler raising the host's exception while rows are in flight."""
    cfg, hits = _stopped_by_the_host(tmp_path)
    assert cfg.ledger is not None
    logged = finished(cfg.ledger)
    assert adds_up(logged) and logged.rows == 200 and logged.not_attempted > 100
    ledger = read_ledger(cfg.ledger)
    posts = [h for h in hits if h.endswith("/override")]
    assert len(ledger) == logged.rows - logged.not_attempted
    assert set(ledger["hash"]) >= set(p.split("/")[3] for p in posts) - {
        "0" * 64
    }  # every row sent has a line


_SERVERS: dict[threading.Thread, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}


def _serve_in_thread(hits: list[str], served: threading.Event) -> tuple[threading.Thread, str]:
    """A small aiohttp server answering 201 after 50 ms, on a loop in its own thread."""
    ready = threading.Event()
    found: dict[str, Any] = {}

    async def main() -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            hits.append(request.path)
            if len(hits) > 5:
                served.set()
            await asyncio.sleep(0.05)
            return web.json_response({}, status=201)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        found["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        found["stop"] = stop = asyncio.Event()
        found["loop"] = asyncio.get_running_loop()
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    ready.wait(10)
    _SERVERS[thread] = (found["loop"], found["stop"])
    return thread, found["url"]


def _stop_server(thread: threading.Thread) -> None:
    loop, stop = _SERVERS.pop(thread)
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)


# The state beside the ledger: used when it fits, rebuilt from the ledger when it does not.


async def two_nights(tmp_path: Path, url: str) -> tuple[RunConfig, Path]:
    """Night 1 sends rows 0-19; night 2 the cumulative 0-39 (20 new).  The state as night 1 left it
    is kept aside: the state file a run of another version (which ignores it) would leave."""
    corrections = tmp_path / "c.csv"
    write_csv(corrections, [(sha(i), "human") for i in range(20)])
    cfg = config(tmp_path, url, 0)
    await run(cfg)
    assert cfg.ledger is not None
    states = list(tmp_path.glob("l.csv.state-*"))
    assert len(states) == 1
    shutil.copy(states[0], tmp_path / "night1.state")
    write_csv(corrections, [(sha(i), "human") for i in range(40)])
    await run(cfg)
    return cfg, states[0]


@pytest.mark.parametrize(
    "damage", ["deleted", "truncated", "stale", "garbled", "foreign_ledger", "runlog_edited", "fifo"]
)
async def test_a_state_that_does_not_fit_the_ledger_is_rebuilt_and_no_row_is_skipped_wrongly(
    tmp_path: Path, emulator_factory, damage: str
) -> None:
    emulator = await emulator_factory(unknown="classified")
    cfg, state = await two_nights(tmp_path, emulator.url)
    assert cfg.ledger is not None
    if damage == "deleted":
        state.unlink()
    elif damage == "truncated":
        state.write_bytes(state.read_bytes()[:-7])
    elif damage == "stale":  # the ledger appended past it, as by another version or a kill -9
        shutil.copy(tmp_path / "night1.state", state)
    elif damage == "garbled":
        data = bytearray(state.read_bytes())
        data[-3] ^= 0xFF
        state.write_bytes(bytes(data))
    elif damage == "foreign_ledger":  # another ledger of the same length moved in
        text = cfg.ledger.read_text().replace(sha(30), sha(99))
        cfg.ledger.write_text(text)
    elif damage == "fifo":  # a special file where the state goes: never opened (it would block)
        state.unlink()
        os.mkfifo(state)
    elif damage == "runlog_edited":
        log_path = runlog.runlog_path(cfg.ledger)
        records = log_path.read_text().splitlines()
        log_path.write_text("\n".join(records[2:]) + "\n")  # night 1 is no longer trusted
    requests = emulator.stats()["requests"]

    third = await run(cfg)

    delta = emulator.stats()["requests"] - requests
    sent = delta - 1 if delta else 0  # less the preflight (none when nothing is to be sent)
    expected = {"foreign_ledger": 1, "runlog_edited": 20}.get(damage, 0)
    assert sent == expected, third.outcomes
    assert third.outcomes["skipped"] == 40 - expected


async def test_the_state_is_read_and_replaced_not_rebuilt_on_a_normal_night(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    cfg, state = await two_nights(tmp_path, emulator.url)
    assert cfg.ledger is not None
    header = json.loads(state.read_bytes().split(b"\n")[1])
    assert header["covered"] == cfg.ledger.stat().st_size and header["entries"] == 40
    loaded = resume_state.load(cfg.ledger, state.name.rsplit("-", 1)[1], header["runs"])
    assert loaded.source == "state" and len(loaded.entries) == 40


async def test_a_hosts_exception_in_a_thread_waiting_for_run_job_stops_the_run_before_it_is_raised(
    tmp_path: Path,
) -> None:
    """``run_job`` called inside a running loop (an async web app's worker) waits for its worker
    thread; a host's exception raised into the waiting thread stops the run as a stop does and is
    raised once the run has wound down."""
    cfg, _ = _stopped_by_the_host(tmp_path)  # blocks this loop's thread, as a sync call would
    assert cfg.ledger is not None
    logged = finished(cfg.ledger)
    assert "host's exception (HostStop)" in logged.stop_reason and adds_up(logged)
    assert logged.not_attempted > 100

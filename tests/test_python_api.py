"""The Python API as a notebook or an orchestrator uses it: inside a running loop, failures an
orchestrator can act on (one exception type per way a run stops), progress, a stop from any thread."""

from __future__ import annotations

import _thread
import asyncio
import errno
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from batch_override import (
    LedgerUnwritable,
    ProgressSnapshot,
    Rate,
    RowsFailed,
    RunAborted,
    RunConfig,
    RunInterrupted,
    ServerOutage,
    StopHandle,
    Summary,
    run_job,
)
from batch_override.apikey import ApiKey
from batch_override.emulator import DEMO_API_KEY
from batch_override.errors import RunFailed
from batch_override.job import runner
from batch_override.job.parts import Parts
from batch_override.job.runner import run_job_async
from batch_override.job.ticker import ON_PROGRESS_INTERVAL, Ticker, ticking
from batch_override.ledger.writer import LedgerLock, LedgerWriter
from tests.api_support import emulator_in_thread
from tests.job.pacer_sim import VirtualLoop
from tests.support import REPO, accounted_rows, cli_env, fast_config, sha, write_csv

GRACE = 0.5
#: Not a hang: a stop ends within --grace and a moment (the grace itself is checked on a virtual
#: clock, tests/test_stopping.py); that the run stopped early shows in its rows not attempted.
NOT_A_HANG = 30.0


def corrections(tmp_path: Path, rows: int) -> Path:
    return write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(rows)])


def config(tmp_path: Path, url: str, rows: int = 20, **kw: Any) -> RunConfig:
    return fast_config(corrections(tmp_path, rows), tmp_path / "l.csv", url, **{"grace": GRACE, **kw})


def assert_lock_released(ledger: Path) -> None:
    lock = LedgerLock(ledger)
    lock.acquire({"pid": 0})  # raises LedgerLocked while a run still holds it
    lock.release()


def test_run_job_inside_asyncio_run_returns_the_summary(tmp_path: Path) -> None:
    with emulator_in_thread(unknown="classified") as emulator:

        async def notebook_cell() -> Summary:
            return run_job(config(tmp_path, emulator.url), api_key=DEMO_API_KEY)

        summary = asyncio.run(notebook_cell())
    assert summary.exit_code == 0
    assert summary.outcomes == {"submitted": 20}


def test_run_job_in_a_running_loop_leaves_the_hosts_signal_handlers_alone(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with emulator_in_thread(unknown="classified") as emulator:

        async def cell() -> Summary:
            return run_job(config(tmp_path, emulator.url), api_key=DEMO_API_KEY, handle_signals=True)

        assert asyncio.run(cell()).exit_code == 0
    assert signal.getsignal(signal.SIGTERM) is before


async def test_the_library_installs_no_signal_handler_unless_asked(tmp_path: Path) -> None:
    seen: list[object] = []

    def progress(_: ProgressSnapshot) -> None:
        seen.append(signal.getsignal(signal.SIGTERM))

    with emulator_in_thread(unknown="classified") as emulator:
        before = signal.getsignal(signal.SIGTERM)
        await run_job_async(config(tmp_path, emulator.url), ApiKey(DEMO_API_KEY), on_progress=progress)
    assert seen and all(handler is before for handler in seen)


def test_an_interrupt_of_a_notebook_cell_stops_the_run_as_ctrl_c_would(tmp_path: Path) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("KeyboardInterrupt is delivered to the main thread only")
    with emulator_in_thread(unknown="classified") as emulator:
        cfg = config(tmp_path, emulator.url, rows=40, rate=Rate(5, 1.0), preflight=False)

        async def cell() -> Summary:
            return run_job(cfg, api_key=DEMO_API_KEY)

        # A kernel's loop, as ipykernel runs one: no asyncio.run, whose own SIGINT handler differs.
        loop = asyncio.new_event_loop()
        timer = threading.Timer(1.0, _thread.interrupt_main)  # what the Interrupt button does
        timer.start()
        started = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                loop.run_until_complete(cell())
        finally:
            timer.join()
            loop.close()
        elapsed = time.monotonic() - started
    assert elapsed < NOT_A_HANG
    outcomes, not_attempted = accounted_rows(tmp_path / "l.csv", 40)
    assert not_attempted > 20, (outcomes, elapsed)  # the rows not reached: counted, not written
    assert_lock_released(tmp_path / "l.csv")


# -- one exception per way a run stops -------------------------------------------------------------

_SIGTERM_SCRIPT = """
import sys
from pathlib import Path
from batch_override import Rate, RunConfig, RunInterrupted, run_job
config = RunConfig(input=sys.argv[1], ledger=Path(sys.argv[2]), api_url=sys.argv[3], rate=Rate(5, 1.0),
                   grace=float(sys.argv[4]), preflight=False)
try:
    run_job(config, raise_on_failure=True, handle_signals=sys.argv[5] == "handlers")
except RunInterrupted as exc:
    s = exc.summary
    print(type(exc).__name__, exc.exit_code, exc.retryable, s.exit_code, s.not_attempted, flush=True)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""


async def _signal_a_run(tmp_path: Path, emulator: Any, signum: int, handlers: str) -> tuple[list[str], float]:
    """Start the script on 40 rows at 5/s, send ``signum`` once it sends; its words and how long
    it took to end after the signal."""
    script = tmp_path / "job.py"
    script.write_text(_SIGTERM_SCRIPT, encoding="utf-8")
    args = (str(corrections(tmp_path, 40)), str(tmp_path / "l.csv"), emulator.url, str(GRACE), handlers)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), *args, cwd=str(REPO), env=cli_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(300):  # the run is sending
            if emulator.stats()["requests"] >= 2:
                break
            await asyncio.sleep(0.05)
        started = time.monotonic()
        proc.send_signal(signum)
        out, err = await asyncio.wait_for(proc.communicate(), NOT_A_HANG)
        elapsed = time.monotonic() - started
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert out, err.decode()[-2000:]
    return out.decode().split(), elapsed


async def test_sigterm_to_a_process_in_run_job_raises_run_interrupted_with_the_summary_within_grace(
    tmp_path: Path, emulator_factory: Any
) -> None:
    emulator = await emulator_factory(unknown="classified")
    words, elapsed = await _signal_a_run(tmp_path, emulator, signal.SIGTERM, "handlers")
    assert words[:4] == ["RunInterrupted", "143", "True", "143"], words
    assert int(words[4]) > 20  # the rows not sent are counted not_attempted in the summary
    assert elapsed < NOT_A_HANG
    assert_lock_released(tmp_path / "l.csv")


async def test_ctrl_c_in_a_script_without_handlers_winds_the_run_down_and_raises_keyboard_interrupt(
    tmp_path: Path, emulator_factory: Any
) -> None:
    emulator = await emulator_factory(unknown="classified")
    words, elapsed = await _signal_a_run(tmp_path, emulator, signal.SIGINT, "no handlers")
    assert words == ["KeyboardInterrupt"]
    assert elapsed < NOT_A_HANG
    outcomes, not_attempted = accounted_rows(tmp_path / "l.csv", 40)
    assert not_attempted > 20, outcomes
    assert_lock_released(tmp_path / "l.csv")


def test_a_refused_key_raises_run_aborted_not_retryable(tmp_path: Path) -> None:
    with emulator_in_thread(unknown="classified") as emulator, pytest.raises(RunAborted) as caught:
        run_job(config(tmp_path, emulator.url), api_key="not-the-key", raise_on_failure=True)
    assert (caught.value.exit_code, caught.value.retryable) == (3, False)
    assert caught.value.summary.exit_code == 3
    assert "401" in caught.value.summary.stop_reason


def test_an_outage_raises_server_outage_retryable(tmp_path: Path) -> None:
    with (
        emulator_in_thread(unknown="classified", fail_rate=1.0) as emulator,
        pytest.raises(ServerOutage) as caught,
    ):
        run_job(config(tmp_path, emulator.url, max_outage=0.3), api_key=DEMO_API_KEY, raise_on_failure=True)
    assert (caught.value.exit_code, caught.value.retryable) == (5, True)
    summary = caught.value.summary
    assert sum(summary.outcomes.values()) + summary.not_attempted == 20, summary.outcomes


def test_rows_all_rejected_raise_rows_failed_not_retryable(tmp_path: Path) -> None:
    # Every row rejected: the emulator knows none of them, and no retry changes that.
    with emulator_in_thread() as emulator, pytest.raises(RowsFailed) as caught:
        run_job(
            config(tmp_path, emulator.url, max_failure_rate=1.0),
            api_key=DEMO_API_KEY,
            raise_on_failure=True,
        )
    assert (caught.value.exit_code, caught.value.retryable) == (1, False)
    assert caught.value.summary.outcomes == {"rejected": 20}


class _FullDisk(LedgerWriter):
    """A ledger whose fifth write meets a full disk."""

    writes = 0

    def _write_some(self, fd: int, data: memoryview) -> int:
        self.writes += 1
        if self.writes >= 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super()._write_some(fd, data)


async def test_an_unwritable_ledger_raises_ledger_unwritable_not_retryable(tmp_path: Path) -> None:
    with emulator_in_thread(unknown="classified") as emulator:
        cfg = config(tmp_path, emulator.url, raise_on_failure=True)
        with pytest.raises(LedgerUnwritable) as caught:
            await run_job_async(cfg, ApiKey(DEMO_API_KEY), Parts(ledger_writer=_FullDisk))
    assert (caught.value.exit_code, caught.value.retryable) == (6, False)
    assert isinstance(caught.value, RunFailed)
    assert_lock_released(tmp_path / "l.csv")


def test_without_raise_on_failure_a_failed_run_returns_its_summary(tmp_path: Path) -> None:
    with emulator_in_thread(unknown="classified") as emulator:
        summary = run_job(config(tmp_path, emulator.url), api_key="not-the-key")
    assert summary.exit_code == 3


# -- progress and stopping from another thread -----------------------------------------------------


#: A faster beat for on_progress in the runs below: the same Ticker, ten times a second, so a run
#: of a second shows the callbacks' shape; the 1-second beat itself is checked on a virtual clock
#: (test_the_ticker_ticks_once_an_interval_on_a_grid_and_skips_what_it_overran).
FAST_BEAT = 0.05


def test_on_progress_is_called_on_each_beat_and_once_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "ON_PROGRESS_INTERVAL", FAST_BEAT)
    seen: list[ProgressSnapshot] = []
    with emulator_in_thread(unknown="classified") as emulator:
        cfg = config(tmp_path, emulator.url, rows=30, rate=Rate(50, 1.0), preflight=False)
        summary = run_job(cfg, api_key=DEMO_API_KEY, on_progress=seen.append)
    ticks = [s for s in seen if not s.final]
    # 30 rows at 50/s take at least 0.58 s however fast the machine: ticks while they are sent,
    # never more than the beats that fit in the run.
    assert 1 <= len(ticks) <= summary.duration / FAST_BEAT + 1, [s.elapsed_s for s in ticks]
    assert [s.final for s in seen].count(True) == 1 and seen[-1].final
    assert [s.rows_done for s in seen] == sorted(s.rows_done for s in seen)
    last = seen[-1]
    assert (last.rows_done, last.rows_total, dict(last.outcomes), last.requests) == (
        30,
        30,
        {"submitted": 30},
        30,
    )
    middle = next(s for s in ticks if 0 < s.rows_done < 30)
    assert middle.eta_s is not None and middle.rows_per_s > 0
    assert "50/1s" in middle.pace and middle.in_flight >= 0
    with pytest.raises(TypeError):
        middle.outcomes["submitted"] = 0  # type: ignore[index]


def test_the_ticker_ticks_once_an_interval_on_a_grid_and_skips_what_it_overran() -> None:
    """On a virtual clock: a tick every second from the start, none doubled after a stall."""
    loop = VirtualLoop()
    taken: list[float] = []

    def take(final: bool) -> Any:
        taken.append(loop.time())
        if len(taken) == 3:
            loop.stall(2.5)  # the loop was busy 2.5 s: the ticks due at 4 and 5 s are skipped

    async def ten_seconds() -> None:
        async with ticking(Ticker(ON_PROGRESS_INTERVAL, take, clock=loop.time), final=False, wait=None):
            await asyncio.sleep(10.5)

    try:
        loop.run_until_complete(ten_seconds())
    finally:
        loop.close()
    assert taken == pytest.approx([1.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 10.0])


@pytest.mark.parametrize("behaviour", ["raises", "blocks"])
def test_a_callback_that_raises_or_blocks_changes_neither_the_run_nor_the_outcome(
    tmp_path: Path, behaviour: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "ON_PROGRESS_INTERVAL", FAST_BEAT)
    returned = threading.Event()
    calls = 0
    blocked_until_returned: list[bool] = []

    def callback(_: ProgressSnapshot) -> None:
        nonlocal calls
        calls += 1
        if behaviour == "raises":
            raise ValueError("a bug in the callback")
        if calls == 1:  # blocks until run_job has returned (not a hang: 30 s at most)
            blocked_until_returned.append(returned.wait(30))

    with emulator_in_thread(unknown="classified") as emulator:
        cfg = config(tmp_path, emulator.url, rows=25, rate=Rate(50, 1.0), preflight=False)
        summary = run_job(cfg, api_key=DEMO_API_KEY, on_progress=callback)
        returned.set()
    assert summary.exit_code == 0 and summary.outcomes == {"submitted": 25}
    assert calls >= 1
    if behaviour == "raises":
        warnings = [r for r in caplog.records if "on_progress raised ValueError" in r.getMessage()]
        assert len(warnings) == 1 and calls >= 2
    else:  # the run ended, and run_job returned, while its first call was still blocked
        deadline = time.monotonic() + 30
        while not blocked_until_returned and time.monotonic() < deadline:
            time.sleep(0.01)
        assert blocked_until_returned == [True]


_BLOCKED_CALLBACK_SCRIPT = """
import sys, threading
from batch_override import RunConfig, run_job
summary = run_job(RunConfig(input=sys.argv[1], dry_run=True), on_progress=lambda _: threading.Event().wait())
print("returned", summary.exit_code, flush=True)
"""


async def test_a_callback_that_never_returns_keeps_neither_run_job_nor_the_process_from_ending(
    tmp_path: Path,
) -> None:
    """A subprocess: what is tested is that the host process can exit (no thread joined at exit)."""
    script = tmp_path / "host.py"
    script.write_text(_BLOCKED_CALLBACK_SCRIPT, encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(corrections(tmp_path, 3)), cwd=str(REPO), env=cli_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)  # not a hang; it takes ~2 s
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert (proc.returncode, out.decode().split()) == (0, ["returned", "0"]), err.decode()[-2000:]


def test_a_stop_from_another_thread_ends_the_run_within_grace_with_the_lock_released(tmp_path: Path) -> None:
    handle = StopHandle()
    with emulator_in_thread(unknown="classified") as emulator:
        cfg = config(tmp_path, emulator.url, rows=40, rate=Rate(5, 1.0), preflight=False)
        stopped_at: list[float] = []

        def press_stop() -> None:
            stopped_at.append(time.monotonic())
            handle.stop("the Stop button")

        timer = threading.Timer(1.0, press_stop)
        timer.start()
        with pytest.raises(RunInterrupted) as caught:
            run_job(cfg, api_key=DEMO_API_KEY, stop=handle, raise_on_failure=True)
        ended = time.monotonic()
        timer.join()
    assert ended - stopped_at[0] < NOT_A_HANG
    summary = caught.value.summary
    assert (summary.exit_code, caught.value.retryable) == (130, True)
    assert "the Stop button" in summary.stop_reason
    assert summary.not_attempted > 20 and summary.outcomes["submitted"] >= 4
    assert_lock_released(tmp_path / "l.csv")


def test_a_stop_handle_stops_every_run_attached_and_no_run_attached_later(tmp_path: Path) -> None:
    handle = StopHandle()
    with emulator_in_thread(unknown="classified") as emulator:

        async def two_runs_then_one() -> list[Summary]:
            def run(name: str, rows: int) -> asyncio.Task[Summary]:
                (tmp_path / name).mkdir()
                cfg = config(tmp_path / name, emulator.url, rows=rows, rate=Rate(5, 1.0), preflight=False)
                return asyncio.create_task(run_job_async(cfg, ApiKey(DEMO_API_KEY), stop=handle))

            first, second = run("a", 40), run("b", 40)
            while emulator.stats()["requests"] < 4:  # both are sending
                await asyncio.sleep(0.05)
            handle.stop("the one Stop button")
            stopped = await asyncio.gather(first, second)
            return [*stopped, await run("c", 3)]  # the stop is not carried over to a later run

        summaries = asyncio.run(two_runs_then_one())
    assert [s.exit_code for s in summaries] == [130, 130, 0]
    for name, summary in zip("ab", summaries, strict=False):
        assert summary.not_attempted > 20, summary.outcomes
        assert_lock_released(tmp_path / name / "l.csv")
    assert handle.stopped


def test_ctrl_c_under_asyncio_run_stops_a_run_job_the_coroutine_is_blocked_in(tmp_path: Path) -> None:
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler or (
        threading.current_thread() is not threading.main_thread()
    ):
        pytest.skip("asyncio.run installs its SIGINT handler only on the main thread, over Python's")
    with emulator_in_thread(unknown="classified") as emulator:
        cfg = config(tmp_path, emulator.url, rows=40, rate=Rate(5, 1.0), preflight=False)

        async def async_script() -> Summary:
            return run_job(cfg, api_key=DEMO_API_KEY)  # blocks the loop asyncio.run's handler is on

        timer = threading.Timer(1.0, signal.raise_signal, (signal.SIGINT,))  # the first Ctrl-C
        timer.start()
        started = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                asyncio.run(async_script())
        finally:
            timer.join()
        elapsed = time.monotonic() - started
    assert elapsed < NOT_A_HANG
    outcomes, not_attempted = accounted_rows(tmp_path / "l.csv", 40)
    assert not_attempted > 20, outcomes
    assert_lock_released(tmp_path / "l.csv")

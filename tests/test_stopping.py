"""How a run stops, asked directly: which exit code wins, what a signal does, what the grace
period cuts off (the failure window and retry decision the senders consult: tests/sending)."""

from __future__ import annotations

import asyncio
import signal
import threading

import pytest

from batch_override.errors import ExitCode
from batch_override.stopping import Halted, StopHandle, Stopper, abandonable
from tests.job.pacer_sim import VirtualLoop


async def test_the_first_stop_sets_the_exit_code_and_later_stops_only_keep_it() -> None:
    stopper = Stopper(grace=10)
    stopper.request(ExitCode.ABORTED, "401")
    stopper.request(ExitCode.SIGTERM, "signal")
    stopper.request(ExitCode.OUTAGE, "outage")
    assert stopper.decisive() == (ExitCode.ABORTED, "401")
    assert stopper.reason == "401"


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([3, 6], 6),
        ([6, 3], 6),
        ([143, 6, 70], 70),
        ([70, 6], 70),
        ([130, 3], 130),
        ([5, 143], 5),
    ],
)
async def test_a_bug_outranks_an_unwritable_ledger_which_outranks_the_first_stop(
    codes: list[int], expected: int
) -> None:
    stopper = Stopper(grace=10)
    for code in codes:
        stopper.request(code, f"reason {code}")
    stop = stopper.decisive()
    assert stop is not None and stop.exit_code == expected


async def test_a_run_that_never_stopped_has_no_decisive_stop() -> None:
    assert Stopper(grace=10).decisive() is None


async def test_a_signal_after_a_401_stop_cuts_the_grace_short_and_keeps_exit_3() -> None:
    stopper = Stopper(grace=3600)
    started = asyncio.Event()

    async def busy_row() -> None:
        with stopper.busy():
            started.set()
            await asyncio.Event().wait()  # a request that never answers

    task = asyncio.create_task(busy_row())
    await started.wait()
    stopper.request(ExitCode.ABORTED, "the API key was refused (401)")
    assert stopper.on_signal(signal.SIGTERM) is False  # not "exit at once"
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopper.grace_over
    stop = stopper.decisive()
    assert stop is not None and stop.exit_code == ExitCode.ABORTED


async def test_the_first_signal_stops_the_run_and_a_second_asks_to_exit_at_once() -> None:
    stopper = Stopper(grace=3600)
    assert stopper.on_signal(signal.SIGINT) is False
    assert stopper.stopped.is_set() and stopper.halted.is_set()
    assert stopper.decisive() == (ExitCode.SIGINT, stopper.reason)
    assert stopper.on_signal(signal.SIGTERM) is True
    assert stopper.grace_over is False  # the grace period still runs: in-flight rows may finish


async def test_the_grace_period_cuts_off_busy_rows_only_and_the_cut_is_told_apart_from_a_cancel() -> None:
    stopper = Stopper(grace=0.0)
    outcome: list[str] = []
    busy, handled, idle = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def worker() -> None:
        with stopper.busy() as task:
            busy.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                outcome.append("cut off" if stopper.was_cut_off(task) else "cancelled")
        handled.set()
        await idle.wait()  # back to the queue: the cut-off does not reach it here

    task = asyncio.create_task(worker())
    await busy.wait()
    stopper.request(ExitCode.ABORTED, "stop")
    await handled.wait()
    assert outcome == ["cut off"]
    assert not task.done()
    task.cancel()  # a cancel from outside still cancels
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_reader_between_batches_ends_once_the_run_has_stopped() -> None:
    stopper = Stopper(grace=10)
    read = []
    with pytest.raises(Halted):
        for batch in stopper.interruptible(range(100)):
            read.append(batch)
            if batch == 2:
                stopper.request(ExitCode.SIGTERM, "signal")
    assert read == [0, 1, 2]


async def test_a_deadline_is_a_planned_stop_logged_as_a_warning_and_a_refused_key_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    Stopper(grace=10).request(ExitCode.DEADLINE, "deadline (--stop-at 06:00) reached")
    Stopper(grace=10).request(ExitCode.ABORTED, "the API key was refused (401)")
    levels = {record.getMessage(): record.levelname for record in caplog.records}
    assert levels == {
        "stopping: deadline (--stop-at 06:00) reached": "WARNING",
        "stopping: the API key was refused (401)": "ERROR",
    }


async def test_a_stop_handle_reaches_every_run_attached_now_and_none_attached_later() -> None:
    handle = StopHandle()
    first, second, later = Stopper(grace=10), Stopper(grace=10), Stopper(grace=10)
    with handle.attached(first), handle.attached(second):
        assert handle.stop("the one button") == 2
        await asyncio.sleep(0)  # delivered on the loop
    with handle.attached(later):
        await asyncio.sleep(0)
    assert [s.reason for s in (first, second)] == ["the one button"] * 2
    assert later.stops == [] and handle.stopped


async def test_work_abandoned_at_a_stop_hands_what_it_returns_later_to_discard() -> None:
    stopper = Stopper(grace=10)
    release, discarded = threading.Event(), threading.Event()
    opened: list[object] = []

    def open_never_ending_input() -> object:
        release.wait()  # a FIFO nobody writes, a store that stopped answering
        opened.append(object())
        return opened[0]

    work = asyncio.ensure_future(
        abandonable(stopper, open_never_ending_input, discard=lambda got: discarded.set())
    )
    await asyncio.sleep(0)
    stopper.request(ExitCode.SIGTERM, "signal")
    with pytest.raises(Halted):
        await work  # after SETTLE: the work does not heed halted
    release.set()  # the abandoned thread returns at last: what it opened is discarded
    assert await asyncio.to_thread(discarded.wait, 10)


def test_the_grace_period_cuts_off_a_busy_row_exactly_grace_seconds_after_the_stop() -> None:
    """On a virtual clock (the README's ``--grace`` promise, with no wall clock in the verdict)."""
    loop = VirtualLoop()
    stopper = Stopper(grace=10.0)
    ended: list[tuple[str, float]] = []

    async def row() -> None:
        with stopper.busy() as task:
            try:
                await asyncio.sleep(3600)  # a request that does not answer within the grace
            except asyncio.CancelledError:
                ended.append(("cut off" if stopper.was_cut_off(task) else "cancelled", loop.time()))

    async def run() -> None:
        task = asyncio.create_task(row())
        await asyncio.sleep(5)
        stopper.request(ExitCode.SIGTERM, "signal SIGTERM")
        await task

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    assert [what for what, _ in ended] == ["cut off"]
    assert ended[0][1] == pytest.approx(15.0)

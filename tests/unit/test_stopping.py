"""How a run stops, asked directly: which exit code wins, what a signal does, what the grace
period cuts off, and the failure window and retry decision the senders consult."""

from __future__ import annotations

import asyncio
import random
import signal

import pytest

from batch_override.errors import ExitCode
from batch_override.outcome import Action
from batch_override.pacing.backoff import Backoff
from batch_override.sending.failures import FailureThreshold
from batch_override.sending.retry import Step, decide
from batch_override.stopping import Halted, Stopper


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


def test_a_failure_window_of_zero_judges_each_row_alone_instead_of_dividing_by_zero() -> None:
    window = FailureThreshold(0, 0.5)
    assert window.add(False) is None
    assert window.add(True) is not None


def test_the_failure_window_judges_nothing_until_full_then_the_last_rows_only() -> None:
    window = FailureThreshold(4, 0.5)
    assert [window.add(True) for _ in range(3)] == [None, None, None]
    reason = window.add(True)
    assert reason is not None and "100% of the last 4 rows" in reason
    for _ in range(2):
        window.add(False)
    assert window.add(False) is None  # 1 of the last 4 failed: 25%
    assert window.add(True) is None  # 2 of 4: 50% is not over 0.5


@pytest.mark.parametrize(
    ("action", "retries", "in_outage", "expected"),
    [
        (Action.DONE, 0, False, (Step.FINISH, 0)),
        (Action.ABORT, 2, False, (Step.STOP, 2)),
        (Action.THROTTLED, 1, False, (Step.AGAIN, 1)),
        (Action.RETRY, 0, False, (Step.BACK_OFF, 1)),
        (Action.RETRY, 2, False, (Step.BACK_OFF, 3)),
        (Action.RETRY, 3, False, (Step.FINISH, 4)),  # max_retries 3 spent
        (Action.RETRY, 3, True, (Step.AGAIN, 3)),  # an outage costs the row no retry
    ],
)
def test_the_retry_decision(
    action: Action, retries: int, in_outage: bool, expected: tuple[Step, int]
) -> None:
    assert decide(action, retries=retries, max_retries=3, in_outage=in_outage) == expected


def test_backoff_doubles_from_base_up_to_the_cap_with_jitter_and_never_overflows() -> None:
    rng = random.Random(7)
    for n, full in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0), (10_000, 30.0)]:
        delay = Backoff(base=0.5, cap=30.0, rng=rng).delay(n)
        assert full / 2 <= delay <= full

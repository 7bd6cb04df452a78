"""The tests' virtual clock keeps its promise: time moves only when a test moves it."""

from __future__ import annotations

import asyncio

import pytest

from tests.clock import START, VirtualClock


def test_the_fixture_starts_off_the_second_and_reads_the_same_called_or_asked(clock: VirtualClock) -> None:
    assert clock() == clock.now() == START
    assert START % 1 == 0.25


def test_advance_moves_it_and_it_never_goes_back(clock: VirtualClock) -> None:
    clock.advance(1.5)
    assert clock.now() == START + 1.5
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-0.1)
    assert clock.now() == START + 1.5


async def test_sleep_advances_without_waiting_and_lets_other_tasks_run(clock: VirtualClock) -> None:
    ran: list[float] = []

    async def other() -> None:
        ran.append(clock.now())

    task = asyncio.ensure_future(other())
    await clock.sleep(3600)
    assert task.done() and ran == [START + 3600]
    await clock.sleep(-5)  # as asyncio.sleep: a negative delay is no delay
    assert clock.now() == START + 3600

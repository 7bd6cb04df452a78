"""The outage breaker's rules, asked directly with an injected clock: no server, no sleeping.

As tenacity tests its stops and waits: build the state, then ask the policy what it would do.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from batch_override.pacing.backoff import Backoff
from batch_override.sending.breaker import Breaker, OutageTooLong
from tests.clock import VirtualClock


def make_breaker(clock: VirtualClock, *, threshold: int = 3, rows_needed: int = 2, **kw: float) -> Breaker:
    return Breaker(
        threshold,
        rows_needed=rows_needed,
        max_outage=kw.get("max_outage", 60.0),
        backoff=Backoff(kw.get("backoff_base", 0.0), rng=random.Random(0)),
        clock=clock,
    )


def test_failures_from_one_row_alone_never_open_the_breaker(clock: VirtualClock) -> None:
    breaker = make_breaker(clock)
    for _ in range(10):
        assert breaker.failed("server_error", probe=False, row=7) is False
    assert not breaker.is_open


def test_threshold_failures_in_a_row_from_two_rows_open_it(clock: VirtualClock) -> None:
    breaker = make_breaker(clock)
    assert breaker.failed("server_error", probe=False, row=1) is False
    assert breaker.failed("server_error", probe=False, row=2) is False
    assert breaker.failed("server_error", probe=False, row=1) is True
    assert breaker.is_open
    assert breaker.outages == 1


def test_a_real_answer_between_failures_resets_the_streak(clock: VirtualClock) -> None:
    breaker = make_breaker(clock)
    breaker.failed("timeout", probe=False, row=1)
    breaker.failed("timeout", probe=False, row=2)
    breaker.succeeded(probe=False)
    assert breaker.failed("timeout", probe=False, row=3) is False
    assert not breaker.is_open


def test_the_first_real_answer_closes_an_open_breaker(clock: VirtualClock) -> None:
    breaker = make_breaker(clock, threshold=2)
    breaker.failed("server_error", probe=False, row=1)
    breaker.failed("server_error", probe=False, row=2)
    assert breaker.is_open
    breaker.succeeded(probe=False)
    assert not breaker.is_open


def test_an_outage_longer_than_max_outage_raises_with_its_length_and_reason(clock: VirtualClock) -> None:
    breaker = make_breaker(clock, threshold=2, max_outage=30.0)
    breaker.failed("connection_error", probe=False, row=1)
    breaker.failed("connection_error", probe=False, row=2)
    clock.advance(30.0)
    breaker.check()  # exactly max_outage: still allowed
    clock.advance(0.5)
    with pytest.raises(OutageTooLong, match=r"unavailable for 30s \(connection_error\)"):
        breaker.check()


def test_a_closed_breaker_never_raises_however_long_ago_failures_were(clock: VirtualClock) -> None:
    breaker = make_breaker(clock)
    breaker.failed("server_error", probe=False, row=1)
    clock.advance(10_000)
    breaker.check()


async def test_wait_turn_returns_at_once_while_closed(clock: VirtualClock) -> None:
    breaker = make_breaker(clock)
    assert await breaker.wait_turn() is False


async def test_while_open_exactly_one_sender_goes_as_the_probe(clock: VirtualClock) -> None:
    breaker = make_breaker(clock, threshold=2)
    breaker.failed("server_error", probe=False, row=1)
    breaker.failed("server_error", probe=False, row=2)
    first = await breaker.wait_turn()
    assert first is True
    # A second sender waits while the probe is out; the probe's real answer releases it.
    second = asyncio.ensure_future(breaker.wait_turn())
    await asyncio.sleep(0)
    assert not second.done()
    breaker.succeeded(probe=True)
    assert await asyncio.wait_for(second, 5) is False
    assert not breaker.is_open


async def test_a_failed_probe_keeps_it_open_and_hands_the_probe_on(clock: VirtualClock) -> None:
    breaker = make_breaker(clock, threshold=2)
    breaker.failed("server_error", probe=False, row=1)
    breaker.failed("server_error", probe=False, row=2)
    assert await breaker.wait_turn() is True
    assert breaker.failed("server_error", probe=True, row=1) is True
    assert await asyncio.wait_for(breaker.wait_turn(), 5) is True


async def test_wait_turn_gives_up_at_once_when_the_run_stops(clock: VirtualClock) -> None:
    stopped = asyncio.Event()
    breaker = Breaker(2, max_outage=60.0, backoff=Backoff(3600.0), clock=clock, stopped=stopped)
    breaker.failed("server_error", probe=False, row=1)
    breaker.failed("server_error", probe=False, row=2)
    waiter = asyncio.ensure_future(breaker.wait_turn())
    await asyncio.sleep(0)
    stopped.set()
    assert await asyncio.wait_for(waiter, 5) is False


def test_the_streak_follows_a_threshold_asked_at_each_failure(clock: VirtualClock) -> None:
    # Under auto concurrency the breaker sizes its streak from what may be in flight now, not
    # from --max-concurrency: 4 in flight, 4 failures from several rows are an outage.
    in_flight = [64]
    breaker = Breaker(lambda: in_flight[0], rows_needed=3, max_outage=60.0, clock=clock)
    in_flight[0] = 4
    assert [breaker.failed("server_error", probe=False, row=r) for r in range(4)] == [False] * 3 + [True]


async def test_a_retry_after_sets_the_next_probes_delay_capped_by_max_wait(
    monkeypatch: pytest.MonkeyPatch, clock: VirtualClock
) -> None:
    slept: list[float] = []
    breaker = Breaker(
        2, max_outage=600.0, backoff=Backoff(0.5, rng=random.Random(0)), max_wait=4.0, clock=clock
    )

    async def fake_wait_for(awaitable: object, timeout: float) -> None:  # noqa: ASYNC109 (its signature)
        slept.append(timeout)
        getattr(awaitable, "close", lambda: None)()
        raise TimeoutError

    breaker.failed("service_unavailable", probe=False, row=1, retry_after=3.0)
    breaker.failed("service_unavailable", probe=False, row=2, retry_after=3.0)
    monkeypatch.setattr(asyncio, "wait_for", fake_wait_for)  # the probe's sleep, measured not slept
    assert await breaker.wait_turn() is True
    breaker.failed("service_unavailable", probe=True, row=1, retry_after=30.0)
    assert await breaker.wait_turn() is True
    assert slept == [3.0, 4.0]  # the server's word, not the doubling backoff; at most --max-wait

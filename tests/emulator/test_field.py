"""The field the emulator can stand for: network delay, limited workers, header-stripping proxies,
and Laravel's whole-second windows. Windows run on a fake clock; nothing here sleeps to wait."""

from __future__ import annotations

import asyncio
import math
import statistics
import time

import aiohttp

from batch_override.emulator import EmulatorConfig
from batch_override.emulator.network import Latency, Workers
from tests.clock import VirtualClock
from tests.emulator.conftest import Serve
from tests.emulator.support import post

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After")


def test_latency_with_a_p99_is_lognormal_with_that_median_and_99th_percentile() -> None:
    latency = Latency(0.150, 1.5, seed=7)
    sample = sorted(latency.draw() for _ in range(20_000))
    assert min(sample) > 0
    assert math.isclose(statistics.median(sample), 0.150, rel_tol=0.05)
    assert math.isclose(sample[int(0.99 * len(sample))], 1.5, rel_tol=0.15)


def test_latency_draws_replay_from_their_seed() -> None:
    def draws(seed: int) -> list[float]:
        latency = Latency(0.150, 1.5, seed)
        return [latency.draw() for _ in range(5)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_latency_without_a_p99_is_fixed() -> None:
    latency = Latency(0.2)
    assert {latency.draw() for _ in range(100)} == {0.2}
    assert Latency(0.0).draw() == 0.0


async def test_workers_serve_at_most_capacity_at_once_and_queue_the_rest() -> None:
    workers = Workers(capacity=2, service=0.0)
    inside: list[int] = []
    release = asyncio.Event()
    entered = asyncio.Condition()

    async def request(n: int) -> None:
        async with workers.slot():
            async with entered:
                inside.append(n)
                entered.notify_all()
            await release.wait()
            inside.remove(n)

    tasks = [asyncio.create_task(request(n)) for n in range(5)]
    async with entered:
        await entered.wait_for(lambda: len(inside) == 2)
    for _ in range(10):  # let every queued task run as far as it can
        await asyncio.sleep(0)
    assert inside == [0, 1]  # the first two, in arrival order; three wait
    release.set()
    await asyncio.gather(*tasks)
    assert inside == []


async def test_capacity_makes_latency_grow_with_load(serve: Serve, session: aiohttp.ClientSession) -> None:
    emulator = await serve(EmulatorConfig(unknown="classified", capacity=2, service_ms=50))
    started = time.perf_counter()
    replies = await asyncio.gather(*(post(session, emulator.url, "image", f"h{n}") for n in range(6)))
    # Six requests through two workers of 50 ms each: three rounds. A lower bound only: an upper
    # bound would make the test flaky on a busy machine.
    assert time.perf_counter() - started >= 0.145
    assert [r.status for r in replies] == [201] * 6
    in_flight = emulator.stats()["in_flight"]
    assert in_flight["max"] == 6  # the server held all six: four of them queued
    assert in_flight["now"] == 0
    # Mean in flight x time (Little's law): 2 x 50 + 2 x 100 + 2 x 150 ms of request-seconds.
    assert in_flight["seconds"] >= 0.59
    assert 0 < in_flight["first"] <= in_flight["last"]


async def test_lognormal_latency_is_served_over_http(serve: Serve, session: aiohttp.ClientSession) -> None:
    emulator = await serve(EmulatorConfig(unknown="classified", latency_ms=20, latency_p99_ms=60, seed=3))
    expected = Latency(0.020, 0.060, seed=3)
    least = sum(expected.draw() for _ in range(3))
    started = time.perf_counter()
    for n in range(3):
        assert (await post(session, emulator.url, "image", f"h{n}")).status == 201
    assert time.perf_counter() - started >= least * 0.99


async def test_without_rate_headers_the_throttle_still_answers_429_but_says_nothing(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(
        EmulatorConfig(unknown="classified", rate_limit=(2, 1.0), rate_headers=False, clock=clock)
    )
    replies = [await post(session, emulator.url, "video", f"h{n}") for n in range(3)]
    assert [r.status for r in replies] == [201, 201, 429]
    assert replies[2].json() == {"message": "Too Many Attempts."}
    for reply in replies:
        assert not any(name in reply.headers for name in RATE_HEADERS)


async def test_laravel_windows_end_at_the_whole_second_before_start_plus_period(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(
        EmulatorConfig(unknown="classified", rate_limit=(1, 15.0), laravel_windows="file", clock=clock)
    )
    start = clock.now()  # a fractional second: xxx.25
    assert (await post(session, emulator.url, "image", "a")).status == 201
    clock.advance(14.5)  # 0.25 s before the window's floor(start + 15)
    late = await post(session, emulator.url, "image", "b")
    assert late.status == 429
    assert late.headers["Retry-After"] == "1"
    assert late.headers["X-RateLimit-Reset"] == str(math.floor(start + 15))
    clock.advance(0.25)  # 14.75 s after the first request: the window is over
    assert (await post(session, emulator.url, "image", "b")).status == 201
    first, second = emulator.stats()["windows"]
    assert first["end"] == math.floor(start + 15) == second["start"]


async def test_windows_count_accepted_requests_per_tenth_of_the_period(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(EmulatorConfig(unknown="classified", rate_limit=(5, 10.0), clock=clock))
    for step in (0.0, 0.5, 0.5, 3.25, 5.5, 0.125):  # offsets 0, 0.5, 1, 4.25, 9.75, 9.875
        clock.advance(step)
        await post(session, emulator.url, "image", f"h{step}")
    (window,) = emulator.stats()["windows"]
    assert window["tenths"] == [2, 1, 0, 0, 1, 0, 0, 0, 0, 1]  # the sixth was throttled


async def test_laravel_redis_windows_last_the_period_but_the_headers_say_the_whole_second_before(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(
        EmulatorConfig(unknown="classified", rate_limit=(1, 15.0), laravel_windows="redis", clock=clock)
    )
    start = clock.now()  # xxx.25
    assert (await post(session, emulator.url, "image", "a")).status == 201
    clock.advance(14.5)
    late = await post(session, emulator.url, "image", "b")
    assert (late.status, late.headers["Retry-After"]) == (429, "1")
    assert late.headers["X-RateLimit-Reset"] == str(math.floor(start + 15))
    clock.advance(0.25)  # now is the timer, floor(start + 15): Retry-After 0, yet still throttled
    later = await post(session, emulator.url, "image", "b")
    assert (later.status, later.headers["Retry-After"]) == (429, "0")
    clock.advance(0.25)  # exactly 15 s after the first request
    assert (await post(session, emulator.url, "image", "b")).status == 201


async def test_exact_windows_stay_the_default(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(EmulatorConfig(unknown="classified", rate_limit=(1, 15.0), clock=clock))
    assert (await post(session, emulator.url, "image", "a")).status == 201
    clock.advance(14.75)
    assert (await post(session, emulator.url, "image", "b")).status == 429
    clock.advance(0.25)
    assert (await post(session, emulator.url, "image", "b")).status == 201

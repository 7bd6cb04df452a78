"""Injected faults: reproducible from the seed, whatever the request order or concurrency."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from batch_override.emulator import EmulatorConfig
from batch_override.emulator.faults import Fault, FaultPlan
from tests.clock import VirtualClock
from tests.emulator.conftest import Serve
from tests.emulator.support import post

HASHES = [f"{n:064x}" for n in range(40)]
ATTEMPTS = 3
DISCONNECT = "disconnect"


def chaos(seed: int) -> EmulatorConfig:
    return EmulatorConfig(
        unknown="classified", seed=seed, fail_rate=0.2, drop_rate=0.2, drop_after_record_rate=0.2
    )


async def attempt(session: aiohttp.ClientSession, url: str, content_hash: str) -> int | str:
    try:
        return (await post(session, url, "image", content_hash)).status
    except aiohttp.ServerDisconnectedError:
        return DISCONNECT


async def run_in_order(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, int], int | str]:
    outcomes: dict[tuple[str, int], int | str] = {}
    for n in range(ATTEMPTS):
        for content_hash in HASHES:
            outcomes[content_hash, n] = await attempt(session, url, content_hash)
    return outcomes


async def run_reversed_concurrently(
    session: aiohttp.ClientSession, url: str
) -> dict[tuple[str, int], int | str]:
    outcomes: dict[tuple[str, int], int | str] = {}

    async def one_hash(content_hash: str) -> None:
        for n in range(ATTEMPTS):
            outcomes[content_hash, n] = await attempt(session, url, content_hash)

    async with asyncio.TaskGroup() as group:
        for content_hash in reversed(HASHES):
            group.create_task(one_hash(content_hash))
    return outcomes


async def test_same_seed_gives_the_same_faults_in_any_request_order(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    config = chaos(seed=7)
    first = await serve(config)
    second = await serve(config)
    in_order = await run_in_order(session, first.url)
    shuffled = await run_reversed_concurrently(session, second.url)
    assert in_order == shuffled
    assert sorted(first.overrides(), key=str) == sorted(second.overrides(), key=str)
    # The run exercised every kind of outcome, including the retry of a recorded-then-dropped request.
    assert {201, 400, DISCONNECT} <= set(in_order.values())
    assert {500, 502, 503} & set(in_order.values())

    other_seed = await serve(chaos(seed=8))
    assert await run_in_order(session, other_seed.url) != in_order


async def test_drop_closes_the_connection_without_an_answer_and_records_nothing(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    emulator = await serve(EmulatorConfig(unknown="classified", drop_rate=1.0))
    for _ in range(2):  # the session recovers on a new connection, and is dropped again
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(session, emulator.url, "video", "h")
    assert emulator.overrides() == []
    stats = emulator.stats()
    assert (stats["requests"], stats["responses_by_status"], stats["overrides"]) == (2, {"dropped": 2}, 0)


def first_hash_where(plan: FaultPlan, faults: list[Fault]) -> str:
    """A hash whose successive attempts meet ``faults``: lets a test pick its scenario by name."""
    for n in range(10_000):
        content_hash = f"hash-{n}"
        if [plan.decide("audio", content_hash, i)[0] for i in range(len(faults))] == faults:
            return content_hash
    raise AssertionError("no such hash")


async def test_drop_after_record_records_the_override_and_the_retry_is_already_submitted(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    config = EmulatorConfig(unknown="classified", drop_after_record_rate=0.5, seed=3)
    content_hash = first_hash_where(
        FaultPlan(seed=3, drop_after_record_rate=0.5), [Fault.DROP_AFTER_RECORD, Fault.NONE]
    )
    emulator = await serve(config)

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(session, emulator.url, "audio", content_hash, {"classification": "artificial"})
    expected = [{"media": "audio", "hash": content_hash, "classification": "artificial"}]
    async with session.get(emulator.url + "/_emulator/overrides") as response:
        assert await response.json() == expected

    retry = await post(session, emulator.url, "audio", content_hash, {"classification": "artificial"})
    assert (retry.status, retry.json()) == (
        400,
        {"error": "You have already submitted a report for this content."},
    )
    assert emulator.overrides() == expected


async def test_drop_after_record_of_refused_content_records_nothing(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    emulator = await serve(EmulatorConfig(drop_after_record_rate=1.0))  # unknown content: no_request
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(session, emulator.url, "image", "h")
    assert emulator.overrides() == []


async def test_fail_answers_500_503_as_json_or_502_as_html_and_never_records(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(
        EmulatorConfig(unknown="classified", fail_rate=1.0, rate_limit=(1000, 60.0), clock=clock)
    )
    seen: dict[int, tuple[str, bytes, bool]] = {}
    for content_hash in HASHES:
        reply = await post(session, emulator.url, "image", content_hash)
        seen[reply.status] = (reply.headers["Content-Type"], reply.body, "X-RateLimit-Limit" in reply.headers)
    assert seen[500] == ("application/json", b'{"message":"Server Error"}', True)
    assert seen[503] == ("application/json", b'{"message":"Service Unavailable"}', False)
    content_type, body, rate_headers = seen[502]
    assert content_type == "text/html"
    assert body.startswith(b"<html>") and b"<title>502 Bad Gateway</title>" in body
    assert not rate_headers
    assert set(seen) == {500, 502, 503}
    assert emulator.overrides() == []


async def test_faults_apply_only_after_auth_throttle_and_validation(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(
        EmulatorConfig(unknown="classified", fail_rate=1.0, rate_limit=(2, 60.0), clock=clock)
    )
    assert (await post(session, emulator.url, "image", "h", key=None)).status == 401
    assert (await post(session, emulator.url, "image", "h", {"classification": "x"})).status == 400
    assert (await post(session, emulator.url, "image", "h")).status in {500, 502, 503}
    assert (await post(session, emulator.url, "image", "h")).status == 429


async def test_latency_is_a_round_trip_the_throttle_counts_half_way(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    # A far server counts a request when it arrives, half a round trip after the send, and the
    # answer takes the other half back: stragglers of a long tail reach the throttle no later.
    emulator = await serve(EmulatorConfig(unknown="classified", latency_ms=200, rate_limit=(10, 60.0)))
    await post(session, emulator.url, "image", HASHES[0])
    answered = time.time()
    counted = emulator.stats()["windows"][0]["start"]
    assert answered - counted >= 0.09  # a lower bound only: a busy machine adds, never takes


async def test_latency_delays_every_answer(serve: Serve, session: aiohttp.ClientSession) -> None:
    emulator = await serve(EmulatorConfig(latency_ms=60))
    for key in ("demo-key-0000", None):
        started = time.perf_counter()
        await post(session, emulator.url, "image", "h", key=key)
        # A lower bound only: an upper bound would make the test flaky on a busy machine.
        assert time.perf_counter() - started >= 0.055

"""/_emulator/stats and /_emulator/overrides, and the Python accessors that mirror them."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp.test_utils import TestServer

from batch_override.emulator import DEMO_API_KEY, EmulatorConfig, build_app
from tests.clock import VirtualClock
from tests.emulator.conftest import Serve
from tests.emulator.support import get_json, post


async def test_stats_count_every_override_post_by_status_but_not_their_own_requests(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(
        EmulatorConfig(states={("image", "c"): "classified"}, rate_limit=(3, 60.0), clock=clock, seed=1)
    )
    await post(session, emulator.url, "image", "c")  # 201
    await post(session, emulator.url, "image", "c")  # 400 already submitted
    await post(session, emulator.url, "image", "c", key=None)  # 401
    await post(session, emulator.url, "image", "z")  # 400 no request
    await post(session, emulator.url, "image", "z")  # 429
    for _ in range(3):
        await get_json(session, emulator.url + "/_emulator/stats")
        await get_json(session, emulator.url + "/_emulator/overrides")

    stats = await get_json(session, emulator.url + "/_emulator/stats")
    assert stats == emulator.stats()
    assert stats["requests"] == 5
    assert stats["responses_by_status"] == {"201": 1, "400": 2, "401": 1, "429": 1}
    assert stats["overrides"] == 1
    assert [(w["accepted"], w["throttled"]) for w in stats["windows"]] == [(3, 1)]


async def test_overrides_are_listed_in_recording_order_without_keys(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    emulator = await serve(EmulatorConfig(unknown="classified"))
    await post(session, emulator.url, "video", "b", {"classification": "artificial"})
    await post(session, emulator.url, "image", "a", {"classification": "human"})
    expected = [
        {"media": "video", "hash": "b", "classification": "artificial"},
        {"media": "image", "hash": "a", "classification": "human"},
    ]
    assert await get_json(session, emulator.url + "/_emulator/overrides") == expected
    assert emulator.overrides() == expected
    emulator.overrides()[0]["hash"] = "tampered"  # a copy: the caller cannot corrupt the record
    assert emulator.overrides() == expected


async def test_concurrent_first_overrides_of_one_content_record_exactly_one(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    emulator = await serve(EmulatorConfig(unknown="classified", latency_ms=5))
    replies = await asyncio.gather(*(post(session, emulator.url, "image", "same") for _ in range(20)))
    assert sorted(r.status for r in replies) == [201] + [400] * 19
    assert len(emulator.overrides()) == 1


async def test_build_app_serves_under_aiohttp_test_server(session: aiohttp.ClientSession) -> None:
    async with TestServer(build_app(EmulatorConfig(api_keys=("k",), unknown="classified"))) as server:
        url = str(server.make_url("")).rstrip("/")
        assert (await post(session, url, "audio", "h", key="k")).status == 201
        assert (await post(session, url, "audio", "h", key=DEMO_API_KEY)).status == 401
        assert (await get_json(session, url + "/_emulator/stats"))["overrides"] == 1


async def test_arrivals_list_every_override_requests_arrival_in_order(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    emulator = await serve(EmulatorConfig(unknown="classified"))
    before = time.time()
    await post(session, emulator.url, "image", "a")
    await post(session, emulator.url, "image", "b", key=None)  # a 401 arrived too
    await get_json(session, emulator.url + "/_emulator/stats")  # not an override request
    await post(session, emulator.url, "video", "c")
    arrivals = await get_json(session, emulator.url + "/_emulator/arrivals")
    assert arrivals == emulator.arrivals()
    assert len(arrivals) == 3
    assert before <= arrivals[0] <= arrivals[1] <= arrivals[2] <= time.time()
    in_flight = emulator.stats()["in_flight"]
    assert (in_flight["first"], in_flight["last"]) == (arrivals[0], arrivals[-1])

"""Laravel's fixed-window throttle, driven by a fake clock: no test here sleeps."""

from __future__ import annotations

import math

import aiohttp

from batch_override.emulator import DEMO_API_KEY, EmulatorConfig
from batch_override.emulator.server import key_id
from tests.clock import VirtualClock
from tests.emulator.conftest import Serve
from tests.emulator.support import post

OTHER_KEY = "other-key-1"
FORBIDDEN_KEY = "forbidden-key-1"
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After")


def throttled_config(clock: VirtualClock, limit: int = 5, period: float = 1.0) -> EmulatorConfig:
    return EmulatorConfig(
        api_keys=(DEMO_API_KEY, OTHER_KEY),
        forbidden_keys=(FORBIDDEN_KEY,),
        rate_limit=(limit, period),
        unknown="classified",
        clock=clock,
    )


async def test_five_pass_counting_down_then_the_sixth_is_told_when_the_window_ends(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(throttled_config(clock))
    window_end = clock.now() + 1.0
    remaining = []
    for n in range(5):
        reply = await post(session, emulator.url, "image", f"hash-{n}")
        assert reply.status == 201
        assert reply.headers["X-RateLimit-Limit"] == "5"
        assert "Retry-After" not in reply.headers
        remaining.append(reply.headers["X-RateLimit-Remaining"])
    assert remaining == ["4", "3", "2", "1", "0"]

    clock.advance(0.25)
    sixth = await post(session, emulator.url, "image", "hash-5")
    assert sixth.status == 429
    assert sixth.json() == {"message": "Too Many Attempts."}
    assert sixth.headers["Retry-After"] == "1"  # 0.75 s left, rounded up
    assert sixth.headers["X-RateLimit-Reset"] == str(math.ceil(window_end))
    assert sixth.headers["X-RateLimit-Limit"] == "5"
    assert sixth.headers["X-RateLimit-Remaining"] == "0"
    assert emulator.overrides()[-1]["hash"] == "hash-4"  # the throttled request changed nothing


async def test_retry_after_is_the_time_to_the_window_end_rounded_up(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(throttled_config(clock, limit=1, period=10.0))
    assert (await post(session, emulator.url, "image", "a")).status == 201
    retry_after = []
    for step in (0.0, 2.5, 7.0, 0.49):
        clock.advance(step)
        reply = await post(session, emulator.url, "image", "a")
        assert reply.status == 429
        retry_after.append(reply.headers["Retry-After"])
    # 10 s, then 7.5 -> 8, 0.5 -> 1, 0.01 -> 1 (never 0: a client must not retry at once).
    assert retry_after == ["10", "8", "1", "1"]


async def test_throttled_requests_do_not_count_and_the_next_window_opens_at_its_end(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(throttled_config(clock))
    for n in range(5):
        await post(session, emulator.url, "audio", f"first-{n}")
    # Hammering inside the window neither passes nor extends it. (Steps are powers of two so the
    # fake clock lands exactly on the window's end below, free of float rounding.)
    for _ in range(24):
        clock.advance(1 / 32)
        assert (await post(session, emulator.url, "audio", "late")).status == 429

    clock.advance(0.25)  # exactly the window's end: 1.0 s after its start
    remaining = []
    for n in range(5):
        reply = await post(session, emulator.url, "audio", f"second-{n}")
        assert reply.status == 201
        remaining.append(reply.headers["X-RateLimit-Remaining"])
    assert remaining == ["4", "3", "2", "1", "0"]
    assert (await post(session, emulator.url, "audio", "late")).status == 429


async def test_unauthorized_and_forbidden_carry_no_rate_headers_and_do_not_count(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(throttled_config(clock))
    refused = [
        await post(session, emulator.url, "video", "h", key=None),
        await post(session, emulator.url, "video", "h", key="wrong"),
        await post(session, emulator.url, "video", "h", key=FORBIDDEN_KEY),
        await post(session, emulator.url, "video", "h", key=FORBIDDEN_KEY),
    ]
    assert [r.status for r in refused] == [401, 401, 403, 403]
    for reply in refused:
        assert not any(name in reply.headers for name in RATE_HEADERS)
    statuses = [(await post(session, emulator.url, "video", f"h{n}")).status for n in range(6)]
    assert statuses == [201] * 5 + [429]


async def test_validation_errors_count_against_the_window_and_carry_rate_headers(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(throttled_config(clock, limit=2))
    invalid = await post(session, emulator.url, "image", "h", {"classification": "robot"})
    assert (invalid.status, invalid.headers["X-RateLimit-Remaining"]) == (400, "1")
    assert (await post(session, emulator.url, "image", "h")).status == 201
    assert (await post(session, emulator.url, "image", "h", {})).status == 429


async def test_each_key_has_its_own_window(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(throttled_config(clock, limit=1))
    assert (await post(session, emulator.url, "image", "a")).status == 201
    assert (await post(session, emulator.url, "image", "b")).status == 429
    clock.advance(0.5)
    other = await post(session, emulator.url, "image", "b", key=OTHER_KEY)
    assert (other.status, other.headers["X-RateLimit-Remaining"]) == (201, "0")


def window(key: str, start: float, *, accepted: int, throttled: int) -> dict[str, object]:
    end = start + 1.0
    tenths = [accepted] + [0] * 9  # every request of this test comes at its window's start
    return {
        "key": key_id(key), "start": start, "end": end, "accepted": accepted, "throttled": throttled,
        "tenths": tenths,
    }  # fmt: skip


async def test_stats_list_each_window_with_accepted_and_throttled_but_never_the_key(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(throttled_config(clock, limit=2))
    start = clock.now()
    for _ in range(3):
        await post(session, emulator.url, "image", "x")
    clock.advance(0.5)
    await post(session, emulator.url, "image", "x", key=OTHER_KEY)
    clock.advance(0.5)
    await post(session, emulator.url, "image", "y")

    async with session.get(emulator.url + "/_emulator/stats") as response:
        text = await response.text()
    assert DEMO_API_KEY not in text and OTHER_KEY not in text
    assert emulator.stats()["windows"] == [
        window(DEMO_API_KEY, start, accepted=2, throttled=1),
        window(OTHER_KEY, start + 0.5, accepted=1, throttled=0),
        window(DEMO_API_KEY, start + 1.0, accepted=1, throttled=0),
    ]
    assert key_id(DEMO_API_KEY) != key_id(OTHER_KEY)


async def test_without_a_rate_limit_no_rate_headers_are_sent(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    emulator = await serve(EmulatorConfig(unknown="classified"))
    reply = await post(session, emulator.url, "image", "h")
    assert reply.status == 201
    assert not any(name in reply.headers for name in RATE_HEADERS)
    assert emulator.stats()["windows"] == []

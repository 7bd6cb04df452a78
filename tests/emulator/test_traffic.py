"""Other traffic on the key and a maintenance stretch, on a fake clock: no test here sleeps."""

from __future__ import annotations

import argparse

import aiohttp
import pytest

from batch_override.emulator import DEMO_API_KEY, EmulatorConfig
from batch_override.emulator.cli import build_parser, config_from_args
from tests.clock import VirtualClock
from tests.emulator.conftest import Serve
from tests.emulator.support import get_json, post


def config(clock: VirtualClock, **extra: object) -> EmulatorConfig:
    return EmulatorConfig(rate_limit=(10, 1.0), unknown="classified", clock=clock, **extra)  # type: ignore[arg-type]


async def test_steady_other_traffic_is_counted_in_the_clients_window(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(config(clock, other_traffic=(4.0, 1)))  # one every 0.25 s, the first at start
    clock.advance(0.6)  # the neighbour sent at 0, 0.25 and 0.5
    reply = await post(session, emulator.url, "image", "h1")
    assert reply.status == 201
    assert reply.headers["X-RateLimit-Remaining"] == "6"  # 10 - (3 theirs + 1 ours)
    clock.advance(0.5)  # 0.75 and 1.0 (a new window: the first opened at 0)
    stats = await get_json(session, emulator.url + "/_emulator/stats")
    assert stats["other_traffic"] == {"rate": 4.0, "burst": 1, "accepted": 5, "throttled": 0}
    assert [(w["accepted"], w["other_accepted"]) for w in stats["windows"]] == [(5, 4), (1, 1)]
    assert stats["requests"] == 1


async def test_a_bursting_neighbour_is_throttled_on_its_own_count(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(config(clock, other_traffic=(8.0, 8)))  # 8 at once each second
    statuses = [(await post(session, emulator.url, "image", f"h{n}")).status for n in range(3)]
    assert statuses == [201, 201, 429]
    clock.advance(1.0)  # the next burst finds the window open from the last one: a new window
    reply = await post(session, emulator.url, "image", "h9")
    assert reply.headers["X-RateLimit-Remaining"] == "1"
    stats = emulator.stats()
    first = stats["windows"][0]
    assert (first["accepted"], first["other_accepted"], first["throttled"]) == (10, 8, 1)
    assert first["other_throttled"] == 0  # the burst came first; our third was the one refused
    assert stats["other_traffic"]["accepted"] == 16


async def test_maintenance_answers_503_with_retry_after_and_counts_nothing(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(config(clock, maintenance=(1.0, 2.0, 5), other_traffic=(1.0, 1)))
    assert (await post(session, emulator.url, "image", "a")).status == 201
    clock.advance(1.5)
    reply = await post(session, emulator.url, "image", "b", key="not-a-key")  # before auth
    assert reply.status == 503
    assert reply.headers["Retry-After"] == "5"
    assert not [name for name in reply.headers if name.lower().startswith("x-ratelimit")]
    assert reply.json() == {"message": "Service Unavailable"}
    clock.advance(1.5)  # 3.0: service is back
    reply = await post(session, emulator.url, "image", "c")
    assert reply.status == 201
    stats = emulator.stats()
    assert stats["responses_by_status"] == {"201": 2, "503": 1}
    # The neighbour's requests at 1 s and 2 s were turned away too: only 0 s and 3 s count.
    assert stats["other_traffic"]["accepted"] == 2
    start = stats["maintenance"]["start"]
    assert stats["maintenance"] == {"start": start, "end": start + 2.0, "retry_after": 5}


async def test_maintenance_without_retry_after_sends_no_such_header(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(config(clock, maintenance=(0.0, 1.0, None)))
    reply = await post(session, emulator.url, "image", "a", key=DEMO_API_KEY)
    assert reply.status == 503
    assert "Retry-After" not in reply.headers


def _parse(*argv: str) -> EmulatorConfig:
    parser = build_parser()
    return config_from_args(parser.parse_args(["--rate-limit", "10/s", *argv]), parser)


def test_the_flags_read_rates_bursts_and_stretches() -> None:
    assert _parse("--other-traffic", "20").other_traffic == (20.0, 1)
    assert _parse("--other-traffic", "80:80").other_traffic == (80.0, 80)
    assert _parse("--other-traffic", "12/15s:12").other_traffic == (0.8, 12)
    assert _parse("--maintenance", "10:20:5").maintenance == (10.0, 20.0, 5)
    assert _parse("--maintenance", "0:1").maintenance == (0.0, 1.0, None)


@pytest.mark.parametrize(
    "argv",
    [
        ["--other-traffic", "0"],
        ["--other-traffic", "5:0"],
        ["--other-traffic", "fast"],
        ["--maintenance", "10"],
        ["--maintenance", "1:0:5"],
        ["--maintenance", "1:2:-1"],
    ],
)
def test_bad_traffic_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(*argv)
    assert exit_info.value.code == 2
    assert "expected" in capsys.readouterr().err


def test_other_traffic_needs_a_rate_limit() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        config_from_args(parser.parse_args(["--other-traffic", "5"]), parser)
    with pytest.raises(ValueError, match="rate_limit"):
        EmulatorConfig(other_traffic=(5.0, 1))
    assert isinstance(parser, argparse.ArgumentParser)

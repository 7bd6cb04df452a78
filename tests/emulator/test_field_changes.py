"""Field conditions that change or lie mid-run: a latency jump, a stuck ``X-RateLimit-Remaining``.

The jump's time is read on the fake clock; a delay is slept for real, so timings are lower
bounds only, and what each request met is asserted on what the server recorded.
"""

from __future__ import annotations

import time

import aiohttp
import pytest

from batch_override.emulator import EmulatorConfig
from batch_override.emulator.cli import build_parser, config_from_args
from batch_override.emulator.network import Latency, LatencyJump
from tests.clock import VirtualClock
from tests.emulator.conftest import Serve
from tests.emulator.support import post


def test_a_jump_draws_the_first_latency_before_its_time_and_the_second_from_it() -> None:
    clock = VirtualClock()
    jump = LatencyJump(Latency(0.01), Latency(2.0), clock() + 5.0, clock)
    clock.advance(4.999)
    assert jump.draw() == 0.01
    clock.advance(0.001)  # exactly at its time: the new route
    assert [jump.draw(), jump.draw()] == [2.0, 2.0]
    assert jump.stats() == {"at": clock(), "median": 2.0, "jumped": 2}


def test_the_jumps_lognormal_draws_are_their_own_seeded_stream() -> None:
    def draws(stream: str) -> list[float]:
        latency = Latency(0.150, 1.5, 7, stream)
        return [latency.draw() for _ in range(3)]

    assert draws("jump") == draws("jump")
    assert draws("jump") != draws("latency")
    assert draws("latency")[0] == Latency(0.150, 1.5, 7).draw()  # the default stream: old runs replay


async def test_requests_arriving_after_the_jump_take_the_new_round_trip(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(
        EmulatorConfig(unknown="classified", latency_ms=20, latency_jump=(1.0, 80.0, None), clock=clock)
    )
    started = time.perf_counter()
    assert (await post(session, emulator.url, "image", "before")).status == 201
    assert time.perf_counter() - started >= 0.02 * 0.99  # --latency-ms before the jump
    assert emulator.stats()["latency_jump"] == {"at": clock() + 1.0, "median": 0.08, "jumped": 0}
    clock.advance(1.0)
    started = time.perf_counter()
    assert (await post(session, emulator.url, "image", "after")).status == 201
    assert time.perf_counter() - started >= 0.08 * 0.99
    stats = emulator.stats()
    assert stats["latency_jump"]["jumped"] == 1
    assert stats["in_flight"]["seconds"] >= 0.02 + 0.08 - 0.001  # the server held each its round trip


async def test_without_a_jump_stats_say_nothing_of_one(serve: Serve) -> None:
    emulator = await serve(EmulatorConfig(unknown="classified", latency_ms=1))
    assert "latency_jump" not in emulator.stats()


async def test_a_stuck_remaining_says_0_on_every_passed_answer_while_the_server_accepts(
    serve: Serve, session: aiohttp.ClientSession, clock: VirtualClock
) -> None:
    emulator = await serve(
        EmulatorConfig(unknown="classified", rate_limit=(3, 60.0), stuck_remaining=True, clock=clock)
    )
    replies = [
        await post(session, emulator.url, "image", "a"),
        await post(session, emulator.url, "image", "b", {"classification": "robot"}),  # 400, counted
        await post(session, emulator.url, "image", "c"),
        await post(session, emulator.url, "image", "d"),  # the fourth in a window of 3
    ]
    assert [r.status for r in replies] == [201, 400, 201, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in replies] == ["0"] * 4
    assert {r.headers["X-RateLimit-Limit"] for r in replies} == {"3"}
    assert replies[3].headers["Retry-After"] == "60"  # the 429 keeps telling the truth
    (window,) = emulator.stats()["windows"]
    assert (window["accepted"], window["throttled"]) == (3, 1)
    assert [o["hash"] for o in emulator.overrides()] == ["a", "c"]


def _parse(*argv: str) -> EmulatorConfig:
    parser = build_parser()
    return config_from_args(parser.parse_args(list(argv)), parser)


def test_the_flags_read_a_jump_and_a_stuck_remaining() -> None:
    assert _parse("--latency-jump", "5:2000").latency_jump == (5.0, 2000.0, None)
    assert _parse("--latency-jump", "0.5:150:1500").latency_jump == (0.5, 150.0, 1500.0)
    assert _parse().latency_jump is None
    assert _parse("--rate-limit", "100/s", "--stuck-remaining").stuck_remaining is True
    assert _parse("--rate-limit", "100/s").stuck_remaining is False


@pytest.mark.parametrize(
    "argv",
    [
        ["--latency-jump", "5"],
        ["--latency-jump", "5:"],
        ["--latency-jump", ":2000"],
        ["--latency-jump", "-1:2000"],
        ["--latency-jump", "soon:2000"],
        ["--latency-jump", "5:-20"],
        ["--latency-jump", "5:0:100"],
        ["--latency-jump", "5:200:100"],
        ["--stuck-remaining"],
        ["--stuck-remaining", "--rate-limit", "10/s", "--no-rate-headers"],
    ],
)
def test_bad_jump_and_stuck_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse(*argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra",
    [
        {"latency_jump": (-1.0, 10.0, None)},
        {"latency_jump": (1.0, float("nan"), None)},
        {"latency_jump": (1.0, 100.0, 50.0)},
        {"stuck_remaining": True},
        {"stuck_remaining": True, "rate_limit": (5, 1.0), "rate_headers": False},
    ],
)
def test_the_config_refuses_a_bad_jump_or_a_stuck_remaining_with_nothing_to_stick(
    extra: dict[str, object],
) -> None:
    with pytest.raises(ValueError, match=r"^(latency_jump|stuck_remaining):"):
        EmulatorConfig(**extra)  # type: ignore[arg-type]

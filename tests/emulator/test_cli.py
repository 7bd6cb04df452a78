"""The command line: argument errors in-process; serving and signals in a real subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from batch_override.emulator.cli import main, parse_rate_limit
from tests.emulator.support import post

LINE_PREFIX = "batch-override emulator listening on "


@contextlib.asynccontextmanager
async def running(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Start ``python -m batch_override.emulator --port 0 ARGS`` and yield it with its URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "batch_override.emulator",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        assert line.startswith(LINE_PREFIX), line
        yield process, line.split()[-1]
    finally:
        if process.returncode is None:
            process.kill()  # only if the test failed before stopping it
            await process.wait()


async def stop(process: asyncio.subprocess.Process, signum: signal.Signals) -> tuple[int, bytes, bytes]:
    process.send_signal(signum)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode is not None
    return process.returncode, stdout, stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serves_until_signalled_then_exits_zero_quietly(
    session: aiohttp.ClientSession, signum: signal.Signals
) -> None:
    async with running() as (process, url):
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        reply = await post(session, url, "image", "h")
        assert (reply.status, reply.json()) == (
            400,
            {"error": "You haven't got any request for this content."},
        )
        returncode, stdout, stderr = await stop(process, signum)
    assert (returncode, stdout, stderr) == (0, b"", b"")


async def test_keys_state_file_and_rate_limit_from_the_command_line(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    states = tmp_path / "states.csv"
    states.write_text("media,hash,status\nvideo,abc,classified\nvideo,old,expired\n", encoding="utf-8")
    args = ("--api-key", "key-one", "--api-key", "key-two", "--state", str(states), "--rate-limit", "5/2s")
    async with running(*args) as (process, url):
        created = await post(session, url, "video", "abc", key="key-two")
        assert (created.status, created.headers["X-RateLimit-Limit"]) == (201, "5")
        assert (await post(session, url, "video", "old", key="key-one")).status == 400
        assert (await post(session, url, "video", "abc")).status == 401  # the demo key was replaced
        returncode, _, stderr = await stop(process, signal.SIGTERM)
    assert (returncode, stderr) == (0, b"")
    assert b"key-one" not in stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60/min", (60, 60.0)),
        ("5/2s", (5, 2.0)),
        ("5/s", (5, 1.0)),
        ("5/2", (5, 2.0)),
        ("1000/h", (1000, 3600.0)),
        ("3/0.5s", (3, 0.5)),
        ("10 / 2 minutes", (10, 120.0)),
    ],
)
def test_rate_limit_reads_count_per_period(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate-limit", "5"],
        ["--rate-limit", "5/"],
        ["--rate-limit", "0/s"],
        ["--rate-limit", "5/0s"],
        ["--rate-limit", "5/2d"],
        ["--fail-rate", "1.5"],
        ["--drop-rate", "x"],
        ["--fail-rate", "0.6", "--drop-rate", "0.6"],
        ["--latency-ms", "-1"],
        ["--latency-ms", "0:100"],
        ["--latency-ms", "200:100"],
        ["--latency-ms", "100:"],
        ["--capacity", "0"],
        ["--service-ms", "-5"],
        ["--laravel-windows"],
        ["--laravel-windows", "--rate-limit", "5/0.5s"],
        ["--laravel-windows", "memcached", "--rate-limit", "5/15s"],
        ["--unknown", "expired"],
        ["--port", "70000"],
        ["--state", "/nonexistent/states.csv"],
        ["--api-key", ""],
        ["--bogus"],
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_a_port_in_use_exits_1_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err

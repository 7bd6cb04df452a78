"""``--ping-url``: healthchecks-style pings to a loopback receiver, and what a bad receiver costs."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from batch_override.cli import main as cli
from batch_override.cli.ping import PING_TIMEOUT, Pinger
from batch_override.emulator import DEMO_API_KEY, load_state_csv
from tests.clock import VirtualClock
from tests.support import REPO, run_against, serve_app, sha, write_csv


class Receiver:
    """Records each request (method, path, headers, body); ``/moved/...`` answers a redirect."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], str]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.record)

    async def record(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        self.seen.append((request.method, request.path, dict(request.headers), body))
        if request.path.startswith("/moved"):
            raise web.HTTPFound("/elsewhere")
        return web.Response(text="OK")

    @property
    def paths(self) -> list[str]:
        return [path for _, path, _, _ in self.seen]


def _pings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "--ping-url" in line]


async def test_the_demo_pings_start_then_its_exit_code_1_and_never_sends_the_key(
    tmp_path: Path, emulator_factory: Any
) -> None:
    emulator = await emulator_factory(states=load_state_csv(REPO / "sample_data" / "emulator_state.csv"))
    receiver = Receiver()
    async with serve_app(receiver.app) as url:
        ping = f"{url}/ping/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"
        result = await run_against(
            emulator.url, REPO / "sample_data" / "corrections.csv", tmp_path / "l.csv", "--ping-url", ping
        )
    assert result.returncode == 1, result.stderr
    assert receiver.paths == [
        "/ping/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278/start",
        "/ping/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278/1",
    ]
    assert [method for method, *_ in receiver.seen] == ["POST", "POST"]
    assert "-> exit 1" in receiver.seen[1][3]  # the summary, for the check's log
    for _, _, headers, body in receiver.seen:
        assert DEMO_API_KEY not in str(headers) + body
        assert not {"X-Api-Key", "Authorization", "Cookie"} & set(headers)
    assert _pings(result.stderr) == []


async def test_a_run_that_exits_0_pings_the_url_itself(tmp_path: Path, emulator_factory: Any) -> None:
    emulator = await emulator_factory(unknown="classified")
    receiver = Receiver()
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    async with serve_app(receiver.app) as url:
        result = await run_against(
            emulator.url, corrections, tmp_path / "l.csv", "--ping-url", f"{url}/check/"
        )
    assert result.returncode == 0, result.stderr
    assert receiver.paths == ["/check/start", "/check"]


async def test_an_input_that_cannot_be_read_pings_its_exit_code_2(tmp_path: Path) -> None:
    receiver = Receiver()
    missing = tmp_path / "missing.csv"
    async with serve_app(receiver.app) as url:
        result = await run_against(
            "http://127.0.0.1:9", missing, tmp_path / "l.csv", "--ping-url", f"{url}/c"
        )
    assert result.returncode == 2
    assert receiver.paths == ["/c/start", "/c/2"]


async def test_a_redirect_is_not_followed_and_is_one_warning_a_ping_that_keeps_the_exit_code(
    tmp_path: Path, emulator_factory: Any
) -> None:
    emulator = await emulator_factory(unknown="classified")
    receiver = Receiver()
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    async with serve_app(receiver.app) as url:
        result = await run_against(
            emulator.url, corrections, tmp_path / "l.csv", "--ping-url", f"{url}/moved/x"
        )
    assert result.returncode == 0, result.stderr
    assert receiver.paths == ["/moved/x/start", "/moved/x"]  # never /elsewhere
    warnings = _pings(result.stderr)
    assert len(warnings) == 2, result.stderr  # one per ping
    for warning in warnings:
        assert "HTTP 302 (redirects are not followed)" in warning
        assert "/moved" not in warning  # the URL's path is a capability: only scheme and host


async def test_an_unreachable_receiver_is_one_warning_a_ping_and_never_changes_the_exit_code(
    tmp_path: Path, emulator_factory: Any, unused_tcp_port: int
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    ping = f"http://127.0.0.1:{unused_tcp_port}/c"
    result = await run_against(emulator.url, corrections, tmp_path / "l.csv", "--ping-url", ping)
    assert result.returncode == 0, result.stderr
    warnings = _pings(result.stderr)
    assert len(warnings) == 2 and all("cannot ping" in w for w in warnings), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://hc-ping.com/x", "--ping-url 'ftp://hc-ping.com': expected http(s)://HOST[/PATH]"),
        ("https://user:s3cret@hc-ping.com/x", "--ping-url must not carry credentials (user:password@)"),
    ],
)
async def test_a_malformed_ping_url_is_a_usage_error_before_anything_is_sent(
    tmp_path: Path, url: str, expected: str
) -> None:
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    result = await run_against("http://127.0.0.1:9", corrections, tmp_path / "l.csv", "--ping-url", url)
    assert result.returncode == 2
    assert result.stderr.strip() == f"batch-override: error: {expected}"
    assert "s3cret" not in result.stderr


@pytest.fixture
def hanging() -> Iterator[str]:
    """A loopback listener that takes connections (the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/c"
    finally:
        listener.close()


def test_a_hanging_receiver_costs_each_ping_its_own_deadline_and_one_warning_each(
    hanging: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert PING_TIMEOUT == 10.0
    pinger = Pinger(hanging, budget=0.2)
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="batch_override"):
        pinger.start()
        pinger.finish(1, "summary")
    assert time.monotonic() - began < 5.0  # not a hang: two deadlines of 0.2 s, however loaded
    where = hanging.removesuffix("/c")
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot ping --ping-url {where} (start): no answer within its 0.2 s",
        f"cannot ping --ping-url {where} (exit 1): no answer within its 0.2 s; "
        "the check will see this run as missed",
    ]


async def test_the_final_ping_of_a_run_of_20_minutes_is_sent_with_its_own_deadline(
    clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver()
    async with serve_app(receiver.app) as url:
        pinger = Pinger(f"{url}/c", clock=clock)
        await asyncio.to_thread(pinger.start)
        clock.advance(20 * 60)  # the run: far longer than one ping's 10 s
        with caplog.at_level(logging.WARNING, logger="batch_override"):
            await asyncio.to_thread(pinger.finish, 0, "run r: 1 rows in 1200.0s -> exit 0")
    assert receiver.paths == ["/c/start", "/c"]
    assert receiver.seen[1][3] == "run r: 1 rows in 1200.0s -> exit 0"
    assert caplog.records == []


def test_a_failed_final_ping_is_one_warning_that_quiet_still_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], unused_tcp_port: int
) -> None:
    ping = f"http://127.0.0.1:{unused_tcp_port}/c"  # nothing listens: refused at once
    code = cli.main(
        ["run", str(tmp_path / "missing.csv"), "--ledger", str(tmp_path / "l.csv"),
         "--api-url", "http://127.0.0.1:9", "--ping-url", ping, "--quiet"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    warnings = _pings(err)
    assert len(warnings) == 1, err  # the start's failure is hidden by --quiet, the final's is not
    assert f"WARNING cannot ping --ping-url http://127.0.0.1:{unused_tcp_port} (exit 2): " in warnings[0]
    assert "the check will see this run as missed" in warnings[0]


@pytest.mark.integration
async def test_with_the_real_deadline_a_hanging_receiver_costs_a_run_10_seconds_a_ping(
    tmp_path: Path, emulator_factory: Any, hanging: str
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    began = time.monotonic()
    result = await run_against(emulator.url, corrections, tmp_path / "l.csv", "--ping-url", hanging)
    spent = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert len(_pings(result.stderr)) == 2  # the start's and the final's
    assert spent >= 2 * PING_TIMEOUT  # each ping waited its own 10 s
    assert spent < 2 * PING_TIMEOUT + 30  # not a hang: the run itself and Python's start

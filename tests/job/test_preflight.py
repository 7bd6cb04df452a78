"""The preflight says a wrong ``--api-url`` at once: a name that does not exist, or a server that
accepts the empty body (not the API), is exit 3 before any row is sent; no answer at all (a port
that refuses, a resolver that is down) is an outage, retried until ``--max-outage`` with a warning
naming the URL at least once a minute.  A dry run with a key probes the same way.

Names are looked up by an injected resolver (no DNS server needed) and the outage's minutes pass
on a virtual clock, so each test takes milliseconds."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from batch_override.apikey import ApiKey
from batch_override.config import Rate, RunConfig
from batch_override.emulator import DEMO_API_KEY
from batch_override.job.parts import DEFAULT_PARTS, Parts
from batch_override.job.runner import run_job_async
from batch_override.summary import Summary
from tests.clock import VirtualClock
from tests.job.support import always, scripted
from tests.support import accounted_rows, read_ledger, sha, write_csv

ROWS = [(sha(i), "human") for i in range(5)]


class FailingResolver(AbstractResolver):
    """A resolver whose every lookup fails with ``errno`` (``EAI_NONAME``, ``EAI_AGAIN``)."""

    def __init__(self, errno: int) -> None:
        self.errno = errno
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        raise socket.gaierror(self.errno, "lookup failed")

    async def close(self) -> None:
        pass


def ticking(clock: VirtualClock, step: float = 5.0) -> Any:
    """``clock``, moved ``step`` seconds at every read: an outage of minutes in a few dozen tries."""

    def read() -> float:
        clock.advance(step)
        return clock()

    return read


async def run(
    tmp_path: Path, url: str, parts: Parts = DEFAULT_PARTS, *, dry_run: bool = False, **settings: Any
) -> Summary:
    corrections = write_csv(tmp_path / "c.csv", ROWS)
    values: dict[str, Any] = {"rate": Rate(1000, 1.0), "backoff_base": 0.01, "backoff_cap": 0.02}
    values.update(settings)
    config = RunConfig(
        input=str(corrections), ledger=tmp_path / "l.csv", api_url=url, dry_run=dry_run, **values
    )
    return await asyncio.wait_for(run_job_async(config, ApiKey(DEMO_API_KEY), parts), 30)


def assert_no_row_sent(ledger: Path, dry_run: bool) -> None:
    """No row was attempted: a dry run plans each one; a run writes no line and counts every row
    ``not_attempted`` (the next run sends them)."""
    if dry_run:
        assert set(read_ledger(ledger)["outcome"]) == {"planned"}
    else:
        assert accounted_rows(ledger, len(ROWS)) == ({}, len(ROWS))


def so_far(records: list[logging.LogRecord]) -> list[int]:
    """The seconds of outage each preflight warning tells (``(1m5s so far)``)."""
    told = []
    for record in records:
        match = re.search(r"\((?:(\d+)m)?(?:(\d+)s)? so far\)$", record.getMessage())
        if record.levelno == logging.WARNING and match:
            told.append(int(match.group(1) or 0) * 60 + int(match.group(2) or 0))
    return told


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry run"])
async def test_a_name_that_does_not_exist_is_exit_3_at_once_naming_the_url(
    tmp_path: Path, dry_run: bool
) -> None:
    resolver = FailingResolver(socket.EAI_NONAME)
    summary = await run(
        tmp_path, "https://bakcend.example.com", Parts(resolver=lambda: resolver), dry_run=dry_run
    )
    assert summary.exit_code == 3
    assert summary.stop_reason == (
        "preflight: https://bakcend.example.com: the name bakcend.example.com does not exist "
        "(EAI_NONAME): is --api-url right?"
    )
    assert resolver.asked == ["bakcend.example.com"]  # asked once: no retry can help
    assert_no_row_sent(tmp_path / "l.csv", dry_run)


@pytest.mark.parametrize("status", [200, 201, 204])
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry run"])
async def test_a_server_that_accepts_the_empty_body_is_not_the_api_exit_3_before_any_row(
    tmp_path: Path, status: int, dry_run: bool
) -> None:
    async with scripted(always(status, {"ok": True})) as server:
        summary = await run(tmp_path, server.url, dry_run=dry_run)
    assert summary.exit_code == 3
    assert summary.stop_reason == (
        f"preflight: {server.url}: HTTP {status} to an empty body, which the API never accepts: "
        "not the identifAI API; is --api-url right?"
    )
    assert [h.body for h in server.hits] == [b"{}"]  # the preflight only: no row carried the key there
    assert_no_row_sent(tmp_path / "l.csv", dry_run)


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry run"])
async def test_a_port_that_refuses_is_an_outage_warned_of_at_once_then_every_minute_then_exit_5(
    tmp_path: Path, clock: VirtualClock, unused_tcp_port: int, caplog: pytest.LogCaptureFixture, dry_run: bool
) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"
    with caplog.at_level(logging.INFO, logger="batch_override"):
        summary = await run(tmp_path, url, Parts(clock=ticking(clock)), dry_run=dry_run, max_outage=600.0)
    assert summary.exit_code == 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0] == (
        f"preflight: no answer from {url}: connection refused by 127.0.0.1:{unused_tcp_port}; "
        "retrying until --max-outage 10m (0s so far)"
    )
    told = so_far(caplog.records)
    assert len(told) >= 10  # ten minutes of outage, told at least once a minute
    assert all(0 < later - earlier <= 60 for earlier, later in itertools.pairwise(told))
    assert told[-1] >= 600 - 60  # ... until the end
    assert_no_row_sent(tmp_path / "l.csv", dry_run)


async def test_a_resolver_that_is_down_is_an_outage_retried_not_a_wrong_name(
    tmp_path: Path, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    resolver = FailingResolver(socket.EAI_AGAIN)
    with caplog.at_level(logging.INFO, logger="batch_override"):
        summary = await run(
            tmp_path,
            "https://backend.example.com",
            Parts(resolver=lambda: resolver, clock=ticking(clock)),
            max_outage=120.0,
        )
    assert summary.exit_code == 5
    assert len(resolver.asked) > 3
    first = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert first == (
        "preflight: no answer from https://backend.example.com: the resolver cannot look "
        "backend.example.com up now (EAI_AGAIN); retrying until --max-outage 2m (0s so far)"
    )


async def test_without_the_preflight_a_server_that_accepts_anything_gets_rows_until_the_failure_rate(
    tmp_path: Path,
) -> None:
    # --no-preflight keeps the old behaviour: nothing checks the URL before the rows go; the
    # failure threshold stops the run then, and names where the rows went.
    async with scripted(always(200, {"ok": True})) as server:
        summary = await run(tmp_path, server.url, preflight=False, failure_window=2, concurrency=1)
    assert len(server.hits) == 2
    assert summary.exit_code == 3
    assert summary.stop_reason.endswith(f"wrong --media, key or input? (sent to {server.url})")

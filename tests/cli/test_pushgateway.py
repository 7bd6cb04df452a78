"""Pushing to a Pushgateway that misbehaves: redirects, trickles, refuses.  Loopback stand-ins only.

What must hold whatever the gateway does: the Basic auth credentials reach the named host alone
(a redirect is never followed, for any 3xx), a push costs at most its deadline, and a failed push
is one warning that never changes the run's exit code.
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import pytest
from aiohttp import web

from batch_override.cli.metrics import PushFailed, push_metrics_async, push_url
from tests.cli.support import summary_of_a_run
from tests.support import cli_env, run_against, serve_app, sha, write_csv

_CREDENTIALS = {"PUSHGATEWAY_USERNAME": "ops", "PUSHGATEWAY_PASSWORD": "s3cret-pw"}


def _recorder(seen: list[tuple[str, str, str]], answer: web.Response | None = None) -> web.Application:
    async def record(request: web.Request) -> web.StreamResponse:
        await request.read()
        seen.append((request.method, request.path, request.headers.get("Authorization", "")))
        return answer if answer is not None else web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return app


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("exit_code", [0, 1])
async def test_a_redirect_is_a_failed_push_and_the_other_host_never_hears_of_it(
    status: int, exit_code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    first: list[tuple[str, str, str]] = []
    second: list[tuple[str, str, str]] = []
    async with serve_app(_recorder(second)) as elsewhere:
        # "localhost" names the second host: another host name than the gateway's 127.0.0.1.
        other = elsewhere.replace("127.0.0.1", "localhost") + "/metrics/job/j"
        redirect = web.Response(status=status, headers={"Location": other})
        async with serve_app(_recorder(first, redirect)) as gateway:
            with pytest.raises(PushFailed) as failed:
                await push_metrics_async(gateway, summary_of_a_run(exit_code), job="j")
    assert second == []
    token = "Basic " + base64.b64encode(b"ops:s3cret-pw").decode()
    assert first == [("PUT" if exit_code == 0 else "POST", "/metrics/job/j", token)]
    assert str(failed.value) == f"it answered {status}, a redirect to localhost; not followed"


async def test_a_gateway_that_trickles_its_answer_costs_the_deadline_not_forever() -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200, headers={"Content-Length": "1000"})
        await response.prepare(request)
        for _ in range(1000):  # a byte every 0.1 s: each read is quick, the whole is 100 s
            await response.write(b"x")
            await asyncio.sleep(0.1)
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", trickle)
    async with serve_app(app, shutdown_timeout=0.1) as gateway:
        started = time.monotonic()
        with pytest.raises(PushFailed, match=r"^no complete answer within 0\.5 s$"):
            await push_metrics_async(gateway, summary_of_a_run(0), job="j", deadline=0.5)
        # Not a hang: the message says the 0.5-s deadline ended it; the whole answer takes 100 s.
        assert time.monotonic() - started < 30


async def test_a_refusing_gateway_is_a_failed_push_naming_the_status() -> None:
    seen: list[tuple[str, str, str]] = []
    async with serve_app(_recorder(seen, web.Response(status=400, reason="Bad Request"))) as gateway:
        with pytest.raises(PushFailed, match=r"^it answered 400 Bad Request$"):
            await push_metrics_async(gateway, summary_of_a_run(1), job="j")
    assert len(seen) == 1


def test_job_names_are_escaped_as_the_pushgateway_reads_them() -> None:
    assert push_url("127.0.0.1:9091/", "nightly run") == (
        "http://127.0.0.1:9091/metrics/job@base64/" + base64.urlsafe_b64encode(b"nightly run").decode()
    )
    assert push_url("http://127.0.0.1:9091", "a+b") == "http://127.0.0.1:9091/metrics/job/a%2Bb"


async def test_a_failed_run_whose_push_is_redirected_warns_once_and_keeps_its_exit_code(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified", states={("video", sha(9)): "not_classified"})
    second: list[tuple[str, str, str]] = []
    first: list[tuple[str, str, str]] = []
    async with serve_app(_recorder(second)) as elsewhere:
        redirect = web.Response(status=302, headers={"Location": elsewhere.replace("127.0.0.1", "localhost")})
        async with serve_app(_recorder(first, redirect)) as gateway:
            bad = write_csv(tmp_path / "bad.csv", [(sha(9), "human")])
            result = await run_against(
                emulator.url,
                bad,
                tmp_path / "l.csv",
                "--pushgateway",
                gateway,
                env=cli_env(extra=_CREDENTIALS),
            )
    assert result.returncode == 1, result.stderr
    assert len(first) == 1 and second == []
    warnings = [line for line in result.stderr.splitlines() if "pushgateway" in line.lower()]
    assert len(warnings) == 1, result.stderr
    assert "answered 302, a redirect to localhost; not followed" in warnings[0]
    assert "s3cret-pw" not in result.stdout + result.stderr

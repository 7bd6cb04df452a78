"""The network a job meets in production: an HTTP(S) proxy from the environment, and TLS with a
private certificate authority.  Real loopback servers only: a forwarding proxy, a CONNECT tunnel,
and the emulator served over HTTPS with a certificate made at test time."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from batch_override.emulator import EmulatorConfig, build_app
from tests.support import FAST, Result, accounted_rows, cli_env, run_cli, sha, start_cli, write_csv

_NETWORK_VARS = {
    "http_proxy", "https_proxy", "all_proxy", "no_proxy", "ssl_cert_file", "ssl_cert_dir",
    "requests_ca_bundle", "curl_ca_bundle",
}  # fmt: skip
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length", "content-encoding",
}  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    """The CLI's environment with no proxy or CA settings inherited from the machine, plus ``extra``."""
    env = {k: v for k, v in cli_env().items() if k.lower() not in _NETWORK_VARS}
    env.update(extra)
    return env


# -- a forwarding proxy (plain http) ---------------------------------------------------------------
@dataclass
class Proxy:
    url: str = ""
    seen: list[str] = field(default_factory=list)  # "METHOD absolute-url" of each forwarded request
    drop_headers: tuple[str, ...] = ()  # response headers it strips (some corporate proxies do)


@contextlib.asynccontextmanager
async def forwarding_proxy(drop_headers: tuple[str, ...] = ()) -> AsyncIterator[Proxy]:
    """An HTTP proxy on 127.0.0.1: takes absolute-form requests and forwards them, counting each."""
    proxy = Proxy(drop_headers=tuple(h.lower() for h in drop_headers))
    async with aiohttp.ClientSession(trust_env=False, auto_decompress=False) as upstream:

        async def forward(request: web.Request) -> web.Response:
            if not request.raw_path.startswith("http://"):
                return web.Response(status=400, text="not a proxy request")
            proxy.seen.append(f"{request.method} {request.raw_path}")
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            async with upstream.request(
                request.method, request.raw_path, headers=headers, data=await request.read(),
                allow_redirects=False,
            ) as answer:  # fmt: skip
                body = await answer.read()
                keep = {
                    k: v
                    for k, v in answer.headers.items()
                    if k.lower() not in _HOP_BY_HOP and k.lower() not in proxy.drop_headers
                }
                return web.Response(status=answer.status, body=body, headers=keep)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            proxy.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            yield proxy
        finally:
            await runner.cleanup()


async def _run(
    url: str, tmp_path: Path, env: Mapping[str, str], *extra: str, rows: int = 5, process: bool = False
) -> Result:
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(rows)])
    return await run_cli(
        "run", str(corrections), "--ledger", str(tmp_path / "l.csv"), "--api-url", url, *extra,
        env=env, process=process,
    )  # fmt: skip


async def test_http_proxy_from_the_environment_carries_every_request(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    async with forwarding_proxy() as proxy:
        result = await _run(emulator.url, tmp_path, _env(HTTP_PROXY=proxy.url, NO_PROXY=""), *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(emulator.overrides()) == 5
    assert len(proxy.seen) == emulator.stats()["requests"] == 6  # five rows and the preflight
    assert all(s.startswith(f"POST {emulator.url}/api/classification_video/") for s in proxy.seen)


async def test_loopback_is_not_exempt_from_the_proxy_unless_no_proxy_says_so(
    tmp_path: Path, emulator_factory
) -> None:
    # Documents aiohttp's (urllib's) rule the job inherits: without NO_PROXY, 127.0.0.1 is proxied too.
    emulator = await emulator_factory(unknown="classified")
    async with forwarding_proxy() as proxy:
        result = await _run(emulator.url, tmp_path, _env(HTTP_PROXY=proxy.url), *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(proxy.seen) == 6


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*"])
async def test_no_proxy_naming_the_api_host_bypasses_the_proxy(
    tmp_path: Path, emulator_factory, no_proxy: str
) -> None:
    emulator = await emulator_factory(unknown="classified")
    async with forwarding_proxy() as proxy:
        result = await _run(emulator.url, tmp_path, _env(HTTP_PROXY=proxy.url, NO_PROXY=no_proxy), *FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert proxy.seen == []
    assert len(emulator.overrides()) == 5


async def test_a_proxy_that_drops_rate_limit_headers_does_not_hang_the_default_auto_rate(
    tmp_path: Path, emulator_factory
) -> None:
    """A subprocess: a run that hangs is ended by SIGTERM, then by its PID."""
    # Without headers auto paces at exactly 60/min: three rows and the preflight take 3 s; the hang
    # this guards against waited a whole assumed minute, so 20 s tells them apart on any machine.
    emulator = await emulator_factory(unknown="classified", rate_limit=(50, 1.0))
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(3)])
    async with forwarding_proxy(drop_headers=("X-RateLimit-Limit", "X-RateLimit-Remaining")) as proxy:
        proc = await start_cli(
            "run", str(corrections), "--ledger", str(tmp_path / "l.csv"), "--api-url", emulator.url,
            env=_env(HTTP_PROXY=proxy.url, NO_PROXY=""),
        )  # fmt: skip
        try:
            finished = await _exited(proc, 20)
            ended_by_sigterm = None
            if not finished:
                proc.terminate()
                ended_by_sigterm = await _exited(proc, 4)
        finally:
            if proc.returncode is None:
                proc.kill()  # our own child, by PID
            await proc.communicate()
    assert finished, (
        f"still running after 20 s ({len(proxy.seen)} requests); SIGTERM ended it: {ended_by_sigterm}"
    )
    assert proc.returncode == 0
    assert len(emulator.overrides()) == 3


async def _exited(proc: asyncio.subprocess.Process, seconds: float) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), seconds)
    except TimeoutError:
        return False
    return True


# -- a CONNECT tunnel (https through a proxy) --------------------------------------------------------
@contextlib.asynccontextmanager
async def connect_tunnel() -> AsyncIterator[Proxy]:
    """An HTTPS proxy on 127.0.0.1: answers CONNECT host:port and pipes bytes both ways."""
    proxy = Proxy()
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        proxy.seen.append(f"CONNECT {target}")
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        for task in (pipe(reader, up_writer), pipe(up_reader, writer)):
            pipes.add(asyncio.ensure_future(task))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield proxy
    finally:
        server.close()
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        await server.wait_closed()


# -- the emulator over HTTPS ---------------------------------------------------------------------
@dataclass
class TlsServer:
    url: str
    cert: Path

    async def overrides(self) -> list[dict[str, str]]:
        context = ssl.create_default_context(cafile=str(self.cert))
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.get(f"{self.url}/_emulator/overrides", ssl=context) as resp,
        ):
            result: list[dict[str, str]] = await resp.json()
            return result

    async def requests(self) -> int:
        context = ssl.create_default_context(cafile=str(self.cert))
        async with (
            aiohttp.ClientSession(trust_env=False) as session,
            session.get(f"{self.url}/_emulator/stats", ssl=context) as resp,
        ):
            return int((await resp.json())["requests"])


@pytest.fixture
async def tls_emulator(tmp_path: Path) -> AsyncIterator[TlsServer]:
    """The emulator on https://127.0.0.1:PORT with a self-signed certificate made for this test."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path / "tls"
    folder.mkdir()
    key, cert = folder / "k.pem", folder / "c.pem"
    made = await asyncio.create_subprocess_exec(
        openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = await made.communicate()
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a certificate: {err.decode()[-200:]}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(build_app(EmulatorConfig(unknown="classified")))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        yield TlsServer(f"https://127.0.0.1:{runner.addresses[0][1]}", cert)
    finally:
        await runner.cleanup()


async def test_an_untrusted_certificate_stops_the_run_with_exit_3_and_says_how_to_trust_it(
    tmp_path: Path, tls_emulator: TlsServer
) -> None:
    result = await _run(tls_emulator.url, tmp_path, _env(), *FAST)
    assert result.returncode == 3, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr  # one line, no traceback
    assert "certificate" in errors[0] and "--ca-bundle" in errors[0]
    assert "Traceback" not in result.stderr
    assert await tls_emulator.overrides() == []
    assert await tls_emulator.requests() == 0  # no request got past the handshake
    assert accounted_rows(tmp_path / "l.csv", 5) == ({}, 5)  # no row attempted: counted, none written


async def test_ca_bundle_makes_a_private_certificate_trusted(tmp_path: Path, tls_emulator: TlsServer) -> None:
    result = await _run(tls_emulator.url, tmp_path, _env(), *FAST, "--ca-bundle", str(tls_emulator.cert))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(await tls_emulator.overrides()) == 5


async def test_ssl_cert_file_in_the_environment_makes_it_trusted_too(
    tmp_path: Path, tls_emulator: TlsServer
) -> None:
    """A process: the default TLS context (aiohttp's, made when it is imported) reads
    SSL_CERT_FILE from the environment the process started with, as cron or a pod gives it."""
    env = _env(SSL_CERT_FILE=str(tls_emulator.cert))
    result = await _run(tls_emulator.url, tmp_path, env, *FAST, process=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(await tls_emulator.overrides()) == 5


async def test_ca_bundle_adds_to_the_system_authorities_instead_of_replacing_them(
    tmp_path: Path, tls_emulator: TlsServer
) -> None:
    """The server's certificate is trusted by the system store (SSL_CERT_FILE); --ca-bundle names
    another, unrelated authority: the run must still trust the server, as the help says "extra"."""
    other = tmp_path / "other-ca.pem"
    made = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "other.key"),
        "-out", str(other), "-days", "1", "-subj", "/CN=Other CA",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert await made.wait() == 0
    env = _env(SSL_CERT_FILE=str(tls_emulator.cert))
    result = await _run(tls_emulator.url, tmp_path, env, *FAST, "--ca-bundle", str(other))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(await tls_emulator.overrides()) == 5


async def test_a_ca_bundle_that_cannot_be_loaded_exits_2_with_one_line(
    tmp_path: Path, tls_emulator: TlsServer
) -> None:
    result = await _run(tls_emulator.url, tmp_path, _env(), *FAST, "--ca-bundle", str(tmp_path / "none.pem"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    (message,) = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert "--ca-bundle" in message and "none.pem" in message
    assert await tls_emulator.requests() == 0


async def test_https_goes_through_the_https_proxy_as_a_connect_tunnel(
    tmp_path: Path, tls_emulator: TlsServer
) -> None:
    async with connect_tunnel() as tunnel:
        env = _env(HTTPS_PROXY=tunnel.url, NO_PROXY="")
        result = await _run(tls_emulator.url, tmp_path, env, *FAST, "--ca-bundle", str(tls_emulator.cert))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(await tls_emulator.overrides()) == 5
    target = tls_emulator.url.removeprefix("https://")
    assert tunnel.seen and set(tunnel.seen) == {f"CONNECT {target}"}


async def test_no_proxy_also_bypasses_the_https_proxy(tmp_path: Path, tls_emulator: TlsServer) -> None:
    async with connect_tunnel() as tunnel:
        env = _env(HTTPS_PROXY=tunnel.url, NO_PROXY="127.0.0.1")
        result = await _run(tls_emulator.url, tmp_path, env, *FAST, "--ca-bundle", str(tls_emulator.cert))
    assert result.returncode == 0, result.stdout + result.stderr
    assert tunnel.seen == []

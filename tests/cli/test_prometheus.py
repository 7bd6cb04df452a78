"""Prometheus the standard way: the textfile passes promtool, runs push to a real Pushgateway.

The Pushgateway (Debian's ``prometheus-pushgateway``) runs on an ephemeral loopback port per
test; ``promtool`` comes from Debian's ``prometheus``.  Both are installed by ``.ci/run``.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from batch_override.cli.metrics import build_registry, write_metrics
from tests.binaries import debian_binary
from tests.cli.support import metric_key, scrape_pushgateway, summary_of_a_run
from tests.support import cli_env, run_against, run_cli, sha, write_csv


def _promtool(text: bytes) -> subprocess.CompletedProcess[bytes]:
    promtool = debian_binary("promtool", "prometheus")
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)


def test_the_textfile_passes_promtool_check_metrics_with_no_finding(tmp_path: Path) -> None:
    path = tmp_path / "batch_override.prom"
    write_metrics(
        path, summary_of_a_run(), job="nightly", last_success_unix=1_700_000_000.5, now=1_700_100_000
    )
    result = _promtool(path.read_bytes())
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_the_pushed_metrics_pass_promtool_too_and_carry_no_job_label_of_their_own() -> None:
    from prometheus_client import generate_latest

    text = generate_latest(build_registry(summary_of_a_run(0), job=None, last_success_unix=5.0, now=6.0))
    result = _promtool(text)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert b"job=" not in text


async def test_a_run_shows_its_metrics_on_the_pushgateway_and_a_failed_run_keeps_the_last_success(
    tmp_path: Path, emulator_factory, pushgateway: str
) -> None:
    emulator = await emulator_factory(unknown="classified", states={("video", sha(9)): "not_classified"})
    good = write_csv(tmp_path / "good.csv", [(sha(i), "human") for i in range(3)])
    ok = await run_against(emulator.url, good, tmp_path / "nightly.ledger.csv", "--pushgateway", pushgateway)
    assert ok.returncode == 0, ok.stderr
    first = scrape_pushgateway(pushgateway)
    job = "nightly.ledger"  # the ledger's file name, as for --metrics-file
    assert first[metric_key("rows", job=job, outcome="submitted")] == 3
    assert first[metric_key("exit_code", job=job)] == 0
    success = first[metric_key("last_success_timestamp_seconds", job=job)]

    bad = write_csv(tmp_path / "bad.csv", [(sha(9), "human")])
    failed = await run_against(emulator.url, bad, tmp_path / "other.csv", "--pushgateway", pushgateway,
                        "--metrics-job", job)  # fmt: skip
    assert failed.returncode == 1
    second = scrape_pushgateway(pushgateway)
    assert second[metric_key("exit_code", job=job)] == 1
    assert second[metric_key("rows", job=job, outcome="not_ready")] == 1
    assert second[metric_key("last_success_timestamp_seconds", job=job)] == success
    assert second[metric_key("last_run_timestamp_seconds", job=job)] >= success


async def test_an_unreachable_pushgateway_is_one_warning_and_never_changes_the_exit_code(
    tmp_path: Path, emulator_factory, unused_tcp_port: int
) -> None:
    emulator = await emulator_factory(unknown="classified")
    good = write_csv(tmp_path / "good.csv", [(sha(i), "human") for i in range(2)])
    result = await run_against(
        emulator.url, good, tmp_path / "l.csv", "--pushgateway", f"http://127.0.0.1:{unused_tcp_port}"
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "pushgateway" in line.lower()]
    assert len(warnings) == 1 and "cannot push" in warnings[0], result.stderr
    assert "Traceback" not in result.stderr


async def test_pushes_authenticate_from_the_environment_put_on_success_post_otherwise(
    tmp_path: Path, emulator_factory
) -> None:
    seen: list[tuple[str, str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.headers.get("Authorization", "")))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        emulator = await emulator_factory(unknown="classified", states={("video", sha(9)): "not_classified"})
        env = cli_env(extra={"PUSHGATEWAY_USERNAME": "ops", "PUSHGATEWAY_PASSWORD": "s3cret-pw"})
        gateway = f"http://127.0.0.1:{port}"
        good = write_csv(tmp_path / "good.csv", [(sha(1), "human")])
        bad = write_csv(tmp_path / "bad.csv", [(sha(9), "human")])
        push = ("--pushgateway", gateway, "--metrics-job", "j")
        ok = await run_against(emulator.url, good, tmp_path / "a.csv", *push, env=env)
        failed = await run_against(emulator.url, bad, tmp_path / "b.csv", *push, env=env)
    finally:
        await runner.cleanup()
    assert (ok.returncode, failed.returncode) == (0, 1)
    token = "Basic " + base64.b64encode(b"ops:s3cret-pw").decode()
    assert seen == [("PUT", "/metrics/job/j", token), ("POST", "/metrics/job/j", token)]
    for result in (ok, failed):
        assert "s3cret-pw" not in result.stdout + result.stderr


async def test_a_malformed_pushgateway_url_is_a_usage_error_before_anything_is_sent(tmp_path: Path) -> None:
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    result = await run_cli(
        "run", str(corrections), "--ledger", str(tmp_path / "l.csv"), "--pushgateway", "ftp://gateway:9091"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "batch-override: error: --pushgateway 'ftp://gateway:9091': expected http(s)://HOST[:PORT]"
    )
    assert not (tmp_path / "l.csv").exists()


def test_a_missing_program_fails_under_ci_and_is_skipped_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and promtool is not installed"):
        debian_binary("promtool", "prometheus")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install prometheus; \.ci/run installs it"):
        debian_binary("promtool", "prometheus")

"""The termination guarantee seen from the command line: a real full disk (RLIMIT_FSIZE), a
signal after another stop, and a bug, each in the process a cron job would run."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from batch_override.cli import hash_command as hashing
from batch_override.cli import main as cli
from batch_override.job import plan, runner
from batch_override.ledger.writer import LedgerLock
from batch_override.report import run_report as report
from tests.support import FAST, REPO, accounted_rows, cli_env, latest, read_ledger, run_cli, sha, write_csv

QUICK = (*FAST, "--no-preflight")


async def test_a_ledger_that_cannot_grow_exits_6_at_once_releases_the_lock_and_the_rerun_completes(
    tmp_path: Path, emulator_factory: Any
) -> None:
    """A subprocess: the file size limit (RLIMIT_FSIZE) is the process's own."""
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(400)])
    ledger = tmp_path / "l.csv"
    args = (
        "run",
        str(corrections),
        "--ledger",
        str(ledger),
        "--api-url",
        emulator.url,
        *QUICK,
        "--grace",
        "0.2",
    )

    def small_files() -> None:  # Python ignores SIGXFSZ: a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batch_override", *args, env=cli_env(), cwd=str(REPO),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, preexec_fn=small_files,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()  # our own child, by PID
            await proc.wait()

    assert proc.returncode == 6, err.decode()
    named = [line for line in err.decode().splitlines() if str(ledger) in line and "File too large" in line]
    assert named, err.decode()
    assert ledger.stat().st_size <= 20_000
    lock = LedgerLock(ledger)
    lock.acquire({"pid": 0})
    lock.release()

    rerun = await run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    final = latest(read_ledger(ledger))
    assert list(final["row"]) == list(range(400))
    assert set(final["outcome"]) <= {"submitted", "already_submitted", "skipped"}


@contextlib.asynccontextmanager
async def refusing_the_third_request() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """Requests 1 and 2 never answer; the third gets a 401."""
    hits = {"n": 0}
    refused = asyncio.Event()
    release = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        hits["n"] += 1
        if hits["n"] == 3:
            refused.set()
            return web.json_response({"message": "Unauthenticated."}, status=401)
        await release.wait()
        return web.json_response({}, status=201)

    app = web.Application()
    app.router.add_post("/api/{endpoint}/{hash}/override", handle)
    app_runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await app_runner.setup()
    await web.TCPSite(app_runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{app_runner.addresses[0][1]}", refused
    finally:
        release.set()
        await app_runner.cleanup()


async def test_sigterm_after_a_401_stop_cuts_the_grace_short_and_still_exits_3(tmp_path: Path) -> None:
    """A subprocess: the signal and the exit code are the process's own."""
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(10)])
    ledger = tmp_path / "l.csv"
    async with refusing_the_third_request() as (url, refused):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "batch_override", "run", str(corrections), "--ledger", str(ledger),
            "--api-url", url, *QUICK, "--concurrency", "3", "--grace", "60", "--timeout", "60",
            env=cli_env(), cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            while b"stopping" not in await asyncio.wait_for(proc.stderr.readline(), 30):
                pass
            assert refused.is_set()
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)
            took = time.monotonic() - signalled
        finally:
            if proc.returncode is None:
                proc.kill()  # our own child, by PID
            await proc.communicate()

    assert proc.returncode == 3
    assert took < 30  # not a hang, and far below --grace 60: the signal cut the grace short
    lines = read_ledger(ledger)
    assert lines["error_code"].value_counts().to_dict() == {"interrupted": 2, "unauthorized": 1}
    assert accounted_rows(ledger, 10)[1] == 7  # never sent: counted not_attempted


def _boom(*_args: Any, **_kw: Any) -> Any:
    raise RuntimeError("something nobody expected\nsecond line")


COMMANDS = {
    "run": (runner, "run_job_async", ["run", "IN", "--ledger", "LEDGER", "--dry-run"]),
    "validate": (plan, "index_input", ["validate", "IN"]),
    "report": (report, "build_report", ["report", "LEDGER"]),
    "hash": (hashing, "hash_corrections", ["hash", "IN", "-o", "OUT"]),
}


@pytest.mark.parametrize("verbose", [False, True])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unexpected_error_is_one_line_and_exit_70_in_every_command(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    verbose: bool,
) -> None:
    module, name, argv = COMMANDS[command]
    monkeypatch.setattr(module, name, _boom)  # stands for a bug anywhere below the command
    monkeypatch.delenv("IDENTIFAI_API_KEY", raising=False)
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    paths = {"IN": str(corrections), "LEDGER": str(tmp_path / "l.csv"), "OUT": str(tmp_path / "o.csv")}
    (tmp_path / "l.csv").write_text("row\n")
    try:
        code = cli.main([paths.get(a, a) for a in argv] + (["-v"] if verbose else []))
    finally:
        gc.unfreeze()  # `run` freezes the collector for the process it expects to end
    err = capsys.readouterr().err
    assert code == 70
    last = err.strip().splitlines()[-1]
    assert last == (
        "batch-override: internal error: RuntimeError: something nobody expected; rerun with -v for details"
    )
    assert ("Traceback (most recent call last)" in err) is verbose


async def test_sigterm_while_run_dash_waits_on_a_producer_that_never_closes_exits_143_at_once(
    tmp_path: Path,
) -> None:
    """A subprocess: the signal and the exit code are the process's own.  Standard input is a
    pipe whose producer wrote a header and never closes it; the copy of it must not outlive the run."""
    spool = tmp_path / "tmp"
    spool.mkdir()
    ledger = tmp_path / "l.csv"
    args = ("run", "-", "--ledger", str(ledger), "--api-url", "http://127.0.0.1:9", "--grace", "0.2")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batch_override", *args, env=cli_env(extra={"TMPDIR": str(spool)}),
        cwd=str(REPO), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    try:
        proc.stdin.write(f"hash,classification\n{sha(0)},human\n".encode())
        await proc.stdin.drain()
        for _ in range(1000):  # the run is copying its input (loop turns and short sleeps, no verdict)
            if any(spool.iterdir()):
                break
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 10)  # not a hang: it takes ~0.1 s
    finally:
        if proc.returncode is None:
            proc.kill()  # our own child, by PID
            await proc.wait()
    assert proc.returncode == 143, err.decode()[-2000:]
    assert "0 rows" in out.decode() + err.decode()
    assert list(spool.iterdir()) == [] and not ledger.exists()
    lock = LedgerLock(ledger)
    lock.acquire({"pid": 0})
    lock.release()

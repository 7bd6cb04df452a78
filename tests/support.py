"""Helpers shared by the tests: inputs, the CLI (in-process by default, in a subprocess where the
property is a process's own), ledgers, and hand-written ledgers and run logs with one subcommand run
in-process through a parser holding only it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from aiohttp import web

from batch_override.cli import logs as cli_logs
from batch_override.cli.main import main as cli_main
from batch_override.emulator import DEMO_API_KEY
from batch_override.ledger.format import COLUMNS

if TYPE_CHECKING:
    from batch_override.config import RunConfig
    from batch_override.summary import Summary

REPO = Path(__file__).resolve().parent.parent
#: Flags for a quick run against the emulator: a rate no test's rows reach, short retry delays.
FAST = ("--rate", "1000/s", "--backoff-base", "0.01")


def sha(i: int | str) -> str:
    """A deterministic, valid SHA-256 hex for test row ``i``."""
    return hashlib.sha256(f"test-media-{i}".encode()).hexdigest()


def write_csv(
    path: Path,
    rows: Iterable[Sequence[object]],
    header: Sequence[str] = ("hash", "classification"),
    delimiter: str = ",",
) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_ledger(path: Path) -> pd.DataFrame:
    """The ledger exactly as a user reads it: pandas.read_csv with no options."""
    return pd.read_csv(path)


def accounted_rows(ledger: Path, rows: int) -> tuple[dict[str, int], int]:
    """A stopped run's ledger outcomes and its ``not_attempted`` count, asserting that every row
    has at most one line and the rows without one are counted in the run log's finish record."""
    from batch_override.ledger import runlog

    frame = read_ledger(ledger)
    assert not frame["row"].duplicated().any()
    finished = [r for r in runlog.records(runlog.runlog_path(ledger)) if r.get("event") == "finished"]
    assert finished, "no finish record in the run log"
    not_attempted = int(finished[-1]["summary"]["not_attempted"])
    assert len(frame) + not_attempted == rows, (len(frame), not_attempted)
    return {str(k): int(v) for k, v in frame["outcome"].value_counts().items()}, not_attempted


def latest(ledger: pd.DataFrame) -> pd.DataFrame:
    """Each row's state: its latest line."""
    return ledger.drop_duplicates("row", keep="last").sort_values("row").reset_index(drop=True)


def cli_env(key: str | None = DEMO_API_KEY, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "IDENTIFAI_API_KEY"}
    if key is not None:
        env["IDENTIFAI_API_KEY"] = key
    env.update(extra or {})
    return env


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


async def start_cli(
    *args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None, cwd: Path | None = None
) -> asyncio.subprocess.Process:
    """Start ``python -m batch_override ARGS`` without blocking the loop (an in-process emulator keeps
    serving), for a test whose property is the process's own: signals, ``kill -9``; else use
    :func:`run_cli` (in-process), in a task to watch a run while it runs."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batch_override", *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=dict(env if env is not None else cli_env()), cwd=str(cwd or REPO),
    )  # fmt: skip


async def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    wait_s: float = 120,
    process: bool = False,
) -> Result:
    """Run the CLI to its end: its entry function in a thread of this process (tens of ms, where
    ``python -m batch_override`` takes most of a second), so an in-process server keeps serving.
    ``process=True`` starts ``python -m batch_override`` instead, for what is a process's own
    (signals, the exit code of the interpreter, a descriptor); one still running after ``wait_s``
    is killed (by its PID) and the test fails instead of hanging.  In-process, one run at a time:
    stdin, stdout, stderr, the environment and the working directory (``cwd``, else the test's)
    are the CLI's while it runs."""
    if process:
        return await _run_process(*args, env=env, stdin=stdin, cwd=cwd, wait_s=wait_s)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Result] = loop.create_future()

    def work() -> None:
        try:
            result: Result | BaseException = _run_here(args, env, stdin, cwd)
        except BaseException as exc:  # handed to the test
            result = exc
        loop.call_soon_threadsafe(_settle, done, result)

    # A daemon thread, not asyncio.to_thread: a run that hangs fails its test at ``wait_s``
    # without holding the interpreter's exit.
    threading.Thread(target=work, name="batch-override CLI", daemon=True).start()
    return await asyncio.wait_for(asyncio.shield(done), wait_s)


def _settle(done: asyncio.Future[Result], result: Result | BaseException) -> None:
    if done.cancelled():
        return
    if isinstance(result, BaseException):
        done.set_exception(result)
    else:
        done.set_result(result)


_CLI_LOCK = threading.Lock()


def _run_here(
    args: Sequence[str], env: Mapping[str, str] | None, stdin: bytes | None, cwd: Path | None
) -> Result:
    """``batch_override.cli.main.main(args)`` with its own streams, environment and working
    directory; the test process's restored after, with the ``batch_override`` logger and the log
    format (what a run sets up globally).  Not the console script's entry: that one keeps pandas
    out of pyarrow for the rest of the process (:mod:`batch_override.cli.nopandas`).
    A ``SystemExit`` (``--help``, a usage error) is its code, as a process's exit would be."""
    out, err = io.StringIO(), io.StringIO()
    given = io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8")
    logger = logging.getLogger("batch_override")
    with _CLI_LOCK:
        saved = (sys.stdin, sys.stdout, sys.stderr, dict(os.environ), cli_logs._format, os.getcwd())
        saved_logger = (logger.handlers[:], logger.propagate, logger.level)
        os.environ.clear()
        os.environ.update(env if env is not None else cli_env())
        sys.stdin, sys.stdout, sys.stderr = given, out, err
        try:
            os.chdir(cwd or saved[5])
            code = cli_main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            if isinstance(exc.code, str):
                print(exc.code, file=err)
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved[:3]
            os.environ.clear()
            os.environ.update(saved[3])
            cli_logs._format = saved[4]
            os.chdir(saved[5])
            logger.handlers[:], logger.propagate = saved_logger[:2]
            logger.setLevel(saved_logger[2])
    return Result(int(code), out.getvalue(), err.getvalue())


async def _run_process(
    *args: str, env: Mapping[str, str] | None, stdin: bytes | None, cwd: Path | None, wait_s: float
) -> Result:
    proc = await start_cli(*args, env=env, stdin=stdin, cwd=cwd)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), wait_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def run_against(
    url: str,
    corrections: str | Path,
    ledger: Path,
    *flags: str,
    env: Mapping[str, str] | None = None,
    process: bool = False,
) -> Result:
    """``batch-override run CORRECTIONS --ledger LEDGER --api-url URL`` with :data:`FAST` and
    ``flags`` (later flags win), to its end, with the demo key unless ``env`` says otherwise;
    in-process unless ``process`` (see :func:`run_cli`)."""
    args = ("run", str(corrections), "--ledger", str(ledger), "--api-url", url, *FAST, *flags)
    return await run_cli(*args, env=env if env is not None else cli_env(), process=process)


@contextlib.asynccontextmanager
async def serve_app(app: web.Application, *, shutdown_timeout: float = 1.0) -> AsyncIterator[str]:
    """Serve ``app`` on an ephemeral loopback port; yields its base URL and stops it at the end."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def parse(add_parser: Callable[[Any], None], *argv: str) -> argparse.Namespace:
    """``argv`` parsed by a parser that has only the subcommand ``add_parser`` adds."""
    parser = argparse.ArgumentParser(prog="batch-override")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def run_command(add_parser: Callable[[Any], None], *argv: str) -> int:
    args = parse(add_parser, *argv)
    code: int = args.handler(args)
    return code


def line(
    row: int,
    outcome: str,
    run_id: str,
    *,
    h: str | None = None,
    media: str = "video",
    classification: str = "human",
    error_code: str = "",
    http_status: int | str = "",
    attempts: int = 1,
    message: str = "",
    at: str = "2026-01-01T00:00:00.000Z",
    carried: Sequence[str] = (),
) -> list[object]:
    """One ledger line; the hash defaults to the row's test hash."""
    return [
        row, media, sha(row) if h is None else h, classification, outcome, error_code, http_status,
        attempts, message, run_id, at, *carried,
    ]  # fmt: skip


def write_ledger(path: Path, lines: Iterable[Sequence[object]], carried: Sequence[str] = ()) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([*COLUMNS, *carried])
        writer.writerows(lines)
    return path


def write_runlog(ledger: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    path = ledger.with_name(ledger.name + ".runs.jsonl")
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    return path


# -- the job run in-process with fast settings: the one helper the per-file ones build on ----------

#: What every in-process test run shares (the command line's :data:`FAST`): no pacing to speak
#: of and retries 10 ms apart, so a run of a few rows takes milliseconds.
FAST_SETTINGS: Mapping[str, Any] = {"rate": "1000/s", "backoff_base": 0.01}

#: Seconds after which an in-process run counts as hung: it fails its test, not the suite.
RUN_BOUND = 30.0


def fast_config(input: Path | str, ledger: Path | None, url: str, **overrides: Any) -> RunConfig:
    """A :class:`~batch_override.config.RunConfig` of :data:`FAST_SETTINGS`, ``overrides`` on top."""
    from batch_override.config import RunConfig

    return RunConfig(input=str(input), ledger=ledger, api_url=url, **{**FAST_SETTINGS, **overrides})


async def run_fast(
    input: Path | str, ledger: Path | None, url: str, key: str = DEMO_API_KEY, **overrides: Any
) -> Summary:
    """The job in-process on :func:`fast_config`; its summary, bounded by :data:`RUN_BOUND`."""
    from batch_override.apikey import ApiKey
    from batch_override.job.runner import run_job_async

    config = fast_config(input, ledger, url, **overrides)
    return await asyncio.wait_for(run_job_async(config, ApiKey(key)), RUN_BOUND)

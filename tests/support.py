"""Helpers shared by the tests: inputs, the CLI in a subprocess, ledgers, and hand-written ledgers and run
logs with one subcommand run in-process through a parser holding only it (no subprocess)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from aiohttp import web

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
    """Start ``batch-override ARGS`` without blocking the loop (an in-process emulator keeps serving)."""
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
) -> Result:
    """Run the CLI to its end.  One still running after ``wait_s`` is killed (by its PID) and the
    test fails, instead of hanging until pytest's timeout and leaving the process behind."""
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
    url: str, corrections: str | Path, ledger: Path, *flags: str, env: Mapping[str, str] | None = None
) -> Result:
    """``batch-override run CORRECTIONS --ledger LEDGER --api-url URL`` with :data:`FAST` and
    ``flags`` (later flags win), to its end, with the demo key unless ``env`` says otherwise."""
    args = ("run", str(corrections), "--ledger", str(ledger), "--api-url", url, *FAST, *flags)
    return await run_cli(*args, env=env if env is not None else cli_env())


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

"""The outputs after a run (stdout, --summary, --metrics-file) cannot change its outcome."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from tests.support import FAST, REPO, cli_env, run_against, sha, write_csv


async def test_a_closed_stdout_is_one_warning_the_exit_code_stays_and_the_other_outputs_are_written(
    tmp_path: Path, emulator_factory: Any
) -> None:
    """A subprocess: its stdout descriptor (a pipe whose reader is gone) and the exit code are the
    process's own."""
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(3)])
    summary, metrics = tmp_path / "summary.json", tmp_path / "run.prom"
    read_end, write_end = os.pipe()
    os.close(read_end)  # `... | true`: the reader is gone before the summary is printed
    args = ("run", str(corrections), "--ledger", str(tmp_path / "l.csv"), "--api-url", emulator.url, *FAST,
            "--summary", str(summary), "--metrics-file", str(metrics))  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batch_override", *args,
        env=cli_env(), cwd=str(REPO), stdout=write_end, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    os.close(write_end)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    warnings = [line for line in stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "cannot write the summary to stdout" in warnings[0], stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert json.loads(summary.read_text(encoding="utf-8"))["exit_code"] == 0
    assert "batch_override_exit_code" in metrics.read_text(encoding="utf-8")


async def test_an_unwritable_summary_or_metrics_file_is_one_warning_each_and_the_exit_code_stays(
    tmp_path: Path, emulator_factory: Any
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    taken = tmp_path / "a-directory"
    taken.mkdir()
    result = await run_against(
        emulator.url, corrections, tmp_path / "l.csv",
        "--summary", "/dev/full", "--metrics-file", str(taken),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 2, result.stderr
    assert "cannot write --summary /dev/full: No space left on device" in warnings[0]
    assert f"cannot write --metrics-file {taken}" in warnings[1]
    assert "submitted" in result.stdout
    assert list(taken.iterdir()) == [] and [p.name for p in tmp_path.glob(".*.tmp")] == []


async def test_a_summary_or_metrics_file_in_a_missing_directory_is_exit_2_before_anything_is_sent(
    tmp_path: Path, emulator_factory: Any
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    for flag in ("--summary", "--metrics-file"):
        where = tmp_path / "missing" / "out"
        result = await run_against(emulator.url, corrections, tmp_path / "l.csv", flag, str(where))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == (
            f"batch-override: error: {flag} {where}: the directory {where.parent} does not exist"
        )
    assert emulator.stats()["requests"] == 0
    assert not (tmp_path / "l.csv").exists()


async def test_a_stdout_closed_from_the_start_is_one_warning_too(tmp_path: Path) -> None:
    """A subprocess: a process started with its descriptor 1 closed (``>&-``)."""
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    command = shlex.join(
        [sys.executable, "-m", "batch_override", "run", str(corrections), "--ledger", str(tmp_path / "l.csv"),
         "--dry-run", "--summary", str(tmp_path / "s.json")]
    )  # fmt: skip
    proc = await asyncio.create_subprocess_shell(
        command + " >&-", env=cli_env(key=None), cwd=str(REPO), stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "WARNING cannot write the summary to stdout: it is closed" in err.decode()
    assert (tmp_path / "s.json").exists()

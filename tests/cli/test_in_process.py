"""The CLI run in-process leaves the test process as it found it: the tests run it so by default."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from batch_override.cli import logs
from batch_override.cli.main import main
from tests.support import cli_env, run_against, run_cli, sha, write_csv

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _state() -> tuple[Any, ...]:
    logger = logging.getLogger("batch_override")
    return (
        gc.get_freeze_count() > 0, [signal.getsignal(s) for s in _SIGNALS], sys.stdin, sys.stdout, sys.stderr,
        dict(os.environ), logger.handlers[:], logger.propagate, logger.level, logs.current_format(),
    )  # fmt: skip


async def test_run_cli_leaves_streams_environment_logger_gc_and_signals_as_they_were(
    tmp_path: Path, emulator_factory: Any
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(3)])
    before = _state()
    done = await run_against(emulator.url, corrections, tmp_path / "l.csv", "--log-format", "json", "-v")
    assert done.returncode == 0, done.stderr
    assert '"msg": "run ' in done.stderr  # the run's log went to its own stderr
    assert json.loads(done.stdout)["summary"]["rows"] == 3
    assert _state() == before
    usage = await run_cli("run", "--rate", "fast", env=cli_env(extra={"EXTRA": "1"}))
    assert usage.returncode == 2 and "--rate" in usage.stderr  # argparse's SystemExit, as a code
    assert _state() == before


def test_the_entry_function_on_the_main_thread_leaves_gc_unfrozen_and_no_signal_handler(
    tmp_path: Path, capsys: Any
) -> None:
    """Several tests call ``main`` directly: a dry run there once left the whole test process's
    objects frozen (``gc.freeze``) for the rest of the session."""
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(3)])
    frozen, handlers = gc.get_freeze_count() > 0, [signal.getsignal(s) for s in _SIGNALS]
    code = main(["run", str(corrections), "--ledger", str(tmp_path / "l.csv"), "--dry-run"])
    assert code == 0, capsys.readouterr().err
    assert (gc.get_freeze_count() > 0, [signal.getsignal(s) for s in _SIGNALS]) == (frozen, handlers)

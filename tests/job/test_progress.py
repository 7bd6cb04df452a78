"""The progress bar: a bar for a person at a terminal, silence for cron, CI and pipes."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path
from typing import Any

import pytest

from batch_override.apikey import ApiKey
from batch_override.config import Rate, RunConfig
from batch_override.emulator import DEMO_API_KEY
from batch_override.job import progress
from batch_override.job.progress import Progress
from batch_override.job.runner import run_job_async
from batch_override.summary import ProgressSnapshot
from tests.job.support import run_rows
from tests.support import sha, write_csv


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_stream_that_is_not_a_terminal_gets_nothing(monkeypatch) -> None:
    def no_bar(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a disabled Progress must not build a bar")

    monkeypatch.setattr(progress, "_Bar", no_bar)
    stream = io.StringIO()
    with Progress(100, stream=stream) as bar:
        assert not bar.enabled
        for outcome in ("submitted", "failed", "not_ready"):
            bar.advance(outcome)
        bar.retrying(1)
        bar.retrying(-1)
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_bar_with_done_total_and_the_three_counts() -> None:
    stream = FakeTty()
    bar = Progress(10, stream=stream)
    assert bar.enabled
    bar.advance("submitted", 3)
    bar.advance("skipped")
    bar.advance("duplicate")
    bar.retrying(+1)
    bar.retrying(+1)
    bar.retrying(-1)
    bar.advance("not_ready")
    bar.advance("rejected", 2)
    bar.close()
    bar.close()  # twice is fine
    final = stream.getvalue().rstrip("\n").split("\r")[-1]
    assert "8/10" in final
    assert "ok=5, retrying=1, failed=3" in final
    assert "row/s" in final
    assert stream.getvalue().endswith("\n")  # the bar stays on screen for the summary below


def test_enabled_overrides_the_terminal_check() -> None:
    forced = io.StringIO()
    with Progress(2, stream=forced, enabled=True) as bar:
        bar.advance("submitted", 2)
    assert "2/2" in forced.getvalue()

    silenced = FakeTty()
    with Progress(2, stream=silenced, enabled=False) as bar:
        bar.advance("submitted", 2)
    assert silenced.getvalue() == ""


def test_the_default_stream_is_stderr_at_construction_time(monkeypatch: pytest.MonkeyPatch) -> None:
    replaced = FakeTty()
    monkeypatch.setattr(sys, "stderr", replaced)
    with Progress(1) as bar:
        bar.advance("aborted")
    assert "failed=1" in replaced.getvalue()


def test_a_closed_stream_counts_as_not_a_terminal() -> None:
    stream = io.StringIO()
    stream.close()
    assert not Progress(1, stream=stream).enabled


_JUPYTER_WITHOUT_IPYWIDGETS = """
import logging, sys, types, warnings
sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")  # tqdm's sign of a kernel
ipython = types.ModuleType("IPython")
ipython.get_ipython = lambda: types.SimpleNamespace()
sys.modules["IPython"] = ipython
sys.modules["ipywidgets"] = None  # not installed
warnings.simplefilter("always")
import batch_override.job.runner
from batch_override.job.progress import logging_redirected
with logging_redirected(True, logging.getLogger("batch_override")):
    pass
"""


def test_a_jupyter_kernel_without_ipywidgets_gets_no_iprogress_warning() -> None:
    """A subprocess: what importing the job prints is a fresh interpreter's (an import runs once
    per process), here one that looks to tqdm like a Jupyter kernel without ipywidgets."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", _JUPYTER_WITHOUT_IPYWIDGETS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "IProgress" not in done.stderr and "Warning" not in done.stderr, done.stderr


async def test_a_resumed_run_reports_the_rate_and_eta_of_rows_sent_not_of_rows_skipped(
    tmp_path: Path, emulator_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = await emulator_factory(unknown="classified")
    rows = [(sha(i), "human") for i in range(230)]
    await run_rows(tmp_path, emulator.url, rows[:200])  # at 1000/s: these are skipped next time
    capsys.readouterr()
    config = RunConfig(
        input=str(write_csv(tmp_path / "all.csv", rows)), ledger=tmp_path / "ledger.csv",
        api_url=emulator.url, rate=Rate(20, 1.0), backoff_base=0.01, progress=True,
    )  # fmt: skip
    seen: list[ProgressSnapshot] = []
    summary = await asyncio.wait_for(run_job_async(config, ApiKey(DEMO_API_KEY), on_progress=seen.append), 30)
    assert summary.outcomes["skipped"] == 200 and summary.outcomes["submitted"] == 30
    # 20/s at most (the pace): the 200 rows skipped in the first moment are not a rate.
    assert max(s.rows_per_s for s in seen) <= 25, [s.rows_per_s for s in seen]
    assert seen[-1].rows_done == seen[-1].rows_total == 230
    # The bar is of the rows to send too: 30 of 30, its rate theirs; the skipped are in its "ok".
    final = capsys.readouterr().err.rstrip("\n").split("\r")[-1]
    assert "30/30" in final and "ok=230" in final, final

"""Progress off a terminal: ``--progress-interval`` lines whose ETA converges, and metrics refreshed
while the run runs (the textfile atomically, the Pushgateway by POST), read back mid-run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from batch_override.job.ticker import LINES_SPAN, Meter
from batch_override.summary import ProgressSnapshot
from tests.binaries import debian_binary
from tests.cli.support import metric_key, scrape_pushgateway
from tests.support import FAST, Result, cli_env, run_against, run_cli, sha, write_csv


def _unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _progress_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if "progress" in line]


async def _paced_run(
    tmp_path: Path, emulator_factory: Any, rows: int, rate: int, interval: float
) -> tuple[list[dict[str, Any]], float, float]:
    """A run of ``rows`` rows paced at ``rate``/s with ``--progress-interval interval``; its
    progress lines, when it started and when its last row finished (the ledger's ``finished_at``).
    Checks what no loaded machine changes: at least one line, never more than the ticks that fit
    in the run, rows done growing, the totals and the pace."""
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(rows)])
    ledger = tmp_path / "l.csv"
    result = await run_against(
        emulator.url, corrections, ledger, "--rate", f"{rate}/s", "--concurrency", "2",
        "--progress-interval", str(interval), "--log-format", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = _progress_lines(result.stderr)
    finished = [line.split(",")[-1].strip('"') for line in ledger.read_text().splitlines()[1:]]
    end = max(_unix(f) for f in finished)
    start = _unix(lines[0]["ts"]) - lines[0]["progress"]["elapsed_s"]
    assert 1 <= len(lines) <= (end - start) / interval + 1, (len(lines), end - start)
    done = [line["progress"]["rows_done"] for line in lines]
    assert done == sorted(done) and done[-1] < rows
    assert all(line["progress"]["rows_total"] == rows for line in lines)
    assert all(line["progress"]["pace"] == f"{rate}/1s (evenly spaced)" for line in lines)
    assert f"/{rows} rows" in lines[-1]["msg"]
    return lines, start, end


async def test_a_paced_run_writes_a_line_each_interval_with_rows_done_growing(
    tmp_path: Path, emulator_factory: Any
) -> None:
    # 30 rows at 50/s with ticks every 0.1 s: the shape of the lines in 0.6 s; that the ETA
    # converges is the Meter's (below, on a hand-moved clock) and the 60-s run's.
    lines, _, _ = await _paced_run(tmp_path, emulator_factory, rows=30, rate=50, interval=0.1)
    assert any(line["progress"]["eta_s"] is not None for line in lines)


@pytest.mark.integration
async def test_a_60_second_paced_run_with_interval_5_writes_12_lines_whose_eta_converges(
    tmp_path: Path, emulator_factory: Any
) -> None:
    rows, rate, interval = 300, 5, 5
    lines, start, end = await _paced_run(tmp_path, emulator_factory, rows=rows, rate=rate, interval=interval)
    expected = rows / rate / interval
    assert abs(len(lines) - expected) <= 1, (len(lines), expected)
    length = end - start
    second_half = [line for line in lines if _unix(line["ts"]) - start >= length / 2]
    assert len(second_half) >= expected / 2 - 1
    for line in second_half:
        predicted = _unix(line["ts"]) + line["progress"]["eta_s"]
        assert abs(predicted - end) <= 0.1 * length, (line, end)
    assert "ETA 0:" in lines[-1]["msg"]


def test_without_an_interval_a_run_off_a_terminal_writes_no_progress_line(tmp_path: Path) -> None:
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human"), ("bad", "human")])
    result = subprocess.run(
        [sys.executable, "-m", "batch_override", "run", str(corrections), "--ledger", str(tmp_path / "l.csv"),
         "--dry-run"],
        capture_output=True, text=True, env=cli_env(None), timeout=60,  # no key: no preflight to the API
    )  # fmt: skip
    assert result.returncode == 1
    assert "progress" not in result.stderr


def test_the_eta_is_rows_left_over_the_recent_rate_and_unknown_before_any_row() -> None:
    now = [1000.0]
    meter = Meter(LINES_SPAN, clock=lambda: now[0], wall=lambda: now[0] + 1e9)
    outcomes: Counter[str] = Counter()

    def snapshot() -> ProgressSnapshot:
        done = sum(outcomes.values())
        rate, eta = meter.read(done, 400)
        return ProgressSnapshot(
            run_id="r", rows_done=done, rows_total=400, outcomes=dict(outcomes), requests=0,
            elapsed_s=now[0] - 1000.0, rows_per_s=rate, eta_s=eta, pace="", window_s=None,
            in_flight=0, concurrency_limit=None, last_progress=meter.last_progress,
        )  # fmt: skip

    first = snapshot()
    assert (first.rows_done, first.eta_s, first.rows_per_s) == (0, None, 0.0)
    assert "ETA unknown" in first.line()
    now[0] += 10
    outcomes.update({"skipped": 30, "submitted": 10})  # 30 without a request, at once
    snap = snapshot()
    assert snap.rows_per_s == pytest.approx(4.0) and snap.eta_s == pytest.approx(90.0)
    assert snap.last_progress == 1010.0 + 1e9
    for _ in range(13):  # then 2 rows/s, ticked every 5 s
        now[0] += 5
        outcomes["submitted"] += 10
        snap = snapshot()
    # A minute on, the early burst has left the window: the rate is the recent 2 rows/s.
    assert snap.rows_done == 170 and snap.rows_per_s == pytest.approx(2.0)
    assert snap.eta_s == pytest.approx(115.0)
    assert "ETA 0:01:55" in snap.line() and "170/400 rows (42%)" in snap.line()
    assert snap.fields()["rows_done"] == 170 and "final" not in snap.fields()
    now[0] += 5
    stuck = snapshot()  # no row finished since: the last progress stays
    assert stuck.last_progress == snap.last_progress == 1075.0 + 1e9


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _until(check: Any, run: asyncio.Task[Result], wait_s: float = 30) -> Any:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        assert not run.done(), "the run ended before the check held"
        await asyncio.sleep(0.05)
    raise AssertionError("timed out waiting for the in-progress metrics")


async def test_the_textfile_is_refreshed_while_running_and_keeps_the_last_success(
    tmp_path: Path, emulator_factory: Any
) -> None:
    emulator = await emulator_factory(unknown="classified")
    prom = tmp_path / "batch_override.prom"
    ledger = tmp_path / "nightly.csv"
    first = write_csv(tmp_path / "a.csv", [(sha(i), "human") for i in range(2)])
    ok = await run_against(emulator.url, first, ledger, "--metrics-file", str(prom))
    assert ok.returncode == 0, ok.stderr
    success = _samples(prom.read_text())[
        ("batch_override_last_success_timestamp_seconds", frozenset({("job", "nightly")}))
    ]
    rows = 30
    second = write_csv(tmp_path / "b.csv", [(sha(100 + i), "human") for i in range(rows)])
    job = frozenset({("job", "nightly")})
    run = asyncio.create_task(run_cli(
        "run", str(second), "--ledger", str(ledger), "--api-url", emulator.url, *FAST, "--rate", "10/s",
        "--progress-interval", "0.5", "--metrics-file", str(prom),
    ))  # fmt: skip
    try:

        def in_progress() -> dict[Any, float] | None:
            samples = _samples(prom.read_text())  # never half-written: replaced atomically
            return samples if samples.get(("batch_override_run_in_progress", job)) == 1 else None

        mid = await _until(in_progress, run)
        text = prom.read_text()
        later = await _until(
            lambda: (
                (s := in_progress())
                and s[("batch_override_run_rows_done", job)] > mid[("batch_override_run_rows_done", job)]
                and s
            ),
            run,
        )
    finally:
        result = await run
    assert result.returncode == 0, result.stderr
    assert mid[("batch_override_last_success_timestamp_seconds", job)] == success
    assert mid[("batch_override_exit_code", job)] == 0  # the last run's, while this one runs
    assert mid[("batch_override_run_input_rows", job)] == rows
    assert 0 < later[("batch_override_run_rows_done", job)] < rows
    assert later[("batch_override_run_last_progress_timestamp_seconds", job)] > success
    promtool = debian_binary("promtool", "prometheus")
    check = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    assert (check.returncode, check.stdout, check.stderr) == (0, b"", b"")
    end = _samples(prom.read_text())
    assert end[("batch_override_run_in_progress", job)] == 0
    assert end[("batch_override_run_rows_done", job)] == rows
    assert end[("batch_override_last_success_timestamp_seconds", job)] > success


async def test_the_pushgateway_gets_progress_by_post_and_keeps_the_last_success_while_running(
    tmp_path: Path,
    emulator_factory: Any,
    pushgateway: str,
) -> None:
    emulator = await emulator_factory(unknown="classified", states={("video", sha(999)): "not_classified"})
    ledger = tmp_path / "nightly.csv"
    first = write_csv(tmp_path / "a.csv", [(sha(i), "human") for i in range(2)])
    ok = await run_against(emulator.url, first, ledger, "--pushgateway", pushgateway)
    assert ok.returncode == 0, ok.stderr
    success = scrape_pushgateway(pushgateway)[metric_key("last_success_timestamp_seconds", job="nightly")]
    rows = 30  # and one not_ready: the run exits 1
    second = write_csv(
        tmp_path / "b.csv", [*((sha(100 + i), "human") for i in range(rows)), (sha(999), "human")]
    )
    run = asyncio.create_task(run_cli(
        "run", str(second), "--ledger", str(ledger), "--api-url", emulator.url, *FAST, "--rate", "10/s",
        "--progress-interval", "0.5", "--pushgateway", pushgateway,
    ))  # fmt: skip
    done = metric_key("run_rows_done", job="nightly")
    try:

        def running() -> dict[Any, float] | None:
            samples = scrape_pushgateway(pushgateway)
            return samples if samples.get(metric_key("run_in_progress", job="nightly")) == 1 else None

        mid = await _until(running, run)
        later = await _until(lambda: (s := running()) and s[done] > mid[done] and s, run)
    finally:
        result = await run
    assert result.returncode == 1, result.stderr
    for seen in (mid, later):
        assert seen[metric_key("last_success_timestamp_seconds", job="nightly")] == success
        assert seen[metric_key("exit_code", job="nightly")] == 0
    end = scrape_pushgateway(pushgateway)
    assert end[metric_key("run_in_progress", job="nightly")] == 0
    assert end[metric_key("exit_code", job="nightly")] == 1
    assert end[metric_key("last_success_timestamp_seconds", job="nightly")] == success
    assert "cannot push" not in result.stderr

"""The shipped Grafana dashboard: every panel's query returns data from a real Prometheus.

Grafana cannot be installed here, so the test does what Grafana would: a real Prometheus
(Debian's ``prometheus``, on a free loopback port, ``honor_labels: true``) scrapes a real
Pushgateway fed by a real run against the emulator, and each panel's PromQL goes through
Prometheus' HTTP API.  A scrape in the middle of the run sees the in-progress gauges change.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from batch_override.cli.metrics import build_progress_registry, build_registry
from batch_override.summary import ProgressSnapshot
from tests.binaries import debian_binary
from tests.cli.support import summary_of_a_run
from tests.support import FAST, REPO, sha, start_cli, write_csv

DASHBOARD = REPO / "deploy" / "grafana" / "batch-override.json"
#: Series the Pushgateway adds to every group (the dashboard's push panel uses one).
PUSHGATEWAY_SERIES = {"push_time_seconds", "push_failure_time_seconds"}


def _panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in _panels() for t in p["targets"]]


def _our_metric_names() -> set[str]:
    snap = ProgressSnapshot(
        run_id="r", rows_done=1, rows_total=2, outcomes={}, elapsed_s=1.0, rows_per_s=1.0, eta_s=1.0,
        requests=1, throttled=0, in_flight=1, concurrency_limit=1, pace="", window_s=1.0, last_progress=1.0,
    )  # fmt: skip
    registries = [
        build_registry(summary_of_a_run(0), job=None, last_success_unix=1.0, now=2.0),
        build_progress_registry(snap, job=None),
    ]
    return {m.name for r in registries for m in r.collect()}


def test_every_panel_queries_known_metrics_of_the_chosen_jobs() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "job"}
    known = _our_metric_names() | PUSHGATEWAY_SERIES
    used: set[str] = set()
    for title, expr in _queries():
        names = set(re.findall(r"\b(batch_override_\w+|push_\w+)\b", expr))
        assert names, title
        assert names <= known, (title, names - known)
        assert expr.count("{") == expr.count('{job=~"$job"}'), (title, expr)  # every selector by $job
        used |= names
    panels = {p["title"] for p in _panels()}
    for wanted in ("Since last success", "Exit code", "Rows by outcome", "Rows per second",
                   "Requests and 429s", "Concurrency", "In progress", "Done", "ETA"):  # fmt: skip
        assert wanted in panels
    assert {n for n in known if n.startswith("batch_override_run_")} <= used


# -- a real Prometheus ---------------------------------------------------------------------------
def _get(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else base + path
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read()) if path.startswith("/api/") else response.read()


async def _api(base: str, path: str, **params: str) -> list[dict[str, Any]]:
    body = await asyncio.to_thread(_get, base, path, **params)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.fixture
async def prometheus(tmp_path: Path, pushgateway: str, unused_tcp_port: int) -> AsyncIterator[str]:
    """A real Prometheus scraping ``pushgateway`` every second (``honor_labels: true``); its URL."""
    binary = debian_binary("prometheus", "prometheus")
    config = tmp_path / "prometheus.yml"
    target = pushgateway.removeprefix("http://")
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: pushgateway\n    honor_labels: true\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n",
        encoding="utf-8",
    )
    address = f"127.0.0.1:{unused_tcp_port}"
    proc = await asyncio.create_subprocess_exec(
        binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address={address}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://{address}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.returncode is None, "Prometheus exited before it was ready"
            try:
                await asyncio.to_thread(_get, base, "/-/ready")
                break
            except OSError:
                assert time.monotonic() < deadline, "Prometheus was not ready within 30 s"
                await asyncio.sleep(0.1)
        yield base
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def _value(base: str, query: str) -> float | None:
    result = await _api(base, "/api/v1/query", query=query)
    return float(result[0]["value"][1]) if result else None


@pytest.mark.integration
async def test_every_dashboard_query_returns_data_from_a_real_prometheus_after_a_real_run(
    tmp_path: Path,
    emulator_factory: Any,
    pushgateway: str,
    prometheus: str,
) -> None:
    emulator = await emulator_factory(unknown="classified", states={("video", sha(999)): "not_classified"})
    job = "backfill"
    started = time.time()
    rows = [(sha(i), "human") for i in range(60)]
    corrections = write_csv(tmp_path / "c.csv", [*rows, (sha(999), "human")])
    proc = await start_cli(
        "run", str(corrections), "--ledger", str(tmp_path / f"{job}.csv"), "--api-url", emulator.url,
        *FAST, "--rate", "4/s", "--progress-interval", "0.5", "--pushgateway", pushgateway,
    )  # fmt: skip
    done = f'batch_override_run_rows_done{{job="{job}"}}'
    seen: list[float] = []
    try:
        # Mid-run: two scrapes by Prometheus itself, the run in progress in both, rows done grown.
        # At 4/s the run lasts ~15 s: at 10/s (6 s) a loaded CI machine once let Prometheus see
        # it in progress only once, at 49 rows done.
        deadline = time.monotonic() + 30
        while len(set(seen)) < 2:
            assert time.monotonic() < deadline and proc.returncode is None, f"no change seen: {seen}"
            if await _value(prometheus, f'batch_override_run_in_progress{{job="{job}"}}') == 1:
                value = await _value(prometheus, done)
                if value is not None and (not seen or value != seen[-1]):
                    seen.append(value)
            await asyncio.sleep(0.25)
    finally:
        _, err = await proc.communicate()
    assert proc.returncode == 1, err.decode()  # the not_ready row
    assert seen == sorted(seen) and 0 <= seen[0] < seen[-1] < len(rows) + 1
    # After the run: the final push (exit 1: POST) scraped, in progress back to 0.
    deadline = time.monotonic() + 15
    while await _value(prometheus, f'batch_override_run_in_progress{{job="{job}"}}') != 0:
        assert time.monotonic() < deadline, "the final push never showed in Prometheus"
        await asyncio.sleep(0.25)
    assert await _value(prometheus, f'batch_override_exit_code{{job="{job}"}}') == 1
    # The success panel needs a success: a rerun of the ready rows exits 0 (PUT).
    ready = write_csv(tmp_path / "ready.csv", rows[:5])
    again = await start_cli(
        "run", str(ready), "--ledger", str(tmp_path / f"{job}.csv"), "--api-url", emulator.url, *FAST,
        "--pushgateway", pushgateway,
    )  # fmt: skip
    _, err = await again.communicate()
    assert again.returncode == 0, err.decode()
    deadline = time.monotonic() + 15
    while await _value(prometheus, f'batch_override_exit_code{{job="{job}"}}') != 0:
        assert time.monotonic() < deadline, "the success push never showed in Prometheus"
        await asyncio.sleep(0.25)
    empty = []
    end = time.time() + 1  # steps run from the start: the last one must not fall before the last scrape
    for title, expr in _queries():
        query = expr.replace("$job", job)
        result = await _api(
            prometheus, "/api/v1/query_range", query=query, start=f"{started:.3f}", end=f"{end:.3f}",
            step="1",
        )  # fmt: skip
        if not any(series["values"] for series in result):
            empty.append((title, query))
    assert not empty, f"panels without data: {empty}"

"""Sharing the key (issue 17): other traffic on the key, two jobs, a maintenance stretch.

``python -m bench.shared [--case KEY ...]`` runs the job (default flags) against the emulator with
``--other-traffic`` or ``--maintenance``, and where it applies the minimal aiohttp + AsyncLimiter
script (``bench/minimal_client.py --limiter L/D``, configured for the server's limit less the
headroom) the same way; prints a markdown table for BENCHMARKS.md.  The emulator counts the other
traffic in the same windows, with its own accepted and throttled counts.

- **Job per window**: the job's accepted requests per complete window (the window's ``accepted``
  less its ``other_accepted``; the first two windows, where the window is learnt, and the last
  are left out), and that over what is free (limit x 0.9 less the other traffic's accepted).
- **429s**: the job's share of its requests; the neighbour's share of its requests.

A latency jump and a stuck ``Remaining`` are not emulator flags: they are judged on the
simulations (``tests/job/test_concurrency.py``, ``tests/job/test_shared_key.py``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import data
from bench.procs import PYTHON, emulator, job_argv, run_measured
from bench.report import Check, Section, Table, pct

ROWS_CLASSIFIED = ("--unknown", "classified")


@dataclass(frozen=True, slots=True)
class SharedCase:
    key: str
    title: str
    server: tuple[str, ...]
    limit: int
    period: float
    rows: int
    limiter: str = ""  # the minimal script's --limiter ("": no minimal run)
    jobs: int = 1
    stagger: float = 0.0  # seconds between the jobs' starts


CASES = {
    c.key: c
    for c in (
        SharedCase("steady-20-1s", "100/1s, a neighbour at a steady 20/s", ("--rate-limit", "100/s",
                   "--other-traffic", "20"), 100, 1.0, 900, "70/1"),
        SharedCase("burst-40-1s", "100/1s, a neighbour bursting 40 at once each second",
                   ("--rate-limit", "100/s", "--other-traffic", "40:40"), 100, 1.0, 700, "50/1"),
        SharedCase("steady-20-15s", "40/15s (Laravel windows), a neighbour at 8 per 15 s",
                   ("--rate-limit", "40/15s", "--laravel-windows", "--other-traffic", "8/15s"), 40, 15.0, 130,
                   "28/15"),
        SharedCase("two-jobs-1s", "100/1s, two jobs on the key (the second 5 s later)",
                   ("--rate-limit", "100/s"), 100, 1.0, 900, jobs=2, stagger=5.0),
        SharedCase("two-jobs-15s", "40/15s (Laravel windows), two jobs on the key (the second 20 s later)",
                   ("--rate-limit", "40/15s", "--laravel-windows"), 40, 15.0, 150, jobs=2, stagger=20.0),
        SharedCase("maintenance", "100/1s, 20 s of 503 with Retry-After: 5 from 3 s after the start",
                   ("--rate-limit", "100/s", "--maintenance", "3:20:5"), 100, 1.0, 1500),
    )
}  # fmt: skip


def _job(rows_csv: Path, ledger: Path, url: str) -> list[str]:
    ledger.unlink(missing_ok=True)
    return job_argv("run", str(rows_csv), "--ledger", str(ledger), "--api-url", url, "-q")


def _per_window(stats: dict[str, Any], case: SharedCase) -> dict[str, Any]:
    windows = stats["windows"][2:-1]
    ours = [w["accepted"] - w.get("other_accepted", 0) for w in windows]
    others = [w.get("other_accepted", 0) for w in windows]
    free = [case.limit * 0.9 - o for o in others]
    other = stats.get("other_traffic", {"accepted": 0, "throttled": 0})
    asked = other["accepted"] + other["throttled"]
    requests = stats["requests"]
    return {
        "windows": len(windows),
        "ours": sum(ours) / len(ours) if ours else 0.0,
        "of_free": sum(ours) / sum(free) if free and sum(free) > 0 else 0.0,
        "total": sum(w["accepted"] for w in windows) / len(windows) / case.limit if windows else 0.0,
        "share_429": stats["responses_by_status"].get("429", 0) / requests if requests else 0.0,
        "other_429": other["throttled"] / asked if asked else 0.0,
    }


def measure(case: SharedCase, workdir: Path) -> list[dict[str, Any]]:
    rows_csv = data.write_corrections(workdir / f"{case.key}.csv", case.rows * case.jobs, seed=17)
    results = []
    clients = ["job"] + (["minimal"] if case.limiter else [])
    for client in clients:
        with emulator(*case.server, *ROWS_CLASSIFIED) as server:
            timeout = 600.0
            if client == "minimal":
                subset = workdir / f"{case.key}-minimal.csv"
                _head(rows_csv, subset, case.rows)
                argv = [
                    PYTHON,
                    "-m",
                    "bench.minimal_client",
                    str(subset),
                    server.url,
                    "--limiter",
                    case.limiter,
                ]
                runs = [run_measured(argv, timeout=timeout)]
            elif case.jobs == 1:
                subset = workdir / f"{case.key}-job.csv"
                _head(rows_csv, subset, case.rows)
                runs = [
                    run_measured(
                        _job(subset, workdir / f"{case.key}.ledger.csv", server.url), timeout=timeout
                    )
                ]
            else:
                parts = []
                for n in range(case.jobs):
                    part = workdir / f"{case.key}-{n}.csv"
                    _head(rows_csv, part, case.rows, skip=n * case.rows)
                    parts.append(part)

                def one(n: int, url: str = server.url, parts: list[Path] = parts) -> Any:
                    time.sleep(n * case.stagger)
                    ledger = workdir / f"{case.key}-{n}.ledger.csv"
                    return run_measured(_job(parts[n], ledger, url), timeout=600.0)

                with concurrent.futures.ThreadPoolExecutor(case.jobs) as pool:
                    runs = list(pool.map(one, range(case.jobs)))
            stats = server.stats()
        result = {"case": case, "client": client, "exit": [r.returncode for r in runs],
                  "wall": [r.wall for r in runs], "stats": stats, **_per_window(stats, case)}  # fmt: skip
        if case.key == "maintenance" and client == "job":
            failed = 0
            with open(workdir / f"{case.key}.ledger.csv", newline="", encoding="utf-8") as fh:
                failed = sum(row["outcome"] == "failed" for row in csv.DictReader(fh))
            result["failed"] = failed
        results.append(result)
    return results


def _head(source: Path, target: Path, rows: int, skip: int = 0) -> None:
    with open(source, encoding="utf-8") as fh, open(target, "w", encoding="utf-8") as out:
        header = fh.readline()
        out.write(header)
        for n, line in enumerate(fh):
            if skip <= n < skip + rows:
                out.write(line)


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| case | client | exit | wall s | job per window (of free) | all per window / L | job 429 "
        "| neighbour 429 | 503s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        case = r["case"]
        s503 = r["stats"]["responses_by_status"].get("503", 0)
        extra = f", {r['failed']} failed rows" if "failed" in r else ""
        lines.append(
            f"| {case.key}: {case.title} | {r['client']} | {','.join(map(str, r['exit']))} "
            f"| {', '.join(f'{w:.1f}' for w in r['wall'])} | {r['ours']:.1f} ({r['of_free']:.0%}) "
            f"| {r['total']:.0%} | {r['share_429']:.2%} | {r['other_429']:.2%} | {s503}{extra} |"
        )
    return "\n".join(lines)


def _check(r: dict[str, Any]) -> Check:
    """The issue's target for the job's row of a case."""
    case, exits = r["case"], r["exit"]
    ok = all(code == 0 for code in exits)
    if case.key.startswith("steady"):
        target = ">= 85% of free, job <= 1% 429, neighbour <= 2% 429"
        ok = ok and r["of_free"] >= 0.85 and r["share_429"] <= 0.01 and r["other_429"] <= 0.02
        measured = f"{pct(r['of_free'])} of free, {pct(r['share_429'], 2)} / {pct(r['other_429'], 2)} 429"
    elif case.key.startswith("burst"):
        target = ">= 80% of free, job <= 2% 429, neighbour <= 5% 429"
        ok = ok and r["of_free"] >= 0.8 and r["share_429"] <= 0.02 and r["other_429"] <= 0.05
        measured = f"{pct(r['of_free'])} of free, {pct(r['share_429'], 2)} / {pct(r['other_429'], 2)} 429"
    elif case.jobs > 1:
        target = "both exit 0, <= 2% 429, together >= 80% of the limit per window"
        ok = ok and r["share_429"] <= 0.02 and r["total"] >= 0.8
        measured = f"exits {exits}, {pct(r['share_429'], 2)} 429, {pct(r['total'])} of the limit"
    else:
        s503 = r["stats"]["responses_by_status"].get("503", 0)
        target = "<= 10 requests answered 503, exit 0, no row failed"
        ok = ok and s503 <= 10 and r.get("failed", 1) == 0
        measured = f"{s503} answered 503, exit {exits}, {r.get('failed')} failed"
    return Check(f"shared: {case.title}", measured, target, ok)


def run(*, cases: list[str] | None = None, command: str) -> Section:
    """The section for ``bench.run`` (``--only shared``)."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-shared-") as tmp:
        for key in cases or list(CASES):
            results += measure(CASES[key], Path(tmp))
    lines = table(results).splitlines()
    out = Table([cell.strip() for cell in lines[0].strip("|").split("|")])
    for line in lines[2:]:
        out.add(*(cell.strip() for cell in line.strip("|").split("|")))
    method = __doc__.split("\n", 2)[2].strip() if __doc__ else ""
    checks = [_check(r) for r in results if r["client"] == "job"]
    return Section("shared", "5. Sharing the key: other traffic, two jobs, maintenance", method, command,
                   tables=[("The shared key", out)], checks=checks)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shared", description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", choices=list(CASES))
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-shared-") as tmp:
        for key in args.case or list(CASES):
            results += measure(CASES[key], Path(tmp))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

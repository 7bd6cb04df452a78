"""Sharing the key, and the field's surprises (issue 17): other traffic on the key, two jobs, a
maintenance stretch, a latency jump, a stuck ``X-RateLimit-Remaining``.

``python -m bench.shared [--case KEY ...]`` runs the job (default flags, plus the case's) against
the emulator under the case's conditions (``--other-traffic``, ``--maintenance``,
``--latency-jump``, ``--stuck-remaining``) and, where it applies, the minimal aiohttp +
AsyncLimiter script (``bench/minimal_client.py --limiter L/D``, configured for what is free: the
limit less the headroom and the neighbour) the same way, each run against a fresh emulator; it
prints a markdown table.  The emulator counts the other traffic in the same windows, with its own
accepted and throttled counts, and keeps every request's arrival time.

- **Job per window (of free)**: the job's accepted requests per complete window (the window's
  ``accepted`` less its ``other_accepted``; the first two windows, where the window is learnt, and
  the last are left out), and that over what is free: limit x 0.9 less the neighbour's accepted.
- **All per window / L**: everyone's accepted requests per complete window over the limit.
  For two jobs also **rate used** (in the summary line): those windows' accepted requests over
  the time from the first one's start to the last window's start, divided by L/D, so a key that
  idles between windows (a job asleep on a guessed minute) shows.
- **429s**: the job's share of its requests; the neighbour's share of its requests.
- **Rows done (failed)**: rows the ledger says ``submitted`` (the minimal script: answers 201), and
  rows ``failed``.
- **Biggest gap**: the longest time the server received nothing (between two consecutive
  arrivals), so a pause of the client's shows, whatever it had in flight.
- **After the jump** (``latency-jump``): requests arriving from 10 s after the jump to the last
  arrival, per second, against what the job's default ``--max-concurrency`` allows at the new
  round trip (64 / 2 s = 32/s); in brackets the first 10 s, while the job finds the new latency.
  Three tries of the job and the minimal script with ``Semaphore(64)`` (that maximum without any
  adaptation) run at the same time, each against its own emulator, started 4 s apart so that
  their start-ups do not crowd each other: at 100/s and then 32/s none is CPU-bound, and the case
  costs about one run's time instead of four.  The jump comes 8 s after each emulator's start,
  about 5 s after its client's first request; the column says how many requests came before it.
  The job stops at its ``--max-duration 35s`` (exit 7, the rest of its rows left for a rerun), so
  a try that falls behind costs no more time than one that keeps up.  The same jump on a virtual
  clock: ``tests/job/test_concurrency.py`` (10 seeds).
- **Resumed** (``maintenance``, in the summary line): the first request to arrive once service
  returned, after the maintenance's end; it may wait a whole ``Retry-After`` from the last probe
  answered 503, so the target is within ``Retry-After`` + 1.5 s.
- **Warnings** (``stuck-remaining``): lines of the job's stderr that name
  ``X-RateLimit-Remaining``; the job runs without ``-q`` there.  On a virtual clock:
  ``tests/job/test_shared_key.py``.

Cases of one ``together`` group run at the same time: every client of each case, each against
its own emulator, started 4 s apart, the longest first.  ``slow`` holds the cases that send a few
requests a second (the two 15 s cases, with a neighbour and with two jobs, and the stuck count at
1.5/s): pacing that is not CPU-bound, so ``bench.run`` starts them together with the field
section's slow cases (``bench/stages.py``), and all of them cost the longest one's time instead of
their sum.  ``jump`` holds the latency jump's four runs, together among themselves.  The others
run one client after the other, alone.  A case is one entry of ``CASES``; its target is
``JUDGES[case.judge]`` (the key's first word).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import functools
import itertools
import json
import math
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch_override.config import RunConfig
from bench import data
from bench.procs import PYTHON, EmulatorProcess, Measured, emulator, job_argv, run_measured
from bench.report import Check, Section, Table, pct
from bench.stages import Staged, together

ROWS_CLASSIFIED = ("--unknown", "classified")
TIMEOUT = 600.0
#: The job's default ``--max-concurrency``: what a latency jump's target is made of.
#: Read from a default config (a ``dataclasses.fields`` default is untyped, ``MISSING`` for a required field).
MAX_IN_FLIGHT: int = RunConfig(input="-").max_concurrency
SETTLE = 10.0  # seconds after a latency jump before its throughput counts
SLOW = "slow"  # the together group of the cases that pace a few requests a second
WARNING_WORD = "X-RateLimit-Remaining"


@dataclass(frozen=True, slots=True)
class SharedCase:
    """One condition: the emulator's flags, its limit, the rows, and how the clients run."""

    key: str
    title: str
    server: tuple[str, ...]
    limit: int  # the server's L per window (0: no throttle)
    period: float
    rows: int
    limiter: str = ""  # the minimal script's --limiter ("": no minimal run)
    jobs: int = 1
    stagger: float = 0.0  # seconds between the jobs' starts
    job_flags: tuple[str, ...] = ("-q",)  # after `run ROWS --ledger L --api-url URL`
    minimal_flags: tuple[str, ...] = ()
    tries: int = 1  # runs of the job (of every job of the case), each against its own emulator
    together: str = ""  # a group: its cases' runs all at once, each against its own emulator

    @property
    def judge(self) -> str:
        """Its target's name in ``JUDGES``: ``jobs`` for two jobs, else the key's first word."""
        return "jobs" if self.jobs > 1 else self.key.split("-")[0]

    @property
    def long(self) -> bool:
        """Windows of 15 s or more: minutes a case, left out of ``--quick``."""
        return self.period >= 15


CASES = {
    c.key: c
    for c in (
        SharedCase("steady-20-1s", "100/1s, a neighbour at a steady 20/s", ("--rate-limit", "100/s",
                   "--other-traffic", "20"), 100, 1.0, 900, "70/1"),
        SharedCase("burst-40-1s", "100/1s, a neighbour bursting 40 at once each second",
                   ("--rate-limit", "100/s", "--other-traffic", "40:40"), 100, 1.0, 700, "50/1"),
        SharedCase("steady-20-15s", "40/15s (Laravel windows), a neighbour at 8 per 15 s",
                   ("--rate-limit", "40/15s", "--laravel-windows", "--other-traffic", "8/15s"), 40, 15.0, 130,
                   "28/15", together=SLOW),
        SharedCase("two-jobs-1s", "100/1s, two jobs on the key (the second 5 s later)",
                   ("--rate-limit", "100/s"), 100, 1.0, 900, jobs=2, stagger=5.0),
        SharedCase("two-jobs-15s", "40/15s (Laravel windows), two jobs on the key (the second 20 s later)",
                   ("--rate-limit", "40/15s", "--laravel-windows"), 40, 15.0, 150, jobs=2, stagger=20.0,
                   together=SLOW),
        SharedCase("maintenance", "100/1s, 20 s of 503 with Retry-After: 5 from 3 s after the start",
                   ("--rate-limit", "100/s", "--maintenance", "3:20:5"), 100, 1.0, 1500),
        SharedCase("latency-jump", "no limit, 10 ms away, 2 s from 8 s after the start, --rate 100/s",
                   ("--latency-ms", "10", "--latency-jump", "8:2000"), 0, 0.0, 1800, "100/1",
                   job_flags=("-q", "--rate", "100/s", "--max-duration", "35s"),
                   minimal_flags=("--concurrency", "64"), tries=3, together="jump"),
        SharedCase("stuck-remaining", "100/1s behind a proxy whose X-RateLimit-Remaining is stuck at 0",
                   ("--rate-limit", "100/s", "--stuck-remaining"), 100, 1.0, 45, job_flags=(),
                   together=SLOW),
    )
}  # fmt: skip

#: Field conditions judged on the simulations only (real ``Pacer`` / ``Concurrency`` on a virtual
#: clock), not by this section.
SIMULATED_ONLY = (
    "a 30 s penalty after a downgrade to 20/s on a 1 s window (>= 0.85 x 18/s from 5 s after it "
    "ends: `tests/job/test_shared_key.py`)",
)


def _job(case: SharedCase, rows_csv: Path, ledger: Path, url: str) -> list[str]:
    ledger.unlink(missing_ok=True)
    return job_argv("run", str(rows_csv), "--ledger", str(ledger), "--api-url", url, *case.job_flags)


def _per_window(stats: dict[str, Any], case: SharedCase) -> dict[str, Any]:
    windows = stats["windows"][2:-1]
    # Rate used: what those windows accepted over the time from the first one's start to the
    # last window's (the one left out), so a key idle between windows shows (the field's rule).
    span = float(stats["windows"][-1]["start"]) - float(windows[0]["start"]) if windows else 0.0
    accepted = sum(w["accepted"] for w in windows)
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
        "total": accepted / len(windows) / case.limit if windows else 0.0,
        "rate_used": accepted / span / (case.limit / case.period) if span else 0.0,
        "share_429": stats["responses_by_status"].get("429", 0) / requests if requests else 0.0,
        "other_429": other["throttled"] / asked if asked else 0.0,
    }


def _arrivals(server: EmulatorProcess) -> list[float]:
    with urllib.request.urlopen(server.url + "/_emulator/arrivals", timeout=30) as resp:
        arrivals: list[float] = json.load(resp)
    return arrivals


def _timeline(stats: dict[str, Any], arrivals: list[float]) -> dict[str, Any]:
    """What the arrival times show: the biggest gap, and the rates around a latency jump."""
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    span = arrivals[-1] - arrivals[0] if arrivals else 0.0
    found: dict[str, Any] = {
        "gap": max(gaps, default=0.0),
        "rate": (len(arrivals) - 1) / span if span else 0.0,
    }
    jump = stats.get("latency_jump")
    if jump is not None and arrivals:
        at, last = jump["at"], arrivals[-1]

        def rate(start: float, end: float) -> float:
            count = sum(start <= t < end for t in arrivals)
            return count / (end - start) if end > start else 0.0

        found["before_jump"] = stats["requests"] - jump["jumped"]
        found["after_jump"] = rate(at + SETTLE, last)
        found["jump_settling"] = rate(at, min(at + SETTLE, last))
        found["allowed"] = MAX_IN_FLIGHT / jump["median"]
    down = stats.get("maintenance")
    if down is not None:
        back = [t for t in arrivals if t >= down["end"]]
        found["resumed"] = back[0] - down["end"] if back else math.inf
        found["retry_after"] = down["retry_after"] or 0
    return found


def _done(ledgers: list[Path], runs: list[Measured], client: str) -> dict[str, int]:
    """Rows ``submitted`` and ``failed``: from the ledgers, or the minimal script's 201s."""
    if client == "minimal":
        statuses = json.loads(runs[0].stdout or "{}")
        return {"submitted": int(statuses.get("201", 0)), "failed": 0}
    outcomes: collections.Counter[str] = collections.Counter()
    for ledger in ledgers:
        if ledger.exists():
            with open(ledger, newline="", encoding="utf-8") as fh:
                outcomes.update(row["outcome"] for row in csv.DictReader(fh))
    return {"submitted": outcomes["submitted"], "failed": outcomes["failed"]}


def _run(case: SharedCase, client: str, attempt: int, rows_csv: Path, workdir: Path) -> dict[str, Any]:
    """One run of ``client`` (every job of the case, or the minimal script) against a fresh emulator."""
    name = f"{case.key}-{client}-{attempt}"
    ledgers: list[Path] = []
    with emulator(*case.server, *ROWS_CLASSIFIED) as server:
        if client == "minimal":
            subset = _head(rows_csv, workdir / f"{name}.csv", case.rows)
            argv = [PYTHON, "-m", "bench.minimal_client", str(subset), server.url, "--limiter", case.limiter]
            runs = [run_measured([*argv, *case.minimal_flags], timeout=TIMEOUT)]
        else:
            parts = [_head(rows_csv, workdir / f"{name}-{n}.csv", case.rows, skip=n * case.rows)
                     for n in range(case.jobs)]  # fmt: skip
            ledgers = [workdir / f"{name}-{n}.ledger.csv" for n in range(case.jobs)]

            def one(n: int, url: str = server.url) -> Measured:
                time.sleep(n * case.stagger)
                return run_measured(_job(case, parts[n], ledgers[n], url), timeout=TIMEOUT)

            with concurrent.futures.ThreadPoolExecutor(case.jobs) as pool:
                runs = list(pool.map(one, range(case.jobs)))
        stats = server.stats()
        arrivals = _arrivals(server)
    warnings = sum(WARNING_WORD in line for r in runs for line in r.stderr.splitlines())
    found = {"case": case, "client": client, "try": attempt + 1, "exit": [r.returncode for r in runs],
             "wall": [r.wall for r in runs], "stats": stats, "warnings": warnings}  # fmt: skip
    return {**found, **_done(ledgers, runs, client), **_timeline(stats, arrivals), **_per_window(stats, case)}


def _planned(case: SharedCase, workdir: Path) -> list[Callable[[], dict[str, Any]]]:
    """The case's runs, ready to start: the job's tries, then the minimal script; in a ``together``
    group the minimal script first, as these cases have always run (starts are 4 s apart anyway)."""
    rows_csv = data.write_corrections(workdir / f"{case.key}.csv", case.rows * case.jobs, seed=17)
    runs = [("job", n) for n in range(case.tries)] + ([("minimal", 0)] if case.limiter else [])
    if case.together and case.limiter:
        runs = runs[-1:] + runs[:-1]
    return [functools.partial(_run, case, client, n, rows_csv, workdir) for client, n in runs]


def _longest_first(case: SharedCase) -> tuple[float, int]:
    return -case.period, -case.rows * case.jobs


def _by_case(results: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The results of case ``key``: the job's tries first, then the minimal script's."""
    return sorted(
        (r for r in results if r["case"].key == key), key=lambda r: (r["client"] != "job", r["try"])
    )


def measure(cases: list[SharedCase], workdir: Path) -> list[list[dict[str, Any]]]:
    """Each case's results, in the order of ``cases`` (see :func:`_by_case`).  A case of a
    ``together`` group runs with the group's other cases among ``cases`` (the first of them decides
    when), the longest case first."""
    found: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        if case.key in found:
            continue
        group = sorted((c for c in cases if c.together and c.together == case.together), key=_longest_first)
        planned = {c.key: _planned(c, workdir) for c in group or [case]}
        if group:
            results = together([run for runs in planned.values() for run in runs])
        else:
            results = [run() for run in planned[case.key]]
        found |= {key: _by_case(results, key) for key in planned}
    return [found[case.key] for case in cases]


def _head(source: Path, target: Path, rows: int, skip: int = 0) -> Path:
    with open(source, encoding="utf-8") as fh, open(target, "w", encoding="utf-8") as out:
        header = fh.readline()
        out.write(header)
        for n, line in enumerate(fh):
            if skip <= n < skip + rows:
                out.write(line)
    return target


@dataclass(frozen=True, slots=True)
class Judge:
    """A target of the issue for a case's job runs: ``passes`` and ``measured`` read one run (one
    try); the case passes when every try exits with one of ``exits`` and passes.  ``also``: the
    table's last cell."""

    target: str
    passes: Callable[[dict[str, Any]], bool]
    measured: Callable[[dict[str, Any]], str]
    also: Callable[[dict[str, Any]], str] = lambda _r: ""
    exits: tuple[int, ...] = (0,)  # the exit statuses that pass


def _of_free(r: dict[str, Any]) -> str:
    return f"{pct(r['of_free'])} of free, {pct(r['share_429'], 2)} / {pct(r['other_429'], 2)} 429"


def _after_jump(r: dict[str, Any]) -> str:
    if "after_jump" not in r:
        return ""
    return (f"after the jump {r['after_jump']:.1f}/s (first {SETTLE:.0f} s: {r['jump_settling']:.1f}/s), "
            f"{r['before_jump']} requests before it")  # fmt: skip


JUDGES: dict[str, Judge] = {
    "steady": Judge(
        ">= 85% of free, job <= 1% 429, neighbour <= 2% 429",
        lambda r: r["of_free"] >= 0.85 and r["share_429"] <= 0.01 and r["other_429"] <= 0.02,
        _of_free,
    ),
    "burst": Judge(
        ">= 80% of free, job <= 2% 429, neighbour <= 5% 429",
        lambda r: r["of_free"] >= 0.8 and r["share_429"] <= 0.02 and r["other_429"] <= 0.05,
        _of_free,
    ),
    "jobs": Judge(
        "both exit 0, <= 2% 429, together >= 80% of the limit per window and >= 80% rate used",
        lambda r: r["share_429"] <= 0.02 and r["total"] >= 0.8 and r["rate_used"] >= 0.8,
        lambda r: (
            f"exits {r['exit']}, {pct(r['share_429'], 2)} 429, {pct(r['total'])} of the limit, "
            f"{pct(r['rate_used'])} rate used"
        ),
    ),
    "maintenance": Judge(
        "<= 10 requests answered 503, the first request after it within Retry-After + 1.5 s, exit 0, "
        "no row failed",
        lambda r: (
            r["stats"]["responses_by_status"].get("503", 0) <= 10
            and r["resumed"] <= r["retry_after"] + 1.5
            and r["failed"] == 0
        ),
        lambda r: (
            f"{r['stats']['responses_by_status'].get('503', 0)} answered 503, the first request "
            f"{r['resumed']:.2f} s after it (Retry-After {r['retry_after']}), exit {r['exit']}, "
            f"{r['failed']} failed"
        ),
    ),
    "latency": Judge(
        f"after the jump >= 0.9 x what --max-concurrency {MAX_IN_FLIGHT} allows at the new round trip, "
        "in every try",
        lambda r: r["after_jump"] >= 0.9 * r["allowed"],
        lambda r: f"{r['after_jump']:.1f}/s of {r['allowed']:.0f}/s",
        exits=(0, 7),  # 7: its --max-duration
    ),
    "stuck": Judge(
        f"exactly one warning naming {WARNING_WORD}, no gap over 5 s at the server, exit 0, "
        "every row submitted",
        lambda r: r["warnings"] == 1 and r["gap"] <= 5.0 and r["submitted"] == r["case"].rows,
        lambda r: (
            f"{r['warnings']} warning(s), biggest gap {r['gap']:.2f} s, "
            f"{r['submitted']} of {r['case'].rows} submitted"
        ),
        lambda r: f"{r['warnings']} warning(s) naming {WARNING_WORD}; {r['rate']:.2f}/s sent",
    ),
}


def _check(case: SharedCase, tries: list[dict[str, Any]]) -> Check:
    """The issue's target for the job's runs of ``case``: met when every try meets it."""
    judge = JUDGES[case.judge]
    passed = [all(code in judge.exits for code in r["exit"]) and judge.passes(r) for r in tries]
    measured = "; ".join(judge.measured(r) for r in tries)
    if len(tries) > 1:
        measured = f"{sum(passed)} of {len(tries)} tries: {measured}"
    return Check(f"shared: {case.title}", measured, judge.target, all(passed))


COLUMNS = ["case", "client", "exit", "wall s", "job per window (of free)", "all per window / L", "job 429",
           "neighbour 429", "503s", "rows done (failed)", "biggest gap s", "also"]  # fmt: skip


def _cells(r: dict[str, Any]) -> list[str]:
    case = r["case"]
    client = r["client"] if case.tries == 1 or r["client"] != "job" else f"job, try {r['try']}"
    windows = r["windows"] > 0
    return [
        f"{case.key}: {case.title}",
        client,
        ",".join(map(str, r["exit"])),
        ", ".join(f"{w:.1f}" for w in r["wall"]),
        f"{r['ours']:.1f} ({r['of_free']:.0%})" if windows else "n/a",
        f"{r['total']:.0%}" if windows else "n/a",
        pct(r["share_429"], 2),
        pct(r["other_429"], 2),
        str(r["stats"]["responses_by_status"].get("503", 0)),
        f"{r['submitted']} ({r['failed']})",
        f"{r['gap']:.2f}",
        "; ".join(filter(None, [_after_jump(r), JUDGES[case.judge].also(r) if r["client"] == "job" else ""])),
    ]


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in results]
    return "\n".join(lines)


def notes(cases: list[tuple[Check, list[dict[str, Any]]]]) -> list[str]:
    """The section's prose: each case against its target (and the minimal script's figure beside
    the job's), then what only the simulations judge."""
    lines = []
    for check, found in cases:
        verdict = "PASS" if check.passed else "FAIL"
        minimal = [JUDGES[r["case"].judge].measured(r) for r in found if r["client"] == "minimal"]
        beside = f"; the minimal script: {minimal[0]}" if minimal else ""
        lines.append(f"{check.name.removeprefix('shared: ')}: {check.measured} (target: {check.target}): "
                     f"{verdict}{beside}")  # fmt: skip
    lines.append("Judged on the simulations only (real `Pacer` / `Concurrency` on a virtual clock), not "
                 "here: " + "; ".join(SIMULATED_ONLY) + ".")  # fmt: skip
    return lines


def selected(cases: list[str] | None, quick: bool) -> list[SharedCase]:
    """``cases`` (default: all), without the 15 s windows when ``quick``."""
    return [CASES[key] for key in cases or list(CASES) if not (quick and CASES[key].long)]


def stage(*, cases: list[str] | None = None, quick: bool = False, command: str, workdir: Path) -> Staged:
    """The section for ``bench.run`` (``--only shared``): every case but the ``slow`` group's runs
    now; the slow group's runs are handed back to go with other sections' (:mod:`bench.stages`)."""
    picked = selected(cases, quick)
    now = [case for case in picked if case.together != SLOW]
    found = dict(zip((case.key for case in now), measure(now, workdir), strict=True))
    slow = sorted((case for case in picked if case.together == SLOW), key=_longest_first)
    planned = [(case, run) for case in slow for run in _planned(case, workdir)]

    def finish(results: list[dict[str, Any]], others: list[str]) -> Section:
        found.update({case.key: _by_case(results, case.key) for case in slow})
        return _section([(case, found[case.key]) for case in picked], others, command)

    label = "the shared key's " + ", ".join(f"`{case.key}`" for case in slow)
    return Staged(label, [run for _case, run in planned], finish)


def _section(
    cases: list[tuple[SharedCase, list[dict[str, Any]]]], others: list[str], command: str
) -> Section:
    judged = [(_check(case, [r for r in found if r["client"] == "job"]), found) for case, found in cases]
    out = Table(COLUMNS)
    for _, found in judged:
        for r in found:
            out.add(*_cells(r))
    method = __doc__.split("\n", 3)[3].strip() if __doc__ else ""
    keys = ", ".join(f"`{key}`" for key in CASES)
    method += (
        f"\n\nCases (`--case KEY`, repeatable, picks some): {keys}; `--quick` leaves out the 15 s windows."
    )
    if others:
        method += f"  In this run the ``slow`` group ran beside {' and '.join(others)}."
    title = (
        "5. Sharing the key (issue 17): other traffic, two jobs, maintenance, a latency jump, stuck counts"
    )
    checks = [check for check, _found in judged]
    return Section("shared", title, method, command, tables=[("The shared key", out)], checks=checks,
                   notes=notes(judged))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shared", description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", choices=list(CASES))
    parser.add_argument("--quick", action="store_true", help="leave out the 15 s windows")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-shared-") as tmp:
        for found in measure(selected(args.case, args.quick), Path(tmp)):
            results += found
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

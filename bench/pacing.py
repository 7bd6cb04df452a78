"""Pacing: how much of a 50-per-second fixed window the client uses, and how often it hears 429.

Each case gets a fresh emulator process (``--rate-limit 50/s --unknown classified``) and sends the
same rows.  The emulator keeps every throttle window (start, accepted, throttled); a window is
*complete* when it ended before the client exited; as issue 10 defines utilisation, neither the
first window (the one the preflight opens, where auto learns the window's length) nor the last
(the partial one the run ends in) counts.  Utilisation = accepted requests per complete window
/ 50.  Because a window opens only at the first request after the previous one ended, idle time
between windows does not show in that figure; "rate used" (accepted over the span of the
complete windows, per second, / 50) shows it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import data
from bench.procs import PYTHON, BenchError, emulator, job_argv, run_measured, wait_for_quiet
from bench.report import Check, Section, Table, pct, ratio

LIMIT = 50
PERIOD = 1.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of one client against a fresh emulator."""

    wall: float
    requests: int
    throttled: int
    delivered: int
    complete: list[dict[str, Any]]
    foreign_cores: float

    @property
    def utilisation(self) -> float:
        return float(sum(w["accepted"] for w in self.complete)) / max(1, len(self.complete) * LIMIT)


@dataclass(frozen=True, slots=True)
class PacingResult:
    """A client's repeats, pooled: every complete window of every repeat counts once."""

    name: str
    attempts: list[Attempt]

    @property
    def wall(self) -> float:
        return sorted(a.wall for a in self.attempts)[len(self.attempts) // 2]

    @property
    def requests(self) -> int:
        return sum(a.requests for a in self.attempts)

    @property
    def throttled(self) -> int:
        return sum(a.throttled for a in self.attempts)

    @property
    def complete(self) -> list[dict[str, Any]]:
        return [w for a in self.attempts for w in a.complete]

    @property
    def foreign_cores(self) -> float:
        return max(a.foreign_cores for a in self.attempts)

    @property
    def share_429(self) -> float:
        return self.throttled / self.requests if self.requests else 0.0

    @property
    def utilisation(self) -> float:
        if not self.complete:
            return 0.0
        return float(sum(w["accepted"] for w in self.complete)) / (len(self.complete) * LIMIT)

    @property
    def worst_window(self) -> float:
        return min((w["accepted"] for w in self.complete), default=0) / LIMIT

    @property
    def rate_used(self) -> float:
        accepted = spans = 0.0
        for a in self.attempts:
            if a.complete:
                accepted += sum(w["accepted"] for w in a.complete)
                spans += float(a.complete[-1]["start"]) + PERIOD - float(a.complete[0]["start"])
        return accepted / spans / (LIMIT / PERIOD) if spans else 0.0


def complete_windows(windows: list[dict[str, Any]], ended_unix: float) -> list[dict[str, Any]]:
    """Windows that ended before the client did, never counting the first nor the last one."""
    return [w for w in windows[1:-1] if w["start"] + PERIOD <= ended_unix]


def _attempt(argv: Callable[[str, Path], list[str]], rows: int, workdir: Path) -> Attempt:
    with emulator("--rate-limit", f"{LIMIT}/s", "--unknown", "classified") as server:
        command = argv(server.url, workdir)
        wait_for_quiet()
        before = server.cpu_seconds()
        measured = run_measured(command, timeout=60 + 3 * rows / LIMIT).check()
        emulator_cpu = server.cpu_seconds() - before
        stats = server.stats()
    by_status: dict[str, int] = stats["responses_by_status"]
    return Attempt(
        measured.wall,
        stats["requests"],
        by_status.get("429", 0),
        stats["overrides"],
        complete_windows(stats["windows"], measured.ended_unix),
        measured.foreign_cores(emulator_cpu),
    )


def _job(rate: str) -> Callable[[str, Path], list[str]]:
    def argv(url: str, workdir: Path) -> list[str]:
        ledger = workdir / f"pacing-{rate.replace('/', '-')}.ledger.csv"
        return job_argv(
            "run", str(workdir / "pacing.csv"), "--ledger", str(ledger), "--api-url", url,
            "--rate", rate, "--headroom", "0", "--concurrency", "8", "-q",
        )  # fmt: skip

    return argv


def _minimal(url: str, workdir: Path) -> list[str]:
    return [PYTHON, "-m", "bench.minimal_client", str(workdir / "pacing.csv"), url, "--limiter"]


def run(*, rows: int, repeats: int, command: str) -> Section:
    cases: list[tuple[str, Callable[[str, Path], list[str]]]] = [
        ("minimal: aiohttp + AsyncLimiter(3000, 60) (baseline)", _minimal),
        ("job --rate auto --headroom 0", _job("auto")),
        ("job --rate 49/s", _job("49/s")),
        ("job --rate 50/s", _job("50/s")),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-pacing-") as tmp:
        workdir = Path(tmp)
        data.write_corrections(workdir / "pacing.csv", rows, seed=11)
        # Repeats interleave the clients, so a burst of load from elsewhere hits them alike.
        attempts: dict[str, list[Attempt]] = {name: [] for name, _ in cases}
        for _ in range(repeats):
            for name, argv in cases:
                attempts[name].append(_attempt(argv, rows, workdir))
    results = [PacingResult(name, attempts[name]) for name, _ in cases]
    for r in results:
        for a in r.attempts:
            if a.delivered != rows:
                raise BenchError(f"pacing, {r.name}: the emulator holds {a.delivered} overrides, not {rows}")
    base = results[0]
    table = Table(
        [
            "client", "wall s", "requests", "429 share", "complete windows", "utilisation",
            "worst window", "rate used", "utilisation vs baseline", "429 share vs baseline",
            "other load (cores)",
        ]
    )  # fmt: skip
    for r in results:
        table.add(
            r.name, f"{r.wall:.1f}", r.requests, pct(r.share_429), len(r.complete), pct(r.utilisation),
            pct(r.worst_window, 0), pct(r.rate_used), ratio(r.utilisation, base.utilisation),
            ratio(r.share_429, base.share_429), f"{r.foreign_cores:.2f}",
        )  # fmt: skip
    auto, r49, r50 = results[1], results[2], results[3]
    checks = [
        Check(
            "pacing: --rate auto --headroom 0",
            f"{pct(auto.utilisation)} utilisation, {pct(auto.share_429, 2)} 429",
            ">= 95% utilisation, <= 2% 429",
            auto.utilisation >= 0.95 and auto.share_429 <= 0.02,
        ),
        Check(
            "pacing: --rate 49/s",
            f"{pct(r49.utilisation)} utilisation, {r49.throttled} 429",
            ">= 95% utilisation, no 429",
            r49.utilisation >= 0.95 and r49.throttled == 0,
        ),
        Check(
            "pacing: --rate 50/s",
            f"{pct(r50.utilisation)} utilisation, {pct(r50.share_429, 2)} 429",
            ">= 97% utilisation, <= 0.5% 429",
            r50.utilisation >= 0.97 and r50.share_429 <= 0.005,
        ),
    ]
    windows = Table(["client", "repeat", "wall s", "utilisation", "accepted per complete window (throttled)"])
    for r in results:
        for i, a in enumerate(r.attempts, 1):
            cells = " ".join(f"{w['accepted']}({w['throttled']})" for w in a.complete)
            windows.add(r.name, i, f"{a.wall:.1f}", pct(a.utilisation), cells)
    method = f"""
{__doc__.split(chr(10), 2)[2].strip()}

Each client runs {repeats} time(s), interleaved with the others, on the same {rows} rows
(`hash,classification`, all unique); each run gets a fresh
`python -m batch_override.emulator --port 0 --rate-limit 50/s --unknown classified` process and
the client in its own process.  The figures pool the complete windows of all runs; wall is the
median run.  The job runs as
`run pacing.csv --ledger L --api-url URL --rate R --headroom 0 --concurrency 8 -q` (its preflight
request is one of the requests counted).  The baseline is `bench/minimal_client.py --limiter`: csv +
aiohttp + `AsyncLimiter(3000, 60)` + `Semaphore(8)`, retrying a 429 after `Retry-After`.  Every case
must leave all {rows} overrides on the server, or the benchmark fails.  "other load" is the CPU
that processes other than the client and the emulator used meanwhile (from `/proc/stat`), in
cores, worst run: on a machine shared with other work, timing figures are only as good as that.
"""
    return Section(
        "pacing",
        "1. Pacing against a 50/s fixed window",
        method,
        command,
        tables=[("Utilisation and 429s", table), ("Windows", windows)],
        checks=checks,
    )

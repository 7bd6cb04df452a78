"""Overhead: rows per second and client CPU per 1,000 rows against an unthrottled emulator.

Every run gets a fresh emulator process (``--unknown classified``, no throttle) and runs the
client in its own process, reaped with ``wait4`` for its CPU time (children included: ``xargs``
is charged for its curls).  Start-up is taken out by running each client twice, on N rows and on
1 row, and using the differences: CPU per 1,000 rows = (cpu(N) - cpu(1)) / (N - 1) * 1000, and
rows/s = (N - 1) / (wall(N) - wall(1)).  The emulator's CPU over the client's run comes from
``/proc/PID/stat`` before and after; it shows which side is the bottleneck.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import data
from bench.procs import (
    DEMO_API_KEY,
    PYTHON,
    BenchError,
    Measured,
    emulator,
    job_argv,
    run_measured,
    wait_for_quiet,
)
from bench.report import Check, Section, Table, ratio

Argv = Callable[[str, Path, Path], list[str]]  # (url, input csv, workdir) -> argv


@dataclass(frozen=True, slots=True)
class Run:
    rows: int
    measured: Measured
    emulator_cpu: float


@dataclass(frozen=True, slots=True)
class ClientResult:
    name: str
    big: Run
    tiny: Run

    @property
    def foreign_cores(self) -> float:
        return self.big.measured.foreign_cores(self.big.emulator_cpu)

    @property
    def rows(self) -> int:
        return self.big.rows

    @property
    def rows_per_s(self) -> float:
        return (self.big.rows - self.tiny.rows) / max(1e-9, self.big.measured.wall - self.tiny.measured.wall)

    @property
    def cpu_per_1000(self) -> float:
        return (self.big.measured.cpu - self.tiny.measured.cpu) / (self.big.rows - self.tiny.rows) * 1000

    @property
    def emulator_cpu_per_1000(self) -> float:
        return self.big.emulator_cpu / self.big.rows * 1000


def _job(url: str, csv_path: Path, workdir: Path) -> list[str]:
    ledger = workdir / (csv_path.stem + ".ledger.csv")
    for stale in workdir.glob(ledger.name + "*"):
        stale.unlink()
    return job_argv(
        "run", str(csv_path), "--ledger", str(ledger), "--api-url", url,
        "--rate", "1000000/s", "--concurrency", "8", "-q",
    )  # fmt: skip


def _job_no_trust_env(url: str, csv_path: Path, workdir: Path) -> list[str]:
    argv = _job(url, csv_path, workdir)
    return [PYTHON, "-m", "bench.diag_no_trust_env", *argv[argv.index("run") :]]


def _minimal(url: str, csv_path: Path, workdir: Path) -> list[str]:
    return [PYTHON, "-m", "bench.minimal_client", str(csv_path), url]


def _curl(url: str, csv_path: Path, workdir: Path) -> list[str]:
    # One line of three xargs arguments per row: -d BODY URL.  Built before the clock starts.
    args = workdir / (csv_path.stem + ".xargs")
    lines = []
    with open(csv_path, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            sha, classification = line.rstrip("\n").split(",")[:2]
            body = json.dumps({"classification": classification}, separators=(",", ":"))
            lines.append(f"-d '{body}' {url}/api/classification_video/{sha}/override\n")
    args.write_text("".join(lines), encoding="utf-8")
    return [
        "sh", "-c",
        'exec xargs -P 8 -n 3 curl -sS -o /dev/null -w "%{http_code}\\n" '
        f'-H "X-Api-Key: {DEMO_API_KEY}" -H "Content-Type: application/json" < "$0"',
        str(args),
    ]  # fmt: skip


def _one(argv: Argv, csv_path: Path, rows: int, workdir: Path, timeout: float) -> Run:
    with emulator("--unknown", "classified") as server:
        command = argv(server.url, csv_path, workdir)
        wait_for_quiet()
        before = server.cpu_seconds()
        measured = run_measured(command, timeout=timeout).check()
        emulator_cpu = server.cpu_seconds() - before
        stats = server.stats()
    if stats["overrides"] != rows:
        raise BenchError(f"overhead, {command[:4]}: {stats['overrides']} overrides, expected {rows}")
    return Run(rows, measured, emulator_cpu)


def _clients(
    clients: list[tuple[str, Argv]],
    csv_path: Path,
    rows: int,
    workdir: Path,
    repeats: int,
    timeout: float | None = None,
) -> list[ClientResult]:
    """Each client ``repeats`` times on ``rows`` rows and on 1, the clients taking turns."""
    tiny_csv = workdir / "one.csv"
    timeout = timeout or 120 + rows / 20
    bigs: list[list[Run]] = [[] for _ in clients]
    tinies: list[list[Run]] = [[] for _ in clients]
    for _ in range(repeats):
        # In turns, so a noisy minute on a shared machine hits the baseline and the job alike.
        for (_, argv), big, tiny in zip(clients, bigs, tinies, strict=True):
            big.append(_one(argv, csv_path, rows, workdir, timeout))
            tiny.append(_one(argv, tiny_csv, 1, workdir, 60))
    # The least CPU of the repeats: the work is the same each time and interference (a
    # neighbour's burst, a cold cache) only adds; a median of three still moved by 1.5x here.
    return [
        ClientResult(name, min(big, key=_cpu), min(tiny, key=_cpu))
        for (name, _), big, tiny in zip(clients, bigs, tinies, strict=True)
    ]


def _cpu(run: Run) -> float:
    return run.measured.cpu


def _auto_case(rows: int, workdir: Path) -> tuple[ClientResult | None, str]:
    """Informative: ``--rate auto`` against a server that sends no ``X-RateLimit-*`` headers, so it
    has no limit to learn: this shows the rate it falls back to (a few rows are enough)."""
    timeout = 30 + 2 * rows

    def auto(url: str, csv_path: Path, workdir: Path) -> list[str]:
        argv = _job(url, csv_path, workdir)
        argv[argv.index("1000000/s")] = "auto"
        return argv

    csv_path = data.write_corrections(workdir / "auto.csv", rows, seed=24)
    name = "job --rate auto, no X-RateLimit headers to learn from (informative)"
    try:
        return _clients([(name, auto)], csv_path, rows, workdir, 1, timeout=timeout)[0], ""
    except BenchError as exc:
        return None, (
            "`--rate auto` against a server that sends no `X-RateLimit-*` headers (a proxy that "
            f"strips them, or this unthrottled emulator) did not deliver {rows:,} rows within "
            f"{timeout:.0f} s: {str(exc).splitlines()[0]}"
        )


def run(*, rows: int, curl_rows: int, auto_rows: int, repeats: int, command: str) -> Section:
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        workdir = Path(tmp)
        main_csv = data.write_corrections(workdir / "rows.csv", rows, seed=21)
        data.write_corrections(workdir / "one.csv", 1, seed=22)
        results = _clients(
            [
                ("minimal: aiohttp, Semaphore(8) (baseline)", _minimal),
                ("job --rate 1000000/s, ledger on", _job),
                ("diagnostic: the job with aiohttp trust_env off", _job_no_trust_env),
            ],
            main_csv,
            rows,
            workdir,
            repeats,
        )
        curl: ClientResult | None = None
        if shutil.which("curl") and shutil.which("xargs"):
            curl_csv = data.write_corrections(workdir / "curl.csv", curl_rows, seed=23)
            (curl,) = _clients([("xargs -P 8 curl", _curl)], curl_csv, curl_rows, workdir, repeats)
            results.append(curl)
        else:
            notes.append("curl or xargs is missing: the `xargs -P 8 curl` case was skipped")
        if auto_rows:
            auto, note = _auto_case(auto_rows, workdir)
            results += [auto] if auto is not None else []
            notes += [note] if note else []
    base, job = results[0], results[1]
    table = Table(
        [
            "client", "rows", "wall s", "rows/s", "client CPU s", "CPU s / 1000 rows",
            "CPU vs baseline", "rows/s vs baseline", "client cores", "emulator CPU s / 1000 rows",
            "emulator cores", "other load (cores)",
        ]
    )  # fmt: skip
    for r in results:
        m = r.big.measured
        # A few rows cannot separate per-row CPU from start-up noise (the informative case).
        few = r.big.rows - r.tiny.rows < 1000
        per_1000 = "n/a" if few else f"{r.cpu_per_1000:.3f}"
        table.add(
            r.name, r.rows, f"{m.wall:.2f}", f"{r.rows_per_s:.0f}", f"{m.cpu:.2f}", per_1000,
            "n/a" if few else ratio(r.cpu_per_1000, base.cpu_per_1000), ratio(r.rows_per_s, base.rows_per_s),
            f"{m.cpu / m.wall:.2f}", f"{r.emulator_cpu_per_1000:.3f}", f"{r.big.emulator_cpu / m.wall:.2f}",
            f"{r.foreign_cores:.2f}",
        )  # fmt: skip
    startup = Table(["client", "1-row wall s", "1-row CPU s", "1-row peak RSS MiB", "N-row peak RSS MiB"])
    for r in results:
        startup.add(
            r.name, f"{r.tiny.measured.wall:.2f}", f"{r.tiny.measured.cpu:.2f}",
            f"{r.tiny.measured.maxrss_kib / 1024:.0f}", f"{r.big.measured.maxrss_kib / 1024:.0f}",
        )  # fmt: skip
    checks = [
        Check(
            "overhead: job CPU per 1000 rows",
            f"{job.cpu_per_1000:.3f} s vs {base.cpu_per_1000:.3f} s "
            f"({ratio(job.cpu_per_1000, base.cpu_per_1000)})",
            "<= 1.2x the minimal script's",
            job.cpu_per_1000 <= 1.2 * base.cpu_per_1000,
        )
    ]
    if curl is not None:
        checks.append(
            Check(
                "overhead: job rows/s",
                f"{job.rows_per_s:.0f} vs {curl.rows_per_s:.0f} ({ratio(job.rows_per_s, curl.rows_per_s)})",
                ">= 5x xargs -P 8 curl's",
                job.rows_per_s >= 5 * curl.rows_per_s,
            )
        )
    method = f"""
{__doc__.split(chr(10), 2)[2].strip()}

Rows: {rows} for the job and the minimal script, {curl_rows} for `xargs -P 8 curl`, {auto_rows} for
the informative `--rate auto` case; every case (the informative one once) is run {repeats} time(s)
on N rows and as often on 1 row, the clients taking turns, and the least CPU of each is kept
(the work is the same every time; a busy neighbour only adds).  The job: `run rows.csv
--ledger L --api-url URL --rate 1000000/s --concurrency 8 -q` (pacing cannot be switched off;
a million per second never waits, and the ledger is written and flushed per row as in
production).  The baseline:
`bench/minimal_client.py` without a limiter (`Semaphore(8)`, one session, no ledger).  curl:
`xargs -P 8 -n 3 curl -sS -o /dev/null -w "%{{http_code}}" -H ... -d BODY URL`, one process per
row.  The diagnostic row runs the same job through `bench/diag_no_trust_env.py`, which only
forces aiohttp's `trust_env` off (see there): while it differs from the job's row, the job still
pays for per-request proxy/netrc lookups in worker threads.  "cores" = CPU seconds / wall
seconds of the N-row run: a client at ~1.0 is CPU-bound on one core; the emulator well under 1.0
is not the bottleneck.
"""
    return Section(
        "overhead",
        "2. Client overhead against an unthrottled emulator",
        method,
        command,
        tables=[("Throughput and CPU (start-up excluded)", table), ("Start-up (the 1-row runs)", startup)],
        checks=checks,
        notes=notes,
    )

"""Scale: peak memory and wall time of a dry run over millions of rows, and the cost of resuming.

Each case runs ``run INPUT --ledger L --dry-run`` in a fresh process and reads its peak resident
set (``ru_maxrss`` from ``wait4``).  The ledger already holds a trusted earlier run that accepted the
first half of the rows (so the dry run loads a resume index, skips half and plans half); it is cut
back to its original size after each run.  Two sizes give "fixed base + bytes per unique row"
(the line through both points).  The baseline is ``bench/scan.py``: the same pyarrow CSV reader
streaming the same file with nothing done to the rows.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from bench import data
from bench.procs import (
    DEMO_API_KEY,
    PYTHON,
    BenchError,
    Measured,
    job_argv,
    machine_busy_seconds,
    run_measured,
    wait_for_quiet,
)
from bench.report import Check, Section, Table, ratio

OUT = Path(__file__).resolve().parent / "out" / "data"
DISK_MARGIN = 4 << 30


@dataclass(frozen=True, slots=True)
class Case:
    rows: int
    wide: bool

    @property
    def label(self) -> str:
        return f"{self.rows:,} rows, {'hash,classification + 4 x 250 chars' if self.wide else 'two columns'}"

    @property
    def stem(self) -> str:
        return f"v1-{self.rows}-{'wide' if self.wide else 'narrow'}"

    @property
    def input_bytes(self) -> int:
        return self.rows * (74 + (1004 if self.wide else 0))

    @property
    def ledger_bytes(self) -> int:
        return self.rows * (190 + (1004 if self.wide else 0))


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    job: Measured
    scan: Measured
    input_bytes: int


def _paths(case: Case) -> tuple[Path, Path]:
    return OUT / f"corrections-{case.stem}.csv", OUT / f"ledger-{case.stem}.csv"


def _inputs(case: Case) -> tuple[Path, Path]:
    """The case's input and ledger, generated once and kept in bench/out/data (gitignored)."""
    corrections, ledger = _paths(case)
    if not corrections.exists():
        data.write_corrections(corrections, case.rows, wide=case.wide)
    if not ledger.exists():
        data.write_ledger(ledger, corrections, case.rows // 2, wide=case.wide)
    return corrections, ledger


def _restore(ledger: Path, size: int) -> None:
    """Cut the ledger back to the earlier run's lines and reset its run log."""
    os.truncate(ledger, size)
    data.write_runlog(ledger)


def _dry_run(corrections: Path, ledger: Path, summary: Path, timeout: float) -> Measured:
    size = ledger.stat().st_size
    wait_for_quiet()
    try:
        return run_measured(
            job_argv(
                "run", str(corrections), "--ledger", str(ledger), "--api-url", data.DRY_RUN_URL,
                "--dry-run", "--summary", str(summary), "-q",
            ),
            timeout=timeout,
        ).check()  # fmt: skip
    finally:
        _restore(ledger, size)


def _case(case: Case, repeats: int) -> CaseResult:
    """The job's run with the median peak RSS of ``repeats``, and one scan."""
    corrections, ledger = _inputs(case)
    summary = OUT / f"summary-{case.stem}.json"
    timeout = 120 + case.input_bytes / 20e6
    jobs = []
    for _ in range(repeats):
        jobs.append(_dry_run(corrections, ledger, summary, timeout))
        outcomes = json.loads(summary.read_text())["outcomes"]
        expected = {"planned": case.rows - case.rows // 2, "skipped": case.rows // 2}
        if outcomes != expected:
            raise BenchError(f"scale, {case.label}: outcomes {outcomes}, expected {expected}")
    job = sorted(jobs, key=lambda m: m.maxrss_kib)[len(jobs) // 2]
    wait_for_quiet()
    scan = run_measured([PYTHON, "-m", "bench.scan", str(corrections)], timeout=timeout).check()
    if int(scan.stdout.strip()) != case.rows:
        raise BenchError(f"scale, {case.label}: the scan counted {scan.stdout.strip()} rows")
    return CaseResult(case, job, scan, corrections.stat().st_size)


def _fit(small: CaseResult, big: CaseResult) -> tuple[float, float]:
    """(base bytes, bytes per row) of the line through the two peak-RSS points."""
    per_row = (big.job.maxrss_kib - small.job.maxrss_kib) * 1024 / (big.case.rows - small.case.rows)
    base = small.job.maxrss_kib * 1024 - per_row * small.case.rows
    return base, per_row


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stream_wanted(ledger: Path) -> int:
    """What the index must read, the fair baseline: the ledger's five wanted columns as text,
    streamed by ``pyarrow.csv.open_csv`` with threads (as the loader reads them), nothing kept."""
    from batch_override.ledger.resume import WANTED

    convert = pacsv.ConvertOptions(
        include_columns=list(WANTED), column_types=dict.fromkeys(WANTED, pa.string())
    )
    read = pacsv.ReadOptions(use_threads=True, block_size=1 << 23)
    lines = 0
    with pacsv.open_csv(str(ledger), read_options=read, convert_options=convert) as reader:
        for batch in reader:
            lines += batch.num_rows
    return lines


def _resume(rows: int) -> tuple[Table, Check, list[str]]:
    """Loading a ``rows``-line ledger's resume index beside pyarrow reading the same file."""
    # The job's own loader, given the trusted runs the way the job computes them.
    from batch_override.apikey import ApiKey
    from batch_override.ledger import runlog
    from batch_override.ledger.resume import load_resume_index

    notes: list[str] = []
    corrections = OUT / f"corrections-v1-{rows}-narrow.csv"
    if not corrections.exists():
        data.write_corrections(corrections, rows)
    ledger = OUT / f"resume-v1-{rows}.ledger.csv"
    if not ledger.exists():
        data.write_ledger(ledger, corrections, rows)
    data.write_runlog(ledger)
    fingerprint = ApiKey(DEMO_API_KEY).fingerprint
    trusted = runlog.trusted_runs(runlog.runlog_path(ledger), data.DRY_RUN_URL, fingerprint)
    if data.TRUSTED_RUN not in trusted:
        raise BenchError("resume: the run log written by the benchmark is not trusted by the job")

    def timed(fn: Callable[[], object]) -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    index_len = len(load_resume_index(ledger, trusted))
    if index_len != rows:
        raise BenchError(f"resume: the index holds {index_len} keys, expected {rows}")
    # Interleaved, best of 5 each: a burst of load from elsewhere hits both alike.
    wait_for_quiet()
    busy, ours, started = machine_busy_seconds(), _self_cpu(), time.monotonic()
    loads, reads, streams = [], [], []
    for _ in range(5):
        loads.append(timed(lambda: load_resume_index(ledger, trusted)))
        reads.append(timed(lambda: pacsv.read_csv(str(ledger))))
        streams.append(timed(lambda: _stream_wanted(ledger)))
    foreign = max(0.0, machine_busy_seconds() - busy - (_self_cpu() - ours)) / (time.monotonic() - started)
    t_load, t_read, t_stream = min(loads), min(reads), min(streams)
    # The same through the CLI: a 10-row dry run with that ledger minus one with a header-only ledger.
    tiny = OUT / "resume-tiny.csv"
    data.write_corrections(tiny, 10)
    empty = OUT / "resume-empty.ledger.csv"
    shutil.copyfile(ledger, empty)
    with open(ledger, "rb") as fh:
        header_len = len(fh.readline())
    os.truncate(empty, header_len)
    walls = {}
    for name, path in (("full", ledger), ("empty", empty)):
        runs = [_dry_run(tiny, path, OUT / "resume-summary.json", 120) for _ in range(3)]
        walls[name] = min(r.wall for r in runs)
    cli_delta = walls["full"] - walls["empty"]
    table = Table(["step", "seconds (best of 5)", "vs pyarrow.csv.read_csv", "vs open_csv(include_columns)"])
    table.add("`pyarrow.csv.read_csv(ledger)`", f"{t_read:.3f}", "1.00x", ratio(t_read, t_stream))
    table.add(
        "`pyarrow.csv.open_csv(ledger, include_columns=WANTED)` streamed (the fair baseline)",
        f"{t_stream:.3f}",
        ratio(t_stream, t_read),
        "1.00x",
    )
    table.add(
        "`batch_override.ledger.resume.load_resume_index(ledger, trusted)`",
        f"{t_load:.3f}",
        ratio(t_load, t_read),
        ratio(t_load, t_stream),
    )
    table.add(
        "CLI: 10-row `--dry-run` with this ledger minus with a header-only ledger",
        f"{cli_delta:.3f}",
        ratio(cli_delta, t_read),
        ratio(cli_delta, t_stream),
    )
    size = ledger.stat().st_size / 2**20
    notes.append(
        f"resume ledger: {rows:,} lines ({size:.0f} MiB), one trusted run, every line `submitted`; "
        f"other load while timing: {foreign:.2f} cores; all 5 times, load_resume_index: "
        f"{', '.join(f'{x:.3f}' for x in loads)} s, read_csv: {', '.join(f'{x:.3f}' for x in reads)} s, "
        f"open_csv(include_columns): {', '.join(f'{x:.3f}' for x in streams)} s; "
        f"the CLI runs took {walls['full']:.2f}s and {walls['empty']:.2f}s"
    )
    check = Check(
        f"scale: resume index from a {rows:,}-line ledger",
        f"{t_load:.3f}s vs open_csv(include_columns) {t_stream:.3f}s ({ratio(t_load, t_stream)}); "
        f"vs read_csv {t_read:.3f}s ({ratio(t_load, t_read)})",
        "<= 1.5x pyarrow.csv.open_csv reading the same include_columns",
        t_load <= 1.5 * t_stream,
    )
    return table, check, notes


def plan_sizes(small: int, big: int) -> tuple[int, int, list[str]]:
    """Scale the big size down when the disk cannot hold its inputs, ledgers and dry-run output."""
    notes: list[str] = []
    OUT.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(OUT).free
    have = sum(p.stat().st_size for p in OUT.glob("*.csv"))

    def need(rows: int) -> int:
        cases = [Case(small, w) for w in (False, True)] + [Case(rows, w) for w in (False, True)]
        # inputs + earlier ledgers + what one dry run appends (cut back afterwards)
        return sum(c.input_bytes + c.ledger_bytes for c in cases) + max(c.ledger_bytes for c in cases)

    original = big
    while big > 2 * small and need(big) - have + DISK_MARGIN > free:
        big //= 2
    if big != original:
        notes.append(
            f"disk: {free / 2**30:.0f} GiB free is short of what {original:,} rows need; "
            f"the big size was scaled down to {big:,} rows"
        )
    return small, big, notes


def run(*, small: int, big: int, resume_rows: int, command: str, keep_data: bool, judge: bool) -> Section:
    """``judge`` False: the sizes are too small for a memory slope to mean anything (``--quick``)."""
    small, big, notes = plan_sizes(small, big)
    results: dict[tuple[int, bool], CaseResult] = {}
    try:
        for wide in (False, True):
            for rows in (small, big):
                # Peak RSS varies by up to ~100 MiB run to run (pyarrow's read-ahead, the
                # allocator); the small size is cheap to repeat, the big one is not.
                results[rows, wide] = _case(Case(rows, wide), 3 if rows == small else 1)
                if not keep_data:  # the 10M x 1 KB inputs are ~17 GB: never hold two cases at once
                    for path in _paths(Case(rows, wide)):
                        for stale in OUT.glob(path.name + "*"):
                            stale.unlink()
        resume_table, resume_check, resume_notes = _resume(resume_rows)
    finally:
        if not keep_data:
            shutil.rmtree(OUT, ignore_errors=True)
    notes += resume_notes
    table = Table(
        [
            "input", "input MiB", "job wall s", "job rows/s", "job peak RSS MiB", "scan wall s",
            "scan peak RSS MiB", "wall vs scan", "RSS vs scan", "other load (cores)",
        ]
    )  # fmt: skip
    for r in results.values():
        table.add(
            r.case.label, f"{r.input_bytes / 2**20:.0f}", f"{r.job.wall:.1f}",
            f"{r.case.rows / r.job.wall:,.0f}", f"{r.job.maxrss_kib / 1024:.0f}", f"{r.scan.wall:.1f}",
            f"{r.scan.maxrss_kib / 1024:.0f}", ratio(r.job.wall, r.scan.wall),
            ratio(r.job.maxrss_kib, r.scan.maxrss_kib), f"{r.job.foreign_cores():.2f}",
        )  # fmt: skip
    fit = Table(["columns", "fixed base MiB", "bytes per unique row", "vs the 64-byte target"])
    checks: list[Check] = []
    for wide in (False, True):
        base, per_row = _fit(results[small, wide], results[big, wide])
        what = "with ~1 KB of extra columns" if wide else "two columns"
        fit.add(what, f"{base / 2**20:.0f}", f"{per_row:.1f}", ratio(per_row, 64))
        checks.append(
            Check(
                f"scale: memory per unique row, {what}",
                f"{per_row:.1f} B/row + {base / 2**20:.0f} MiB",
                "<= 64 B/row",
                per_row <= 64 if judge else None,
            )
        )
    slopes = [_fit(results[small, w], results[big, w])[1] for w in (False, True)]
    notes.insert(0, f"~1 KB of extra columns changes the slope by {slopes[1] - slopes[0]:+.1f} B/row")
    checks.append(resume_check)
    method = f"""
{__doc__.split(chr(10), 2)[2].strip()}

Sizes: {small:,} and {big:,} rows, each once with two columns (`hash,classification`, ~74 bytes a
row) and once with four extra 250-character text columns (~1 KB a row), all hashes unique; CSV
written by pyarrow into `bench/out/data/` (gitignored; deleted after the run unless `--keep-data`).
The job: `run INPUT --ledger L --api-url {data.DRY_RUN_URL} --dry-run --summary S -q` with
`IDENTIFAI_API_KEY` set (a dry run sends nothing; the loopback URL is never contacted), the ledger
holding {small // 2:,} / {big // 2:,} `submitted` lines of a run its run log marks trusted.  Each run
must end with half the rows `skipped` and half `planned`.

The small size is run 3 times and its median peak RSS kept; the big size once (a 10M x 1 KB run
takes ~100 s).  Peak RSS varies by up to ~100 MiB from run to run (pyarrow's read-ahead buffers,
the allocator), i.e. about +-10 B/row on the slope: differences under ~15 B/row are noise.

Resume: `load_resume_index` imported from `batch_override.ledger.resume` and timed in-process on a
{resume_rows:,}-line ledger (all lines trusted), beside `pyarrow.csv.read_csv` of the same file
(all columns); best of 5 each, interleaved.  The CLI line is the end-to-end cost a user waits for.
"""
    return Section(
        "scale",
        "3. Scale: memory and time of a dry run; resume",
        method,
        command,
        tables=[
            ("Dry runs (with a ledger holding half the rows)", table),
            ("Peak RSS = fixed base + bytes per unique row", fit),
            ("Resume index", resume_table),
        ],
        checks=checks,
        notes=notes,
    )

"""Nightly: what a rerun costs as the ledger ages (issue 25, item 1).

Two cases, each the job's CLI in its own measured process against one emulator process on
127.0.0.1 (``--unknown classified``, no throttle, no latency; ``--rate 1000000/s`` and
``--concurrency 32``, so sending is not the bottleneck: a night's cost is reading its input and
resuming from the ledger):

- *cumulative*: a 100,000-row file on night 1, plus 1,000 new rows each night (the same rows
  first, as a database dump gives them), 30 nights on one ledger.  Nights 2, 10 and 30 are run
  3 times each from a copy of the ledger, its run log and its resume state as the night before
  left them (the median is reported); the other nights once, to age the ledger.  Every run is a
  fresh process, so its peak RSS is its own.
- *rerun*: a 200,000-row file sent once, then re-run 10 times with every row done; runs 2 and 10
  are run 3 times each from copies of the state before them.

Judged: night 30 (run 10) within 1.25x of night 2 (run 2) in wall time, CPU and peak RSS; the
ledger growing by at most the new rows' lines every night (1,000) and its side files (run log,
resume state) by at most its two run records and the state's 39 bytes per new key (cumulative);
the ledger's files staying under 2x their size after the first run (rerun).
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Callable
from pathlib import Path

from bench import data
from bench.procs import BenchError, Measured, emulator, job_argv, run_measured, wait_for_quiet
from bench.report import Check, Section, Table, ratio

TIMEOUT = 600.0
#: The nights (cumulative) and reruns measured 3 times.
MEASURED_NIGHTS = (2, 10, 30)  # --quick (10 nights) measures 2 and 10
MEASURED_RERUNS = (2, 10)


def _files(ledger: Path) -> list[Path]:
    """The ledger and its side files (run log, resume state)."""
    return sorted(ledger.parent.glob(ledger.name + "*"))


def _size(ledger: Path) -> int:
    return sum(p.stat().st_size for p in _files(ledger) if not p.name.endswith(".lock"))


def _snapshot(ledger: Path, to: Path) -> None:
    if to.exists():
        shutil.rmtree(to)
    to.mkdir(parents=True)
    for path in _files(ledger):
        shutil.copy2(path, to / path.name)


def _restore(frm: Path, ledger: Path) -> None:
    for path in _files(ledger):
        path.unlink()
    for path in frm.iterdir():
        shutil.copy2(path, ledger.parent / path.name)


def _run(url: str, corrections: Path, ledger: Path) -> Measured:
    argv = job_argv(
        "run", str(corrections), "--ledger", str(ledger), "--api-url", url,
        "--rate", "1000000/s", "--concurrency", "32", "-q",
    )  # fmt: skip
    return run_measured(argv, timeout=TIMEOUT).check(0)


def _median_of_3(url: str, corrections: Path, ledger: Path, before: Path) -> list[Measured]:
    """Three runs of the same night, each from the state ``before`` holds; the ledger is left as
    the last one left it."""
    _snapshot(ledger, before)
    runs = []
    for _ in range(3):
        _restore(before, ledger)
        wait_for_quiet(max_wait=3.0)  # a shared machine is rarely quiet: the medians absorb it
        runs.append(_run(url, corrections, ledger))
    return runs


def _medians(runs: list[Measured]) -> tuple[float, float, float]:
    return (
        statistics.median(r.wall for r in runs),
        statistics.median(r.cpu for r in runs),
        statistics.median(r.maxrss_kib for r in runs) / 1024,
    )


def _lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))


#: What the side files may add in a night besides the state's entries: the run log's two
#: records (~1.5 KB) and the state's header, with room to spare.
SIDE_SLACK = 16 * 1024
STATE_ENTRY = 39  # bytes per key in the resume state (37-byte entry and its 2-byte first run)


def _cumulative(
    workdir: Path, base: int, new: int, nights: int
) -> tuple[dict[int, list[Measured]], list[str], bool]:
    """Every night's file is the first ``base + new * (night - 1)`` rows of one generated file."""
    full = data.write_corrections(workdir / "all.csv", base + new * nights)
    lines = full.read_bytes().splitlines(keepends=True)
    corrections = workdir / "nightly.csv"
    ledger = workdir / "nightly.ledger.csv"
    measured: dict[int, list[Measured]] = {}
    growth_ok = True
    growth: list[str] = []
    worst = (0, 0)  # the most ledger lines and side-file bytes any night added
    with emulator("--unknown", "classified") as server:
        for night in range(1, nights + 1):
            rows = base + new * (night - 1)
            corrections.write_bytes(b"".join(lines[: 1 + rows]))
            exists = ledger.exists()
            lines_before = _lines(ledger) if exists else 0
            ledger_before = ledger.stat().st_size if exists else 0
            side_before = _size(ledger) - ledger_before if exists else 0
            if night in MEASURED_NIGHTS:
                measured[night] = _median_of_3(server.url, corrections, ledger, workdir / f"before-{night}")
            else:
                _run(server.url, corrections, ledger)
            if night == 1:
                continue
            added = _lines(ledger) - lines_before
            side = _size(ledger) - ledger.stat().st_size - side_before
            worst = (max(worst[0], added), max(worst[1], side))
            if added > new or side > STATE_ENTRY * new + SIDE_SLACK:
                growth_ok = False
                growth.append(f"night {night}: +{added:,} ledger lines, side files +{side:,} bytes")
    most = f"at most +{worst[0]:,} ledger lines and side files +{worst[1]:,} bytes a night"
    growth.insert(0, f"{most} (nights 2-{nights})")
    return measured, growth, growth_ok


def _rerun(workdir: Path, rows: int, reruns: int) -> tuple[dict[int, list[Measured]], int, int]:
    corrections = data.write_corrections(workdir / "rerun.csv", rows, seed=2)
    ledger = workdir / "rerun.ledger.csv"
    measured: dict[int, list[Measured]] = {}
    with emulator("--unknown", "classified") as server:
        _run(server.url, corrections, ledger)
        first = _size(ledger)
        for n in range(2, reruns + 1):
            if n in MEASURED_RERUNS:
                measured[n] = _median_of_3(server.url, corrections, ledger, workdir / f"rerun-before-{n}")
            else:
                _run(server.url, corrections, ledger)
    return measured, first, _size(ledger)


def run(
    *,
    base: int,
    new: int,
    nights: int,
    rerun_rows: int,
    reruns: int,
    command: str,
    workdir: Path,
    judge: bool,
) -> Section:
    workdir = workdir / "nightly"
    workdir.mkdir(parents=True, exist_ok=True)
    section = Section(
        "nightly",
        "Nightly: a rerun's cost as the ledger ages",
        __doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        command,
    )
    nightly, growth, growth_ok = _cumulative(workdir, base, new, nights)
    reran, first_size, last_size = _rerun(workdir, rerun_rows, reruns)
    table = Table(["case", "run", "wall s (median of 3)", "CPU s", "peak RSS MiB", "vs the first measured"])

    def add(label: str, runs: dict[int, list[Measured]], name: Callable[[int], str]) -> list[float]:
        first = _medians(runs[min(runs)])
        ratios: list[float] = []
        for n in sorted(runs):
            wall, cpu, rss = _medians(runs[n])
            worst = max(wall / first[0], cpu / first[1], rss / first[2])
            ratios.append(worst)
            table.add(
                label, name(n), f"{wall:.2f}", f"{cpu:.2f}", f"{rss:.0f}",
                f"wall {ratio(wall, first[0])}, CPU {ratio(cpu, first[1])}, RSS {ratio(rss, first[2])}",
            )  # fmt: skip
        return ratios

    cum = add(f"{base:,} rows + {new:,} a night", nightly, lambda n: f"night {n}")
    re = add(f"{rerun_rows:,} rows, all done", reran, lambda n: f"run {n}")
    section.tables.append(("", table))
    section.notes.append("ledger files' growth: " + "; ".join(growth))
    section.notes.append(
        f"rerun: ledger files {first_size:,} bytes after the first run, {last_size:,} after run {reruns} "
        f"({ratio(last_size, first_size)})"
    )
    section.checks += [
        Check(
            f"nightly: night {nights} vs night 2 (wall, CPU, peak RSS)",
            f"{cum[-1]:.2f}x at worst",
            "<= 1.25x",
            cum[-1] <= 1.25 if judge else None,
        ),
        Check(
            "nightly: the ledger's files grow by the new outcomes' lines a night",
            "; ".join(growth),
            f"<= {new:,} lines (+ run log, {STATE_ENTRY} B of state per new key)",
            growth_ok if judge else None,
        ),
        Check(
            f"nightly: rerun {reruns} vs rerun 2 of a done file (wall, CPU, peak RSS)",
            f"{re[-1]:.2f}x at worst",
            "<= 1.25x",
            re[-1] <= 1.25 if judge else None,
        ),
        Check(
            "nightly: ledger files after the reruns vs after the first run",
            ratio(last_size, first_size),
            "< 2x",
            last_size < 2 * first_size if judge else None,
        ),
    ]
    if not nightly or not reran:
        raise BenchError("nightly: nothing measured")
    return section

"""Results of a benchmark run, printed as a table and rendered as BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata


@dataclass(slots=True)
class Table:
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])


@dataclass(frozen=True, slots=True)
class Check:
    """One target of the issue: what was measured against what was asked."""

    name: str
    measured: str
    target: str
    passed: bool | None  # None: not judged (e.g. --quick sizes are too small for this target)


@dataclass(slots=True)
class Section:
    key: str  # the --only name
    title: str
    method: str  # markdown
    command: str
    tables: list[tuple[str, Table]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def ratio(x: float, base: float) -> str:
    return f"{x / base:.2f}x" if base else "n/a"


def machine(revision: str) -> list[tuple[str, str]]:
    """What the figures were measured on (``revision``: see :func:`revision`)."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    try:
        curl = subprocess.run(
            ["curl", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.split("\n", 1)[0]
    except OSError:
        curl = "absent"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("aiohttp", "aiolimiter", "numpy", "pandas", "pyarrow")
    )
    return [
        ("CPU", f"{os.cpu_count()} logical CPUs (nproc), {cpu}"),
        ("memory", f"{mem:.0f} GiB"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {sys.version.split()[0]}"),
        ("packages", versions),
        ("batch-override", f"{metadata.version('batch-override')}, {revision}"),
        ("curl", " ".join(curl.split()[:2]) if curl else "absent"),
    ]


def revision() -> str:
    """The commit measured, and whether batch_override/ had uncommitted changes (work in progress)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "batch_override"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "revision unknown"
    return f"commit {head}" + (" + uncommitted changes in batch_override/" if dirty else "")


def _md_table(table: Table) -> list[str]:
    out = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    out += ["| " + " | ".join(row) + " |" for row in table.rows]
    return out


def _text_table(table: Table) -> list[str]:
    widths = [max([len(c), *(len(r[i]) for r in table.rows)]) for i, c in enumerate(table.columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(table.columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table.rows]
    return lines


def checks_table(sections: list[Section]) -> Table:
    table = Table(["benchmark", "target", "measured", "result", "reproduce"])
    for section in sections:
        for check in section.checks:
            verdict = "not judged" if check.passed is None else "PASS" if check.passed else "FAIL"
            table.add(check.name, check.target, check.measured, verdict, f"`{section.command}`")
    return table


def render_text(sections: list[Section]) -> str:
    lines: list[str] = []
    for section in sections:
        lines += ["", f"== {section.title} ({section.seconds:.0f}s)  [{section.command}]"]
        for caption, table in section.tables:
            lines += ["", caption, *_text_table(table)]
        lines += [f"note: {note}" for note in section.notes]
    lines += ["", "== Targets", *_text_table(checks_table(sections))]
    return "\n".join(lines) + "\n"


#: Figures from earlier runs that the code's comments used to quote (the comments keep the why):
#: this suite does not measure them, so every rendering carries them as they are.
QUOTED_FIGURES = (
    (
        "`sending/client.py`, `trust_env=False`",
        "with `trust_env`, aiohttp's per-request `~/.netrc` and proxy look-ups in a worker thread "
        "cost about 3x the CPU per row",
    ),
    (
        "`pacing/sliding_log.py`, the absolute grid",
        "a relative sleep lost about 1 ms per send to timer rounding: 5 % of the rate at 50/s",
    ),
    (
        "`pacing/sliding_log.py`, `CatchUp`",
        "without catching up, a 1 s window 200 ms away got 73 of its 90 requests in the window "
        "in which auto pacing learnt its length",
    ),
    (
        "`pacing/window.py`, `ServerWindow`",
        "adding every later send to a count, on a long-tailed network (150 ms median, 1.5 s p99), "
        "estimated 110 in windows that held 90, and held the pacer for nothing",
    ),
    ("`pacing/pacer.py`, `WINDOW_MARGIN`", "Laravel on Redis: a 15 s window lasted 15.02 s"),
    ("`job/plan.py`, `batch_digest`", "SHA-256 with SHA-NI: about 1.3 GB/s, the fastest of hashlib there"),
    (
        "`ledger/resume.py`, `ResumeIndex.prefix`",
        "searching 4-byte integer prefixes: about 10x faster than comparing 37-byte keys",
    ),
    (
        "`ledger/latest.py`",
        "numpy sorts uint64 numbers about 9x faster than 37-byte strings; buckets in numpy's memory "
        "peaked at 77 B/entry once a larger block had been freed, memory maps at 42",
    ),
    ("`cli/main.py`, `gc.freeze()`", "the cyclic garbage collector walking what was imported: about 8 % CPU"),
    ("`cli/nopandas.py`", "pyarrow importing pandas on its first `pa.array()`: about 0.2 s and 60 MB a run"),
)


def quoted_figures() -> list[str]:
    """The section of BENCHMARKS.md that quotes earlier runs (see :data:`QUOTED_FIGURES`)."""
    table = Table(["where", "figure"])
    for where, figure in QUOTED_FIGURES:
        table.add(where, figure)
    return [
        "## Figures quoted from earlier runs",
        "",
        "Measurements the code's comments used to quote, kept here so that a comment says why and this",
        "file says how much.  They come from earlier runs and experiments, not from the run above;",
        "`bench/run.py` does not measure them again.",
        "",
        *_md_table(table),
    ]


def render_markdown(
    sections: list[Section], *, preamble: str, invocation: str, total_seconds: float, revision_at_start: str
) -> str:
    at_end = revision()
    measured = (
        revision_at_start
        if at_end == revision_at_start
        else f"changed during the run (another engineer's work): {revision_at_start} at the start, "
        f"{at_end} at the end"
    )
    lines = ["# Benchmarks", "", preamble.strip(), ""]
    lines += [
        f"Figures below come from one run of `{invocation}` ({total_seconds / 60:.1f} min), "
        "written by `bench/run.py`; every ratio is against a baseline measured in that same run.",
        "",
        "## Targets",
        "",
        *_md_table(checks_table(sections)),
        "",
        "## Machine",
        "",
        *(f"- {name}: {value}" for name, value in machine(measured)),
        "",
    ]
    for section in sections:
        lines += [
            f"## {section.title}",
            "",
            f"Reproduce: `{section.command}` (this section took {section.seconds / 60:.1f} min)",
            "",
            section.method.strip(),
            "",
        ]
        for caption, table in section.tables:
            lines += [f"**{caption}**", "", *_md_table(table), ""]
        if section.notes:
            lines += [*(f"- {note}" for note in section.notes), ""]
    lines += [*quoted_figures(), ""]
    return "\n".join(lines).rstrip() + "\n"

"""``python -m bench.run [--quick] [--only pacing|overhead|scale|field|shared|nightly] [--case KEY]``: run the
benchmarks, print a table, and rewrite BENCHMARKS.md.

The full suite (``make bench``) takes about 21 minutes on 2 cores (its budget: 25; the nightly
section is ~2.5 of them) and writes BENCHMARKS.md; the field's and shared's slow cases run last,
all at once (``bench/stages.py``).
``--quick`` uses smaller sizes and leaves out the minute-long windows (about 6 minutes), ``--only``
picks sections and ``--case`` picks cases of the field and shared sections; any of them writes
``bench/out/BENCHMARKS.partial.md`` instead, so a partial run never replaces the full figures
(``--output`` chooses the file).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import field, nightly, overhead, pacing, scale, shared
from bench.procs import REPO, BenchError
from bench.report import Check, Section, render_markdown, render_text, revision
from bench.stages import Staged, finish_together

SECTIONS = ("pacing", "overhead", "scale", "field", "shared", "nightly")
#: The sections whose cases ``--case`` picks (a key names a case of one of them).
CASES: dict[str, list[str]] = {"field": list(field.CASES), "shared": list(shared.CASES)}

PREAMBLE = """
How fast and how frugal `batch-override` is, measured against what a user would otherwise run:
a minimal aiohttp script (`bench/minimal_client.py`), `xargs -P 8 curl`, and pyarrow reading the
same file.  Every server is the bundled emulator in its own process on 127.0.0.1; every client runs
in its own process and is measured by the kernel (`wait4` resource usage, `/proc/PID/stat`).
Before each measured run the suite waits (up to 20 s) for other processes to use under 0.3 cores,
and every table says how busy the rest of the machine was meanwhile ("other load").

The field section (4) also runs the genuine Laravel 8 throttle (`php -S` and `redis-server`, from
Debian's `php-cli php-laravel-framework php-redis redis-server`) and says so when they are absent.

Run everything: `make bench` (= `.venv/bin/python -m bench.run`, ~21 min, rewrites this file).
A developer's check: `.venv/bin/python -m bench.run --quick` (~6 min; smaller sizes, no minute-long
windows, writes `bench/out/BENCHMARKS.partial.md`).  One section: `.venv/bin/python -m bench.run
--only pacing` (or `overhead`, `scale`, `field`, `shared`, `nightly`); some cases: `--only field
--case l40-15s`, `--only shared --case latency-jump`.
"""


def _command(args: argparse.Namespace, section: str) -> str:
    parts = [".venv/bin/python -m bench.run", "--only", section]
    if args.quick:
        parts.append("--quick")
    if section in CASES:
        parts += [f"--case {key}" for key in args.case or () if key in CASES[section]]
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: about 2 minutes")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run this section (repeatable)")
    parser.add_argument(
        "--case",
        action="append",
        choices=[key for keys in CASES.values() for key in keys],
        help="field or shared case to run (repeatable; a section none is picked from runs them all)",
    )
    parser.add_argument("--output", type=Path, help="markdown file to write (default: see above)")
    parser.add_argument("--keep-data", action="store_true", help="keep generated inputs in bench/out/data")
    args = parser.parse_args(argv)
    only = args.only or list(SECTIONS)
    quick: bool = args.quick
    full = not quick and set(only) == set(SECTIONS) and not args.case
    output: Path = args.output or (
        REPO / "BENCHMARKS.md" if full else REPO / "bench/out/BENCHMARKS.partial.md"
    )

    def picked(section: str) -> list[str] | None:
        return [key for key in args.case or () if key in CASES[section]] or None

    def failed(key: str, exc: BaseException) -> Section:
        # The package under test changes while benchmarks are written; say what broke, go on.
        if not isinstance(exc, BenchError):
            traceback.print_exception(exc)
        print(f"bench: {key} failed: {exc}", file=sys.stderr)
        reason = " ".join(str(exc).split())[:300]
        section = Section(key, f"{key}: did not complete", f"Failed: {reason}", _command(args, key))
        section.checks.append(Check(f"{key}: the benchmark runs", reason, "completes", False))
        return section

    started = time.monotonic()
    revision_at_start = revision()
    by_key: dict[str, Section] = {}
    staged: dict[str, tuple[Staged, float]] = {}  # the field's and shared's slow cases, run last
    scratch = tempfile.TemporaryDirectory(prefix="bench-run-")  # removed at exit, or below
    workdir = Path(scratch.name)
    for key in SECTIONS:
        if key not in only:
            continue
        t0 = time.monotonic()
        print(f"bench: {key} ...", file=sys.stderr, flush=True)
        try:
            if key == "pacing":
                section = pacing.run(
                    rows=250 if quick else 600, repeats=1 if quick else 3, command=_command(args, key)
                )
            elif key == "overhead":
                section = overhead.run(
                    rows=4000 if quick else 20_000,
                    curl_rows=400 if quick else 2000,
                    auto_rows=0 if quick else 10,
                    repeats=1 if quick else 3,
                    command=_command(args, key),
                )
            elif key == "shared":
                staged[key] = (
                    shared.stage(
                        cases=picked(key), quick=quick, command=_command(args, key), workdir=workdir
                    ),
                    time.monotonic() - t0,
                )
                continue
            elif key == "field":
                staged[key] = (
                    field.stage(
                        cases=picked(key) or field.DEFAULT_CASES,
                        quick=quick,
                        command=_command(args, key),
                        workdir=workdir,
                    ),
                    time.monotonic() - t0,
                )
                continue
            elif key == "nightly":
                section = nightly.run(
                    base=20_000 if quick else 100_000,
                    new=1000,
                    nights=10 if quick else 30,
                    rerun_rows=40_000 if quick else 200_000,
                    reruns=10,
                    command=_command(args, key),
                    workdir=workdir,
                    judge=not quick,
                )
            else:
                section = scale.run(
                    small=100_000 if quick else 1_000_000,
                    big=250_000 if quick else 10_000_000,
                    resume_rows=1_000_000,
                    command=_command(args, key),
                    keep_data=args.keep_data,
                    judge=not quick,
                )
        except Exception as exc:
            section = failed(key, exc)
        section.seconds = time.monotonic() - t0
        by_key[key] = section
    if staged:
        # Their slow cases pace a few requests a second: all of them at once cost the longest.
        t0 = time.monotonic()
        print(f"bench: the slow cases of {', '.join(staged)} together ...", file=sys.stderr, flush=True)
        results = finish_together([stage for stage, _seconds in staged.values()])
        together_seconds = time.monotonic() - t0
        for (key, (stage, seconds)), found in zip(staged.items(), results, strict=True):
            others = [other.label for k, (other, _s) in staged.items() if k != key and other.slow]
            try:
                if isinstance(found, BaseException):
                    raise found
                section = stage.finish(found, others if stage.slow else [])
            except Exception as exc:
                section = failed(key, exc)
            section.seconds = seconds + together_seconds  # the slow cases' time counts for each
            by_key[key] = section
    scratch.cleanup()
    sections = [by_key[key] for key in SECTIONS if key in by_key]
    total = time.monotonic() - started
    print(render_text(sections))
    invocation = "make bench" if full else " ".join(["python -m bench.run", *(argv or sys.argv[1:])])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        render_markdown(
            sections,
            preamble=PREAMBLE,
            invocation=invocation,
            total_seconds=total,
            revision_at_start=revision_at_start,
        ),
        encoding="utf-8",
    )
    print(f"bench: wrote {output} ({total / 60:.1f} min)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

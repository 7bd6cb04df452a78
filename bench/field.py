"""The field: windows of 1 s, 15 s and a minute, the genuine Laravel throttle, network latency,
a proxy that strips rate headers, and a server with a fixed number of workers (issue 10).

Each case runs the job with its default flags (plus what the case names) and, the same way, the
minimal script (``bench/minimal_client.py --limiter L/D``: aiohttp + ``AsyncLimiter(L, D)`` +
``Semaphore(8)``, what a user would configure for the server's limit), each against a fresh server.
The server counts: the emulator keeps every throttle window (start, end, accepted, throttled,
accepted per tenth of the window) and the arrival times and request-seconds it held; the Laravel
app (``tests/laravel/server.php``) logs every request, from which the harness rebuilds its windows.

- Complete windows leave out the first window of a run and the last: the one in which the
  client sent its last request, and any opened after it by requests still on their way (a long
  tail's stragglers reach the server after the last send: 150 ms median / 1.5 s p99 away, one
  more window of 1-2 requests).  The emulator dates a request's send as it enters the server,
  before its simulated network delay.
- **Utilisation** = accepted requests per complete window / L.
- **Rate used** = accepted requests in the complete windows / the time from the first complete
  window's start to the start of the window after the last complete one, divided by L/D. A pacer
  that idles between windows looks perfect on utilisation alone; this shows it.
- **Busiest tenth**: the most requests accepted in one tenth of a complete window; evenly spaced
  means at most 0.15 L (one request at L <= 6).
- **Rate sent** = (requests - 1) / (last arrival - first arrival), at the server.
- **Mean in flight** = request-seconds the server held / (last arrival - first arrival).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import data
from bench.procs import DEMO_API_KEY, PYTHON, emulator, job_argv, run_measured, wait_for_quiet
from bench.report import Check, Section, Table, pct, ratio
from bench.stages import Staged
from tests.laravel import harness

BEFORE = Path(__file__).with_name("field_before.md")
Argv = Callable[[str], list[str]]  # a client's command line, given its server's URL


@dataclass(frozen=True, slots=True)
class Case:
    """One condition of the field: a server, a job's flags, rows, and the target it is judged by."""

    key: str
    title: str
    server: tuple[str, ...]  # emulator arguments, or ("laravel", LIMIT, DECAY_MINUTES)
    limit: int | None  # the server's L (None: no throttle to judge)
    period: float | None  # its D, seconds
    job_flags: tuple[str, ...]
    limiter: str  # the minimal script's --limiter N/SECONDS ("" : no minimal run)
    rows: int
    target: str  # "auto", "headroom0", "latency", "rate:R" (R per second), "capacity:THROUGHPUT"
    long: bool = False  # minute-long windows: left out of --quick

    @property
    def together(self) -> bool:
        """Windows of 15 s and more, or a minute-long run: a few requests a second, not CPU-bound,
        so its clients run at the same time as every other such case's."""
        return self.long or (self.period or 0.0) >= 15


@dataclass(slots=True)
class Run:
    """One client against one fresh server, as the server saw it."""

    wall: float
    requests: int
    throttled: int
    accepted: int
    windows: list[dict[str, Any]]  # start, end, accepted, throttled, tenths; in order
    first: float
    last: float  # the last request's arrival (the emulator: before its network delay, i.e. its send)
    held_seconds: float | None  # request-seconds in the server (None: the Laravel app)
    foreign_cores: float
    limit: int | None = None
    period: float | None = None

    @property
    def complete(self) -> list[dict[str, Any]]:
        """The windows after the first that ended before the client's last send: the first (the
        preflight's, and the pacer's before it knows the window) is partial, so is the one in
        which the rows ran out, and so are any that a long tail's stragglers opened after it."""
        period = self.period or 0.0
        return [w for w in self.windows[1:] if float(w.get("end", w["start"] + period)) <= self.last]

    @property
    def share_429(self) -> float:
        return self.throttled / self.requests if self.requests else 0.0

    @property
    def utilisation(self) -> float | None:
        if not self.complete or self.limit is None:
            return None
        return float(sum(w["accepted"] for w in self.complete)) / (len(self.complete) * self.limit)

    @property
    def rate_used(self) -> float | None:
        if not self.complete or self.limit is None or self.period is None:
            return None
        after = self.windows[1 + len(self.complete)]  # the window in which the last send went
        span = float(after["start"]) - float(self.complete[0]["start"])
        return float(sum(w["accepted"] for w in self.complete)) / span / (self.limit / self.period)

    @property
    def busiest_tenth(self) -> int | None:
        return max((max(w["tenths"]) for w in self.complete), default=None)

    @property
    def rate_sent(self) -> float:
        span = self.last - self.first
        return (self.requests - 1) / span if span > 0 else 0.0

    @property
    def mean_in_flight(self) -> float | None:
        span = self.last - self.first
        return self.held_seconds / span if self.held_seconds is not None and span > 0 else None


@dataclass(slots=True)
class Outcome:
    case: Case
    job: Run
    minimal: Run | None
    notes: list[str] = field(default_factory=list)


def _cases() -> list[Case]:
    em_15 = ("--rate-limit", "40/15s", "--laravel-windows", "--unknown", "classified")
    laravel = ("laravel", "40", "0.25")
    no_headers = ("--rate-limit", "30/s", "--no-rate-headers", "--unknown", "classified")
    return [
        Case("l50-1s", "emulator 50/1s", ("--rate-limit", "50/s", "--unknown", "classified"),
             50, 1.0, (), "50/1", 540, "auto"),
        Case("l50-1s-h0", "emulator 50/1s, --headroom 0", ("--rate-limit", "50/s", "--unknown", "classified"),
             50, 1.0, ("--headroom", "0"), "", 600, "headroom0"),
        Case("l40-15s", "emulator 40/15s (Laravel windows)", em_15, 40, 15.0, (), "40/15", 36 * 3 + 4,
             "auto"),
        Case("l60-60s", "emulator 60/60s (Laravel windows)",
             ("--rate-limit", "60/min", "--laravel-windows", "--unknown", "classified"),
             60, 60.0, (), "60/60", 125, "auto", long=True),
        Case("laravel-40-15s", "Laravel 8 throttle:40,0.25 (Redis)", laravel, 40, 15.0, (), "40/15",
             36 * 3 + 4, "auto"),
        Case("laravel-40-15s-h0", "Laravel 8 throttle:40,0.25 (Redis), --headroom 0", laravel, 40, 15.0,
             ("--headroom", "0"), "", 40 * 3 + 4, "headroom0"),
        Case("latency-200ms", "emulator 100/1s, 200 ms away",
             ("--rate-limit", "100/s", "--latency-ms", "200", "--unknown", "classified"),
             100, 1.0, (), "100/1", 900, "latency"),
        Case("latency-150-1500ms", "emulator 100/1s, 150 ms median / 1.5 s p99 away",
             ("--rate-limit", "100/s", "--latency-ms", "150:1500", "--seed", "1", "--unknown", "classified"),
             100, 1.0, (), "100/1", 900, "latency"),
        Case("no-headers-20s", "no rate headers (server 30/s), --rate 20/s", no_headers, None, None,
             ("--rate", "20/s"), "20/1", 200, "rate:20"),
        Case("no-headers-auto", "no rate headers (server 30/s), --rate auto", no_headers, None, None,
             (), "60/60", 75, "rate:1", long=True),
        Case("capacity", "--capacity 16 --service-ms 50, no throttle, --rate 1000/s",
             ("--capacity", "16", "--service-ms", "50", "--unknown", "classified"), None, None,
             ("--rate", "1000/s"), "1000/1", 2500, "capacity:320"),
        # Not in the default run: the first emulator report, for a before/after.
        Case("l30-15s", "emulator 30/15s (Laravel windows)",
             ("--rate-limit", "30/15s", "--laravel-windows", "--unknown", "classified"),
             30, 15.0, (), "30/15", 27 * 3 + 4, "auto"),
    ]  # fmt: skip


CASES = {case.key: case for case in _cases()}
DEFAULT_CASES = [key for key in CASES if key != "l30-15s"]


@contextlib.contextmanager
def _server(case: Case) -> Iterator[tuple[str, Callable[[], dict[str, Any]]]]:
    """The case's server on loopback, and a function that reads what it counted."""
    if case.server[0] == "laravel":
        with harness.laravel_app(int(case.server[1]), case.server[2], api_key=DEMO_API_KEY) as app:
            yield app.url, lambda: _laravel_stats(app, case.period or 0.0)
    else:
        with emulator(*case.server) as server:
            yield server.url, server.stats


def _laravel_stats(app: harness.LaravelApp, period: float) -> dict[str, Any]:
    requests = [r for r in app.requests() if r.status != 401]
    windows = []
    for w in app.windows():
        tenths = [0] * 10
        for r in w.requests:
            if r.status != 429:
                tenths[min(9, int((r.time - w.start) * 10 / period))] += 1
        windows.append({"start": w.start, "accepted": w.accepted, "throttled": w.throttled, "tenths": tenths})
    throttled = sum(1 for r in requests if r.status == 429)
    return {
        "requests": len(requests),
        "responses_by_status": {"429": throttled},
        "overrides": len(requests) - throttled,
        "windows": windows,
        "in_flight": {"first": requests[0].time, "last": requests[-1].time, "seconds": None},
    }


def _run(case: Case, argv: Argv, quiet: bool = True) -> Run:
    """One client against a fresh server; ``quiet``: first wait (briefly) for the machine to calm."""
    with _server(case) as (url, stats):
        if quiet:
            wait_for_quiet(max_wait=3.0)  # pacing is not CPU-bound: a short wait is enough
        timeout = 300 + 3 * case.rows * (case.period or 1.0) / (case.limit or 20)
        measured = run_measured(argv(url), timeout=timeout).check()
        counted = stats()
    in_flight = counted["in_flight"]
    return Run(
        measured.wall,
        counted["requests"],
        counted["responses_by_status"].get("429", 0),
        counted["overrides"],
        counted["windows"],
        in_flight["first"],
        in_flight["last"],
        in_flight["seconds"],
        measured.foreign_cores(),
        case.limit,
        case.period,
    )


def _clients(case: Case, workdir: Path) -> tuple[Argv, Argv | None]:
    """The job's argv and the minimal script's (None: the case has none), given the server's URL."""
    rows_csv = data.write_corrections(workdir / f"{case.key}.csv", case.rows, seed=17)

    def job(url: str) -> list[str]:
        ledger = workdir / f"{case.key}.ledger.csv"
        ledger.unlink(missing_ok=True)
        flags = ("--ledger", str(ledger), "--api-url", url, "-q", *case.job_flags)
        return job_argv("run", str(rows_csv), *flags)

    def minimal(url: str) -> list[str]:
        return [PYTHON, "-m", "bench.minimal_client", str(rows_csv), url, "--limiter", case.limiter]

    return job, minimal if case.limiter else None


def _outcome(case: Case, job: Run, minimal: Run | None) -> Outcome:
    outcome = Outcome(case, job, minimal)
    for name, run in (("job", outcome.job), ("minimal", outcome.minimal)):
        # The job's preflight request is one more accepted request than there are rows.
        if run is not None and run.accepted < case.rows:
            outcome.notes.append(f"{case.key}, {name}: only {run.accepted} of {case.rows} rows accepted")
    return outcome


def _alone(case: Case, workdir: Path) -> Outcome:
    """The job, then the minimal script, each with the machine to itself."""
    job, minimal = _clients(case, workdir)
    return _outcome(case, _run(case, job), _run(case, minimal) if minimal is not None else None)


def _slow_runs(cases: list[Case], workdir: Path) -> list[tuple[Case, str, Argv]]:
    """Every client of ``cases``, in the order they start together: the minute-long cases first,
    the job before the minimal script (it paces below the limit, so it takes longer)."""
    clients = {case.key: _clients(case, workdir) for case in cases}
    return [
        (case, name, argv)
        for case in sorted(cases, key=lambda c: not c.long)
        for name, argv in zip(("job", "minimal"), clients[case.key], strict=True)
        if argv is not None
    ]


def _fmt(x: float | None, fmt: Callable[[float], str]) -> str:
    return "n/a" if x is None else fmt(x)


def _check(outcome: Outcome, judge: bool) -> Check:
    case, job = outcome.case, outcome.job
    util, used, share = job.utilisation, job.rate_used, job.share_429
    even = (
        job.busiest_tenth is not None
        and case.limit is not None
        and (job.busiest_tenth <= max(0.15 * case.limit, 1.0))
    )
    both = f"utilisation {_fmt(util, pct)}, rate used {_fmt(used, pct)}, {pct(share, 2)} 429"
    if case.target == "auto":
        target = "utilisation and rate used 85.5-92.5%, <= 0.5% 429, busiest tenth <= 0.15 L"
        in_band = util is not None and used is not None and min(util, used) >= 0.855
        in_band = in_band and max(util or 0.0, used or 0.0) <= 0.925
        passed = in_band and share <= 0.005 and even
        measured = f"{both}, busiest tenth {job.busiest_tenth}"
    elif case.target == "headroom0":
        target = "utilisation and rate used >= 95%, <= 2% 429"
        passed = util is not None and used is not None and util >= 0.95 and used >= 0.95 and share <= 0.02
        measured = both
    elif case.target == "latency":
        target = "utilisation and rate used >= 85.5%, <= 0.5% 429"
        passed = util is not None and used is not None and util >= 0.855 and used >= 0.855 and share <= 0.005
        measured = both
    elif case.target.startswith("rate:"):
        per_s = float(case.target.split(":")[1])
        unit, scale = ("/min", 60.0) if per_s < 2 else ("/s", 1.0)
        target = f">= {0.95 * per_s * scale:.0f}{unit}"
        passed = job.rate_sent >= 0.95 * per_s
        measured = f"{job.rate_sent * scale:.1f}{unit}, {job.throttled} 429"
    else:
        server = float(case.target.split(":")[1])
        target = f"throughput >= {0.9 * server:.0f}/s (0.9 of {server:.0f}/s), mean in flight <= 24"
        mif = job.mean_in_flight
        passed = job.rate_sent >= 0.9 * server and mif is not None and mif <= 24
        measured = f"{job.rate_sent:.0f}/s, mean in flight {_fmt(mif, lambda x: f'{x:.1f}')}"
    return Check(f"field: {case.title}", measured, target, passed if judge else None)


def _table(outcomes: list[Outcome]) -> Table:
    table = Table(
        [
            "case", "client", "wall s", "requests", "429 share", "complete windows", "utilisation",
            "rate used", "busiest tenth (0.15 L)", "rate sent", "mean in flight", "utilisation vs baseline",
            "rate sent vs baseline", "other load (cores)",
        ]
    )  # fmt: skip
    for outcome in outcomes:
        base = outcome.minimal
        for name, run in (("job", outcome.job), ("minimal (baseline)", base)):
            if run is None:
                continue
            limit = outcome.case.limit
            busiest = run.busiest_tenth
            tenth = "n/a" if busiest is None or limit is None else f"{busiest} ({0.15 * limit:g})"
            util_ratio = (
                ratio(run.utilisation, base.utilisation)
                if base is not None and run.utilisation is not None and base.utilisation
                else "n/a"
            )
            table.add(
                outcome.case.key, name, f"{run.wall:.1f}", run.requests, pct(run.share_429, 2),
                len(run.complete), _fmt(run.utilisation, pct), _fmt(run.rate_used, pct), tenth,
                f"{run.rate_sent:.2f}/s", _fmt(run.mean_in_flight, lambda x: f"{x:.1f}"), util_ratio,
                ratio(run.rate_sent, base.rate_sent) if base is not None else "n/a",
                f"{run.foreign_cores:.2f}",
            )  # fmt: skip
    return table


def _windows(outcomes: list[Outcome]) -> Table:
    table = Table(["case", "client", "accepted (throttled) per window, first and last included"])
    for outcome in outcomes:
        for name, run in (("job", outcome.job), ("minimal", outcome.minimal)):
            if run is not None and run.windows:
                cells = " ".join(f"{w['accepted']}({w['throttled']})" for w in run.windows[:40])
                table.add(outcome.case.key, name, cells + (" ..." if len(run.windows) > 40 else ""))
    return table


def stage(*, cases: list[str], quick: bool, command: str, workdir: Path) -> Staged:
    """Run the CPU-bound ones of ``cases`` (keys of ``CASES``), each alone, and hand back the slow
    ones (see :attr:`Case.together`) to run together (:mod:`bench.stages`); with ``quick`` the
    minute-long ones are left out and nothing is judged."""
    selected = [CASES[key] for key in cases if not (quick and CASES[key].long)]
    notes: list[str] = []
    reason = harness.missing()
    if reason is not None:
        notes.append(f"Laravel cases left out: {reason}")
        selected = [c for c in selected if c.server[0] != "laravel"]
    slow = [case for case in selected if case.together]
    by_key = {case.key: _alone(case, workdir) for case in selected if not case.together}
    starts = _slow_runs(slow, workdir)
    listed = ", ".join(f"`{case.key}`" for case in slow)

    def finish(runs: list[Run], others: list[str]) -> Section:
        found = {(case.key, name): run for (case, name, _argv), run in zip(starts, runs, strict=True)}
        for case in slow:
            by_key[case.key] = _outcome(case, found[case.key, "job"], found.get((case.key, "minimal")))
        return _section([by_key[case.key] for case in selected], notes, listed, others, quick, command)

    label = f"the field's {listed}"
    return Staged(
        label, [functools.partial(_run, case, argv, quiet=False) for case, _n, argv in starts], finish
    )


def _section(
    outcomes: list[Outcome], notes: list[str], listed: str, others: list[str], quick: bool, command: str
) -> Section:
    notes = notes + [note for outcome in outcomes for note in outcome.notes]
    beside = f", and beside them {' and '.join(others)}" if others else ""
    method = f"""
{__doc__.split(chr(10), 2)[2].strip()}

Cases (`--case KEY`, repeatable, picks some): {", ".join(f"`{key}`" for key in CASES)}; `l30-15s`
runs only when asked. The job runs as `run rows.csv --ledger L --api-url URL -q` plus the case's
flags; `--headroom 0` cases are judged against the baseline of the same server without it. One run
per client and case (windows of 15 s and a minute make repeats costly).

The cases whose windows are 15 s or longer, and the minute-long header-less case, pace a few
requests a second, which is not CPU-bound: they run together, every client of every one of them
({listed or "none in this run"}{beside}) at the same time, each against its own server (its own
Redis for Laravel), started 4 s apart, the longest first; they cost the longest run's time instead
of the sum, minutes less.  Their "other load" therefore counts the other clients and servers
running meanwhile, not only other work.  The other cases run one client after the other, each
alone: at 20-100 requests a second, and the capacity case at hundreds, a busy neighbour would
move their figures.
"""
    before = BEFORE.read_text(encoding="utf-8").strip() if BEFORE.exists() else ""
    if before:
        method += "\n" + before + "\n"
    judged = not quick and all(math.isfinite(o.job.wall) for o in outcomes)
    return Section(
        "field",
        "4. The field: long windows, genuine Laravel, latency, stripped headers, limited workers",
        method,
        command,
        tables=[("Pacing in the field", _table(outcomes)), ("Windows", _windows(outcomes))],
        checks=[_check(o, judged) for o in outcomes],
        notes=notes,
    )

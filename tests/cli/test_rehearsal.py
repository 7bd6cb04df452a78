"""A month of nights: the shipped nightly job, run 30 times as cron runs it, on a simulated calendar.

Each night is one row of :data:`NIGHTS`: how the cumulative export changed, what goes wrong, and
what the operator must then see: the exit code, the final ping, and which alerts fire the next
morning.  Every night runs ``batch-override run --job jobs/nightly.toml --quiet`` (the shipped job
file; its API URL, input, ledger and, on the nights meant to outlast it, ``max_outage`` given as
flags) against an in-process emulator started for that night on the month's one address, with
``--ping-url`` to a loopback receiver and ``--metrics-file`` to one textfile kept over the month,
as node_exporter would serve it.  The ledger is one file for the whole month.

What is checked per night never depends on the machine's speed: the pings, the exit code, the
metrics' values (timestamps only within the night), that the summary's counts add up to the rows
read, and that no ledger file grows by more than the night's new outcomes (one line per row
attempted; rows already done or never reached are counted, not written).  Once the month is over,
one ``promtool test rules`` file replays every night's textfile at its simulated time against
``deploy/prometheus/alerts.yml`` and asks, each morning, which alerts fire: the ones the table
names, and none on a good night.  ``BatchOverrideNoRecentSuccess`` needs 49 hours without a
success, which only a calendar shows.  What a night costs is ``make bench``'s to measure, not this
test's.

Why a subprocess per night: the night is a process's own, as cron starts it (its exit code, its
clock), and the simulated calendar is that process's wall clock: ``faketime`` (Debian's
``faketime``, installed by ``.ci/run``) starts it at the night's 02:00 UTC; the clock then runs at
the real pace.  The command line takes no injected clock, and the metrics' timestamps are its
``time.time()``.

Trap: promtool's clock starts at 0, so the calendar's first midnight (:data:`EPOCH`) is promtool's
time 0, and every ``*_timestamp_seconds`` value is fed relative to it.

The table is meant to be edited: each expectation (the final ping's path, the metrics' ``reason``
label, the alerts' names) is spelled once, in the constants and the rows below.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from batch_override.emulator import DEMO_API_KEY, Emulator, EmulatorConfig
from tests.binaries import debian_binary
from tests.support import REPO, cli_env, serve_app, sha, write_csv

#: A month on a loaded 2-core machine takes two or three minutes; a night that hangs is killed
#: after :data:`NIGHT_WAIT_S`.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

JOB_FILE = REPO / "jobs" / "nightly.toml"
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
MEDIA = "video"  # the nightly job file's

#: The calendar's first midnight (UTC): promtool's time 0.
EPOCH = datetime(2026, 3, 2, tzinfo=UTC).timestamp()
DAY = 86_400
#: cron's hour: each night's run starts at 02:00.
RUN_AT = 2 * 3600
#: The morning check: which alerts fire at 08:00, six hours after the run.
CHECK_AT = 8 * 3600
#: promtool's samples (a scrape an hour) and rule evaluations.
STEP = 3600

#: --max-outage on the nights meant to outlast it (the job file says 30 minutes).
SHORT_OUTAGE = 2
#: A ping's deadline, in seconds (each ping its own).
PING_DEADLINE = 10
#: A night longer than a ping's deadline: the final ping must still be sent.
LONG_OUTAGE = 12
#: A host name that never resolves (RFC 6761 reserves .invalid).
NO_SUCH_HOST = "https://batch-override-rehearsal.invalid"
#: A key the emulator does not know: 401.
REFUSED_KEY = "rehearsal-key-not-known"
#: The ping receiver's check path (``--ping-url`` is the receiver's URL and this).
PING_PATH = "/ping/rehearsal"
LEDGER_NAME = "nightly.ledger.csv"
#: Outcomes the summary counts without a ledger line each: rows not attempted tonight.
NOT_WRITTEN = ("skipped", "not_attempted")
#: What a file beside the ledger may add on top of the ledger's new lines: one run-log record.
RUN_RECORD_BYTES = 8192

RUN_FAILED = "BatchOverrideRunFailed"
NO_RECENT_SUCCESS = "BatchOverrideNoRecentSuccess"
#: The ``reason`` label the metrics carry for an input that is not there (exit 2); ``None``: any
#: value, as long as there is one.
MISSING_INPUT_REASON: str | None = None


#: A textfile's samples: (name, labels) -> value.
Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


def final_ping(exit_code: int) -> str:
    """The final ping's path after the check's URL: the URL itself for 0, ``/<code>`` otherwise."""
    return "" if exit_code == 0 else f"/{exit_code}"


class Fault(enum.Enum):
    """What goes wrong on a night."""

    NONE = "a good night"
    MISSING_FILE = "the export is not there"
    HEADER_ONLY = "the export has a header and no rows"
    NO_SUCH_HOST = "--api-url names a host that does not resolve"
    REFUSED_PORT = "--api-url names an unused loopback port"
    REFUSED_KEY = "the key is refused (401)"
    MAINTENANCE = "the server is in maintenance all night (503)"
    SERVER_ERRORS = "the server answers every override with a 5xx"


@dataclass(frozen=True)
class Night:
    """One night: ``new`` rows added to the export (``late`` of them the server classifies only on
    night ``ready_on``), what goes wrong, and what the operator must see: the exit code, the final
    ping's path after the check's URL, the alerts firing the next morning."""

    new: int
    fault: Fault
    exit: int
    ping: str
    alerts: tuple[str, ...]
    late: int = 0
    ready_on: int = 0
    max_outage: int | None = None


QUIET: tuple[str, ...] = ()
PAGED = (RUN_FAILED,)
LATE = (RUN_FAILED, NO_RECENT_SUCCESS)  # and a second night without a success: 49 h passed
#: The month.  Night n is NIGHTS[n - 1]; its run starts at 02:00 UTC of day n.
# fmt: off
NIGHTS: tuple[Night, ...] = (
    #     new  what goes wrong         exit  final ping       alerts the next morning
    Night(400, Fault.NONE,             0,    final_ping(0),   QUIET),  # 1
    Night(150, Fault.NONE,             0,    final_ping(0),   QUIET),  # 2
    Night(120, Fault.MISSING_FILE,     2,    final_ping(2),   PAGED),  # 3: exit 2 writes its metrics, pages
    Night(130, Fault.NONE,             0,    final_ping(0),   QUIET),  # 4: last night's rows too
    Night(0,   Fault.HEADER_ONLY,      0,    final_ping(0),   QUIET),  # 5: allow_empty: a quiet day
    Night(110, Fault.NONE,             0,    final_ping(0),   QUIET),  # 6
    Night(100, Fault.NO_SUCH_HOST,     3,    final_ping(3),   PAGED,   # 7: said at once
          max_outage=SHORT_OUTAGE),
    Night(140, Fault.NONE,             0,    final_ping(0),   QUIET),  # 8
    Night(90,  Fault.REFUSED_KEY,      3,    final_ping(3),   PAGED),  # 9
    Night(100, Fault.NONE,             0,    final_ping(0),   QUIET),  # 10
    Night(120, Fault.NONE,             0,    final_ping(0),   QUIET,   # 11: not_ready: tomorrow's work
          late=5, ready_on=13),
    Night(100, Fault.NONE,             0,    final_ping(0),   QUIET),  # 12: still not_ready
    Night(80,  Fault.MAINTENANCE,      5,    final_ping(5),   PAGED,   # 13: longer than a ping's 10 s
          max_outage=LONG_OUTAGE),
    Night(90,  Fault.SERVER_ERRORS,    5,    final_ping(5),   LATE,    # 14
          max_outage=SHORT_OUTAGE),
    Night(100, Fault.NONE,             0,    final_ping(0),   QUIET),  # 15: the late rows are sent
    Night(110, Fault.NONE,             0,    final_ping(0),   QUIET),  # 16
    Night(0,   Fault.NONE,             0,    final_ping(0),   QUIET),  # 17: the export did not change
    Night(120, Fault.NONE,             0,    final_ping(0),   QUIET),  # 18
    Night(100, Fault.REFUSED_PORT,     5,    final_ping(5),   PAGED,   # 19: retried, then exit 5
          max_outage=SHORT_OUTAGE),
    Night(100, Fault.NONE,             0,    final_ping(0),   QUIET),  # 20
    Night(130, Fault.MISSING_FILE,     2,    final_ping(2),   PAGED),  # 21
    Night(100, Fault.MISSING_FILE,     2,    final_ping(2),   LATE),   # 22
    Night(100, Fault.NONE,             0,    final_ping(0),   QUIET),  # 23
    Night(110, Fault.NONE,             0,    final_ping(0),   QUIET,   # 24
          late=3, ready_on=26),
    Night(100, Fault.NONE,             0,    final_ping(0),   QUIET),  # 25: still not_ready
    Night(0,   Fault.HEADER_ONLY,      0,    final_ping(0),   QUIET),  # 26
    Night(120, Fault.NONE,             0,    final_ping(0),   QUIET),  # 27: the late rows are sent
    Night(100, Fault.NONE,             0,    final_ping(0),   QUIET),  # 28
    Night(110, Fault.NONE,             0,    final_ping(0),   QUIET),  # 29
    Night(100, Fault.NONE,             0,    final_ping(0),   QUIET),  # 30
)
# fmt: on


def night_start(n: int) -> float:
    """Unix time of night ``n``'s run (02:00 UTC of day ``n``)."""
    return EPOCH + (n - 1) * DAY + RUN_AT


# --- the world around the job: the export, the server, the ping receiver -------------------------


@dataclass
class Export:
    """The cumulative export and what the server knows of its rows, as the harness models them."""

    rows: list[str] = field(default_factory=list)  # hashes, in the export's order
    ready_on: dict[str, int] = field(default_factory=dict)  # a late row's hash -> its night
    done: set[str] = field(default_factory=set)  # rows the server accepted

    def grow(self, night: Night) -> None:
        start = len(self.rows)
        added = [sha(f"rehearsal-{i}") for i in range(start, start + night.new)]
        self.rows += added
        for content_hash in added[: night.late]:
            self.ready_on[content_hash] = night.ready_on

    def not_classified(self, n: int) -> dict[tuple[str, str], str]:
        """The emulator's states on night ``n``: late rows not classified before their night."""
        return {(MEDIA, h): "not_classified" for h, ready in self.ready_on.items() if n < ready}

    def pending(self, n: int) -> tuple[list[str], list[str]]:
        """Rows not yet done: (the server takes them tonight, it answers not_ready)."""
        todo = [h for h in self.rows if h not in self.done]
        late = [h for h in todo if self.ready_on.get(h, 0) > n]
        return [h for h in todo if self.ready_on.get(h, 0) <= n], late


def emulator_config(export: Export, n: int, fault: Fault) -> EmulatorConfig:
    """Night ``n``'s server: a limit no night reaches in its second or two, and the night's fault."""
    config: dict[str, Any] = {
        "unknown": "classified",
        "states": export.not_classified(n),
        "rate_limit": (2000, 1.0),
    }
    if fault is Fault.MAINTENANCE:
        config["maintenance"] = (0.0, float(DAY), None)
    if fault is Fault.SERVER_ERRORS:
        config["fail_rate"] = 1.0
    return EmulatorConfig(**config)


class PingReceiver:
    """A healthchecks.io stand-in on loopback: records the path of every request."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.record)

    async def record(self, request: web.Request) -> web.Response:
        await request.read()
        self.paths.append(request.path)
        return web.Response(text="OK")


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- one night --------------------------------------------------------------------------------


@dataclass
class Seen:
    """What a night left behind."""

    exit: int
    stderr: str
    pings: list[str]
    metrics: Metrics
    summary: dict[str, Any] | None
    growth: dict[str, tuple[int, int]]  # ledger file -> (lines, bytes) added
    created: set[str]  # ledger files that appeared tonight
    seconds: float  # how long the night's process ran


@dataclass
class Month:
    """The month's fixed places and servers."""

    root: Path
    ping_url: str
    receiver: PingReceiver
    #: The emulator's port, the same every night: the ledger resumes only against the API URL
    #: its rows were sent to, so the server restarted each night keeps its address.
    port: int = field(default_factory=lambda: unused_port())

    @property
    def input(self) -> Path:
        return self.root / "export" / "nightly.csv"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger" / "nightly.ledger.csv"

    @property
    def metrics(self) -> Path:
        return self.root / "textfile" / "batch_override.prom"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"


def write_export(month: Month, export: Export, fault: Fault) -> None:
    month.input.unlink(missing_ok=True)
    if fault is Fault.MISSING_FILE:
        return
    rows = [] if fault is Fault.HEADER_ONLY else [(h, "human") for h in export.rows]
    write_csv(month.input, rows)


def ledger_files(ledger: Path) -> dict[str, tuple[int, int]]:
    """(lines, bytes) of each file in the ledger's folder: the ledger and whatever the job keeps
    beside it (run log, lock, resume state), whatever their names."""
    sizes = {}
    for path in sorted(ledger.parent.iterdir()):
        if path.is_file():
            data = path.read_bytes()
            sizes[path.name] = (data.count(b"\n"), len(data))
    return sizes


def read_metrics(path: Path) -> Metrics:
    if not path.exists():
        return {}
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(path.read_text(encoding="utf-8"))
        for s in family.samples
    }


def command(month: Month, url: str, n: int, night: Night) -> list[str]:
    """The cron line for night ``n``, under ``faketime`` at the night's 02:00 UTC."""
    faketime = debian_binary("faketime", "faketime")
    start = datetime.fromtimestamp(night_start(n), UTC).strftime("%Y-%m-%d %H:%M:%S")
    args = [
        faketime, "-m", "-f", f"@{start}",
        sys.executable, "-m", "batch_override", "run", str(month.input), "--job", str(JOB_FILE),
        "--ledger", str(month.ledger), "--api-url", url, "--metrics-file", str(month.metrics),
        "--summary", str(month.summary), "--ping-url", month.ping_url, "--quiet",
    ]  # fmt: skip
    if night.max_outage is not None:
        args += ["--max-outage", str(night.max_outage)]
    return args


async def run_night(month: Month, export: Export, n: int, night: Night) -> Seen:
    """Night ``n``: the export written, the night's server up, the job run to its end."""
    write_export(month, export, night.fault)
    month.summary.unlink(missing_ok=True)
    month.receiver.paths.clear()
    before = ledger_files(month.ledger)
    key = REFUSED_KEY if night.fault is Fault.REFUSED_KEY else DEMO_API_KEY
    env = cli_env(key, {"TZ": "UTC"})
    async with Emulator(emulator_config(export, n, night.fault), port=month.port) as emulator:
        url = {
            Fault.NO_SUCH_HOST: NO_SUCH_HOST,
            Fault.REFUSED_PORT: f"http://127.0.0.1:{unused_port()}",
        }.get(night.fault, emulator.url)
        started = time.monotonic()
        code, stderr = await _run(command(month, url, n, night), env)
        seconds = time.monotonic() - started
    # Shown when the test fails: where the month's time went.
    print(f"night {n:>2}: exit {code} after {seconds:.1f} s")
    after = ledger_files(month.ledger)
    growth = {
        name: (lines - before.get(name, (0, 0))[0], size - before.get(name, (0, 0))[1])
        for name, (lines, size) in after.items()
    }
    summary = json.loads(month.summary.read_text(encoding="utf-8")) if month.summary.exists() else None
    metrics = read_metrics(month.metrics)
    created = set(after) - set(before)
    return Seen(code, stderr, list(month.receiver.paths), metrics, summary, growth, created, seconds)


#: Seconds a night may take before it counts as a hang (its process group is then killed).
NIGHT_WAIT_S = 120


async def _run(args: list[str], env: Mapping[str, str], wait_s: float = NIGHT_WAIT_S) -> tuple[int, str]:
    """Run ``args`` to its end; past ``wait_s`` its process group (faketime and the job) is killed."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=dict(env), cwd=str(REPO), start_new_session=True,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(), wait_s)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


# --- what each night must show ------------------------------------------------------------------


def _value(seen: Seen, name: str, **labels: str) -> float | None:
    """The value of ``batch_override_NAME`` whose labels include ``labels`` (any other labels)."""
    for (sample, sample_labels), value in seen.metrics.items():
        if sample == "batch_override_" + name and set(labels.items()) <= sample_labels:
            return value
    return None


@dataclass
class Expected:
    """The harness's model of a night's result, from the export and the table."""

    submitted: int
    not_ready: int
    skipped: int
    last_success: float | None  # None: a success tonight (a time within the night)


def expect(export: Export, n: int, night: Night, last_success: float | None) -> tuple[list[str], Expected]:
    """The rows the server takes tonight, and what a good night's metrics then say.  On a bad night
    the last success is kept; a header-only export has no row at all."""
    ready, late = export.pending(n)
    done = len(export.done)
    if night.fault is Fault.HEADER_ONLY:
        ready, late, done = [], [], 0
    return ready, Expected(len(ready), len(late), done, last_success if night.exit else None)


def check_night(n: int, night: Night, seen: Seen, expected: Expected) -> Iterator[str]:
    """Every way night ``n`` differs from the table and the model, one line each."""
    if seen.exit != night.exit:
        yield f"exit {seen.exit}, expected {night.exit} ({_why(seen.stderr)})"
    pings = [p.removeprefix(PING_PATH) for p in seen.pings]
    if pings != ["/start", night.ping]:
        yield f"pings {pings}, expected {['/start', night.ping]}"
    if night.max_outage == LONG_OUTAGE and seen.seconds <= PING_DEADLINE:  # a lower bound only
        yield f"ran {seen.seconds:.1f} s: the long night must outlast a ping's {PING_DEADLINE} s"
    yield from _check_metrics(n, night, seen, expected)
    yield from _check_ledger(seen)


def _check_metrics(n: int, night: Night, seen: Seen, expected: Expected) -> Iterator[str]:
    """The textfile is tonight's (else one line says so and nothing more is read from it), with
    the night's exit code, success time and rows by outcome."""
    start, end = night_start(n), night_start(n) + 3600
    last_run = _value(seen, "last_run_timestamp_seconds")
    if last_run is None or not start <= last_run < end:
        yield f"metrics: not written tonight (the textfile's last run: {_day(last_run)})"
        return
    if (code := _value(seen, "exit_code")) != night.exit:
        yield f"metrics: exit_code {code}, expected {night.exit}"
    success = _value(seen, "last_success_timestamp_seconds")
    if expected.last_success is None and (success is None or not start <= success < end):
        yield f"metrics: last_success_timestamp_seconds {_day(success)}, expected within the night"
    if expected.last_success is not None and success != expected.last_success:
        yield f"metrics: last_success_timestamp_seconds {_day(success)}, kept {_day(expected.last_success)}"
    if night.fault is Fault.MISSING_FILE:
        reasons = {dict(labels).get("reason") for _, labels in seen.metrics} - {None}
        if not reasons or MISSING_INPUT_REASON not in (None, *reasons):
            wanted = MISSING_INPUT_REASON or "one"
            yield f"metrics: reason labels {sorted(map(str, reasons))}, expected {wanted}"
    if night.exit not in (0, 1):  # what a failed night did is not modelled: only that it sent nothing
        if (got := _value(seen, "rows", outcome="submitted")) not in (0, None):
            yield f"metrics: rows{{outcome=submitted}} {got} on a night nothing can be sent"
        return
    counts = {"submitted": expected.submitted, "not_ready": expected.not_ready, "skipped": expected.skipped}
    for outcome, count in counts.items():
        if (got := _value(seen, "rows", outcome=outcome)) != count:
            yield f"metrics: rows{{outcome={outcome}}} {got}, expected {count}"


def _check_ledger(seen: Seen) -> Iterator[str]:
    """The summary adds up, and no ledger file grows by more than the night's new outcomes: the
    ledger by one line per row attempted (and its header once), a file beside it, once made, by no
    more bytes than the ledger's new lines and one run-log record."""
    summary = seen.summary or {}
    outcomes: dict[str, int] = summary.get("outcomes", {})
    if summary and sum(outcomes.values()) + summary.get("not_attempted", 0) != summary.get("rows"):
        yield f"summary: outcomes {outcomes} and not_attempted do not add up to {summary.get('rows')} rows"
    new = sum(n for outcome, n in outcomes.items() if outcome not in NOT_WRITTEN)
    lines, size = seen.growth.get(LEDGER_NAME, (0, 0))
    if lines - (LEDGER_NAME in seen.created) > new:
        yield f"ledger: {lines} lines added for {new} new outcomes"
    for name, (_, grown) in seen.growth.items():
        # A side file's first night is its making (a cache rebuilt from the whole ledger), not growth.
        if name not in (LEDGER_NAME, *seen.created) and grown > size + RUN_RECORD_BYTES:
            yield f"ledger: {name} grew {grown} bytes, more than the ledger's {size} and a run record"


def _why(stderr: str) -> str:
    """The line of a run's stderr that says why it ended: its error, else its first line."""
    lines = stderr.strip().splitlines() or ["(nothing on stderr)"]
    return next((line for line in lines if "error" in line.lower()), lines[0])[:200]


def _day(unix: float | None) -> str:
    if unix is None:
        return "absent"
    return datetime.fromtimestamp(unix, UTC).strftime("%m-%d %H:%M:%S")


# --- the alerts, replayed over the month ---------------------------------------------------------


def _series_name(name: str, labels: frozenset[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{json.dumps(v)[1:-1]}"' for k, v in sorted(labels))
    return f"{name}{{{inner}}}"


def _shown(name: str, value: float) -> str:
    """A sample as promtool reads it; a timestamp relative to :data:`EPOCH` (promtool's 0)."""
    return repr(value - EPOCH if name.endswith("_timestamp_seconds") else value)


def alert_tests(served: list[Metrics]) -> dict[str, Any]:
    """One promtool test: each night's textfile served hourly from the first scrape after its run
    (03:00) to the next night's, and each morning at 08:00 the alerts that fire."""
    hours = len(served) * DAY // STEP + 1
    current: list[Metrics | None] = [None] * hours
    for n, metrics in enumerate(served, 1):
        first = (night_start(n) - EPOCH) // STEP + 1
        for hour in range(int(first), hours):
            current[hour] = metrics
    keys = sorted({key for metrics in served for key in metrics})
    input_series = [
        {
            "series": _series_name(*key),
            "values": " ".join("_" if m is None or key not in m else _shown(key[0], m[key]) for m in current),
        }
        for key in keys
    ]
    checks = [
        {
            "expr": f'count by (alertname) (ALERTS{{alertstate="firing"}}) # night {n}',
            "eval_time": f"{((n - 1) * DAY + CHECK_AT) // STEP}h",
            "exp_samples": [{"labels": f'{{alertname="{a}"}}', "value": 1} for a in sorted(night.alerts)],
        }
        for n, night in enumerate(NIGHTS[: len(served)], 1)
    ]
    return {
        "rule_files": [str(RULES)],
        "evaluation_interval": f"{STEP // 60}m",
        "tests": [{"interval": f"{STEP // 60}m", "input_series": input_series, "promql_expr_test": checks}],
    }


def alert_problems(tests: dict[str, Any], where: Path) -> dict[int, list[str]]:
    """promtool's verdict per night: what fired (``got``) where the table expected otherwise."""
    path = where / "rehearsal_alerts_test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False, width=1 << 20), encoding="utf-8")
    promtool = debian_binary("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=300
    )
    problems: dict[int, list[str]] = {}
    if result.returncode == 0:
        return problems
    lines = (result.stdout + result.stderr).splitlines()
    for i, line in enumerate(lines):
        if "# night " in line and line.strip().startswith("expr:"):
            n = int(line.split("# night ")[1].split('"')[0])
            detail = " ".join(part.strip() for part in lines[i + 1 : i + 3])
            problems.setdefault(n, []).append(f"alerts: {detail}")
    if not problems:
        problems[0] = [f"promtool failed: {result.stdout[-2000:]}{result.stderr[-2000:]}"]
    return problems


# --- the month ----------------------------------------------------------------------------------


def _no_such_host_is_unresolvable() -> None:
    """The wrong-host night needs a name this machine's resolver says does not exist."""
    host = NO_SUCH_HOST.split("://")[1]
    try:
        socket.getaddrinfo(host, 80)
    except socket.gaierror as exc:
        assert exc.errno == socket.EAI_NONAME, f"resolving {host}: {exc} (a resolver that is down?)"
    else:
        pytest.fail(f"{host} resolves on this machine; the wrong-host night needs a name that does not")


async def test_a_month_of_nights_pings_exits_and_alerts_as_the_table_says(tmp_path: Path) -> None:
    """Every night of :data:`NIGHTS` in turn, then the month's alerts; every difference is listed."""
    debian_binary("faketime", "faketime")
    debian_binary("promtool", "prometheus")
    _no_such_host_is_unresolvable()
    receiver = PingReceiver()
    export = Export()
    problems: dict[int, list[str]] = {}
    served: list[Metrics] = []
    last_success: float | None = None
    async with serve_app(receiver.app) as url:
        month = Month(tmp_path, url + PING_PATH, receiver)
        for folder in (month.input.parent, month.ledger.parent, month.metrics.parent):
            folder.mkdir()
        for n, night in enumerate(NIGHTS, 1):
            export.grow(night)
            ready, expected = expect(export, n, night, last_success)
            seen = await run_night(month, export, n, night)
            problems[n] = list(check_night(n, night, seen, expected))
            served.append(seen.metrics)
            if night.fault is Fault.NONE:
                export.done.update(ready)
            if night.exit == 0 and seen.exit == 0:
                last_success = _value(seen, "last_success_timestamp_seconds")
    for n, found in alert_problems(alert_tests(served), tmp_path).items():
        problems.setdefault(n, []).extend(found)
    report = [
        f"night {n:>2} ({NIGHTS[n - 1].fault.value if n else 'promtool'}): {problem}"
        for n, found in sorted(problems.items())
        for problem in found
    ]
    assert not report, (
        f"{len({r.split(':')[0] for r in report})} nights differ from the table:\n" + "\n".join(report)
    )


def test_the_table_expects_no_recent_success_exactly_49_hours_after_a_successful_night() -> None:
    """An edit of the table keeps its alerts consistent with its exit codes (the rule's own
    arithmetic: two days and an hour after the last night that exited 0)."""
    last_success = None
    for n, night in enumerate(NIGHTS, 1):
        if night.exit == 0:
            last_success = night_start(n)
        check = EPOCH + (n - 1) * DAY + CHECK_AT
        late = last_success is not None and check - last_success > 2 * DAY + 3600
        assert (NO_RECENT_SUCCESS in night.alerts) == late, f"night {n}"
        assert (RUN_FAILED in night.alerts) == (night.exit not in (0, 1)), f"night {n}"

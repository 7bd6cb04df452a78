"""``batch-override report LEDGER``: a run's summary read back from its ledger, and a retry file.

Scope:
- ``--run RUN_ID`` (default, or ``latest``: the run log's latest run, else the run that appended
  the ledger's last complete line) counts that run's lines: the same :class:`Summary` the run
  printed.  The run log beside the ledger (``LEDGER.runs.jsonl``) supplies what the ledger
  cannot: the run's duration (its own figure, else ``started`` to ``finished``, else its first
  to last line), 429 answers, rows skipped or left unattempted, the exit code and the stop
  reason.  A run id only the run log knows (a run that wrote no line) reports the run log's counts.
- ``--run all`` is the ledger's state: one entry per *override* (media, hash, classification),
  in its latest line that says something about the server (submitted, already_submitted,
  skipped, rejected, not_ready, failed, aborted: what the job's own resume trusts); a line that
  only describes an input row (planned, duplicate, conflict, invalid) counts only for an
  override that has no such line.  Keying by override rather than by the ``row`` column is what
  makes this hold for a ledger fed by several inputs (nightly files, a retry file): ``row`` is a
  position in *one* input, and the same number in two inputs names two different rows.
  ``requests`` and the duration add up every run; ``rows`` counts overrides, not input rows.

Traps:
- In ``--run all`` an invalid or conflicting row that a later input fixed keeps its old entry
  (the fixed row is another override), and runs against different API URLs (an emulator
  rehearsal and production) are mixed: the report notes it; ``--run RUN_ID`` shows one run exactly.
- ``requests`` is the run's own count from the run log (the preflight included), as its summary
  said; without one (an older or killed run), the sum of the ``attempts`` column, one lower.
- Rows a run left unattempted (``--limit``, or not reached before a stop) have no ledger line,
  so no retry file can list them: rerun the input itself (the report notes it).  Rows a run
  skipped as done or as rejected before (:data:`COUNTED_ONLY`) have no line either (unless
  ``--record-skipped``): their counts come from the run log's ``finished`` record.

The ledger is read with pyarrow in blocks, only up to its last complete line (a run may be
appending, or a kill left a torn line: the report never repairs a ledger, the next run does).
One run's report keeps per-run counts and the retry rows' line numbers; ``--run all`` keeps
about 50 bytes a line (its sort peaks near 130: a 10-million-line ledger needs ~1.3 GB).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..errors import BatchOverrideError, ExitCode, LedgerError, first_line
from ..files import atomic_writer
from ..ledger import runlog
from ..ledger.reader import LedgerFile
from ..ledger.runlog import RunRecords
from ..outcome import COUNTED_ONLY, DECISIVE_OUTCOMES, RETRY_OUTCOMES, Outcome
from ..summary import Summary
from . import html
from .retry_file import RETRY_COLUMNS, column_flags, retry_columns, write_retry_file
from .scan import Scan, scan_ledger, state_lines

ALL = "all"
LATEST = "latest"


# -- summaries -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Report:
    """A summary plus what it selected: the ledger lines worth retrying, and notes for a person."""

    summary: Summary
    retry_lines: npt.NDArray[np.int64]
    notes: list[str]
    #: The input names of the hash, classification and media columns, as the run read them.
    retry_columns: tuple[str, ...] = RETRY_COLUMNS


def build_report(ledger: Path, run_id: str | None = None) -> Report:
    """Summarise one run (default: the latest) or, with ``run_id="all"``, the ledger's state.

    Raises :class:`LedgerError` (exit 2) for a missing or unreadable ledger and an unknown run id.
    """
    view = LedgerFile.open(ledger)
    whole = run_id == ALL
    scan = scan_ledger(view, per_line=whole)
    records = runlog.run_records(ledger)
    if whole:
        report = _whole_ledger(view, scan, records)
        report.retry_columns = retry_columns(records)
        return report
    wanted = _latest_run(scan, records) if run_id in (None, LATEST) else run_id
    if wanted is None:
        raise LedgerError(f"{ledger}: the ledger has no lines yet; nothing to report")
    if wanted not in scan.runs.values and wanted not in records:
        known = scan.runs.values[-5:]
        raise LedgerError(
            f"{ledger}: no run {wanted!r} in this ledger"
            + (f" (latest runs: {', '.join(reversed(known))}; or --run all)" if known else "")
        )
    report = _one_run(view, scan, records, wanted)
    report.retry_columns = retry_columns(records, wanted)
    return report


def _latest_run(scan: Scan, records: dict[str, RunRecords]) -> str | None:
    """The run log's latest run when it knows the run of the ledger's last line (a later run may
    have written no line: every row skipped), else the run of the last line."""
    last = scan.last_run
    if records and (last is None or last in records):
        return next(reversed(records))
    return last


def summarize(ledger: Path, run_id: str | None = None) -> Summary:
    """The :class:`Summary` of one run (default: the latest) or of the whole ledger (``"all"``).

    See the module docstring for what ``all`` counts (one entry per override, not per line).
    """
    return build_report(ledger, run_id).summary


def _one_run(view: LedgerFile, scan: Scan, records: dict[str, RunRecords], run_id: str) -> Report:
    code = scan.runs.values.index(run_id) if run_id in scan.runs.values else -1
    entry = records.get(run_id, RunRecords())
    started, finished = entry.started, entry.finished
    logged = finished.summary if finished is not None else None
    dry_run = started.dry_run if started is not None else None
    if dry_run is None and finished is not None:
        dry_run = finished.dry_run
    summary = Summary(
        run_id=run_id,
        ledger=str(view.path),
        api_url=runlog.normalise_url(
            (started.api_url if started else None) or (finished.api_url if finished else None) or ""
        ),
        dry_run=bool(dry_run),
    )
    for (run, outcome, error), n in scan.counts.items():
        if run == code:
            summary.count(scan.outcomes.values[outcome], scan.error_codes.values[error], n)
    # The run's own count (its preflight included) when it logged one: the summary it printed.
    summary.requests = (logged.requests if logged else 0) or scan.attempts.get(code, 0)
    if logged is not None:  # rows counted, not written (no --record-skipped): the run log has them
        _take_counted_only(summary, logged)
    summary.throttled = logged.throttled_429 if logged else 0
    summary.not_attempted = logged.not_attempted if logged else 0
    summary.estimate = (logged.estimate if logged else None) or ""  # what the run said before sending
    summary.revised_estimate = (logged.revised_estimate if logged else None) or ""
    summary.rows = sum(summary.outcomes.values()) + summary.not_attempted
    summary.duration = _duration(scan, code, entry)
    notes: list[str] = []
    if logged is not None and logged.exit_code is not None:
        summary.exit_code = logged.exit_code
        summary.stop_reason = logged.stop_reason
    else:
        summary.exit_code = ExitCode.OK if summary.all_succeeded else ExitCode.SOME_ROWS_FAILED
        if entry.started is not None:
            summary.stop_reason = "the run log has no 'finished' record: still running, or killed"
    if not summary.dry_run and summary.outcomes.get(Outcome.PLANNED.value):
        summary.dry_run = True
    if summary.dry_run:
        notes.append(f"run {run_id} was a dry run (nothing sent); --run all shows the ledger's state")
    if summary.not_attempted:
        notes.append(
            f"run {run_id} left {summary.not_attempted} rows unattempted (--limit or a stop); they have no "
            "ledger line, so no retry file lists them: run the input again to send them"
        )
    at = np.concatenate(scan.retry_at) if scan.retry_at else np.empty(0, np.int64)
    runs = np.concatenate(scan.retry_run) if scan.retry_run else np.empty(0, np.int32)
    return Report(summary, at[runs == code].astype(np.int64), notes)


def _take_counted_only(summary: Summary, logged: runlog.RunSummary) -> None:
    """The counts of the outcomes and error codes a run counts without a line (see
    :data:`COUNTED_ONLY`) from its run log, where they exceed the ledger's: a ``rejected`` total
    holds the server's rejections (with lines) and the earlier runs' ones (without)."""
    for counts, logged_counts, names in (
        (summary.outcomes, logged.outcomes, {o.value for o, _ in COUNTED_ONLY}),
        (summary.error_codes, logged.error_codes, {c for _, c in COUNTED_ONLY if c}),
    ):
        for name in names:
            if logged_counts.get(name, 0) > counts.get(name, 0):
                counts[name] = logged_counts[name]


def _whole_ledger(view: LedgerFile, scan: Scan, records: dict[str, RunRecords]) -> Report:
    urls = sorted(_api_urls(records, scan.runs.values))
    summary = Summary(run_id=ALL, ledger=str(view.path), api_url=", ".join(urls))
    state = state_lines(scan)
    if len(state):
        outcome = np.concatenate(scan.line_outcome)[state]
        error = np.concatenate(scan.line_code)[state]
        pairs = np.unique(np.stack([outcome, error]), axis=1, return_counts=True)
        for (o, e), n in zip(pairs[0].T.tolist(), pairs[1].tolist(), strict=True):
            summary.count(scan.outcomes.values[o], scan.error_codes.values[e], n)
    summary.rows = len(state)
    summary.requests = sum(scan.attempts.values())
    summary.duration = sum(
        _duration(scan, code, records.get(run, RunRecords())) for code, run in enumerate(scan.runs.values)
    )
    for run in scan.runs.values:
        finished = records.get(run, RunRecords()).finished
        if finished is not None and finished.summary is not None:
            summary.throttled += finished.summary.throttled_429
    summary.exit_code = ExitCode.OK if summary.all_succeeded else ExitCode.SOME_ROWS_FAILED
    notes = []
    if len(urls) > 1:
        notes.append(
            f"the ledger holds runs against {len(urls)} API URLs ({', '.join(urls)}); --run all mixes "
            "them (a rehearsal's lines count like production's): report one run with --run RUN_ID"
        )
    outcome_of = np.concatenate(scan.line_outcome)[state] if len(state) else np.empty(0, np.int32)
    retry_codes = [i for i, v in enumerate(scan.outcomes.values) if v in RETRY_OUTCOMES]
    retry = state[np.isin(outcome_of, retry_codes)] if retry_codes else np.empty(0, np.int64)
    return Report(summary, retry.astype(np.int64), notes)


def _api_urls(records: dict[str, RunRecords], runs: Sequence[str]) -> set[str]:
    """The API URLs the run log records for ``runs`` (runs it does not know are left out)."""
    out = set()
    for run in runs:
        entry = records.get(run)
        record = entry.first if entry else None
        if record and record.api_url:
            out.add(runlog.normalise_url(record.api_url))
    return out


def _duration(scan: Scan, code: int, entry: RunRecords) -> float:
    """The run's own figure from the run log; else ``started`` to ``finished``; else its lines' span.

    Each fallback is shorter than the truth: the run log's ``started`` comes after the input was
    read, and the first ledger line after the first row finished.
    """
    logged = entry.finished.summary if entry.finished else None
    if logged is not None and logged.duration_s is not None:
        return max(0.0, logged.duration_s)
    started_at = entry.started.at if entry.started else None
    finished_at = entry.finished.at if entry.finished else None
    start = runlog.parse_time(started_at) or runlog.parse_time(scan.first.get(code))
    end = runlog.parse_time(finished_at) or runlog.parse_time(scan.last.get(code))
    return max(0.0, end - start) if start is not None and end is not None else 0.0


# -- the command ---------------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``report LEDGER [--run RUN_ID|all] [--retry-file PATH] [--json PATH]`` (its line in the
    top-level ``--help`` is :mod:`..cli.main`'s: that one must not import this)."""
    p = sub.add_parser(
        "report",
        description="Summarise one run of LEDGER (default: the latest), or with --run all the state "
        "of every override it holds (each one's latest decisive line).",
        epilog="exit codes: 0 report written; 2 missing or unreadable ledger, unknown run id, "
        "or an unwritable output",
    )
    p.add_argument("ledger", metavar="LEDGER", help="ledger CSV written by batch-override run")
    p.add_argument(
        "--run",
        metavar="RUN_ID",
        default=None,
        help="the run to report (default: the latest); 'all' for the state of every override",
    )
    p.add_argument(
        "--retry-file",
        metavar="PATH",
        default=None,
        help="write the rows whose latest line is failed, not_ready or aborted as an input CSV "
        "(hash, classification and media under the run's own column names, then the carried columns) "
        "that the run's command line reads",
    )
    p.add_argument(
        "--json", metavar="PATH", default=None, help="also write the summary as JSON (- for stdout)"
    )
    p.add_argument(
        "--html",
        metavar="PATH",
        default=None,
        help="also write a self-contained HTML page: the summary, a timeline of rows finished per "
        "minute by outcome with retries and 429s, error codes, top server messages, the retry file",
    )
    p.set_defaults(handler=main_report)


def main_report(args: argparse.Namespace) -> int:
    """Run ``report`` with parsed ``args``; errors become one line on stderr and exit 2."""
    ledger = Path(args.ledger)
    try:
        report = build_report(ledger, args.run)
        if args.json == "-":
            print(json.dumps(report.summary.to_dict(), indent=2))
        else:
            if report.summary.run_id == ALL:
                print(f"ledger {ledger}: {report.summary.rows} overrides, each in its latest decisive line")
            print(report.summary.render())
            if args.json:
                text = json.dumps(report.summary.to_dict(), indent=2) + "\n"
                try:
                    with atomic_writer(Path(args.json)) as fh:
                        fh.write(text.encode("utf-8"))
                except OSError as exc:
                    raise LedgerError(
                        f"{args.json}: cannot write the JSON summary ({first_line(exc)})"
                    ) from None
        for note in report.notes:
            print(f"batch-override: note: {note}", file=sys.stderr)
        if args.retry_file:
            n = write_retry_file(ledger, report.retry_lines, Path(args.retry_file), report.retry_columns)
            where = sys.stderr if args.json == "-" else sys.stdout
            if n:
                print(
                    f"wrote {n} row{'s' if n != 1 else ''} to retry to {args.retry_file} "
                    f"(send them with: batch-override run {shlex.quote(args.retry_file)} "
                    f"--ledger {shlex.quote(str(ledger))}"
                    f"{column_flags(report.retry_columns)})",
                    file=where,
                )
            else:
                print(f"wrote 0 rows to {args.retry_file}: nothing to retry", file=where)
        if args.html:
            _write_html(ledger, report, args)
    except BatchOverrideError as exc:
        print(f"batch-override: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return ExitCode.OK


def _write_html(ledger: Path, report: Report, args: argparse.Namespace) -> None:
    page = Path(args.html)
    summary = report.summary
    detail = html.read_detail(ledger, None if summary.run_id == ALL else summary.run_id)
    run = "" if summary.run_id == ALL else f" --run {summary.run_id}"
    text = html.render_html(
        summary,
        detail,
        notes=report.notes,
        retry_rows=len(report.retry_lines),
        retry_href=html.retry_link(page, Path(args.retry_file)) if args.retry_file else None,
        retry_hint=f"Write them as an input with: batch-override report {ledger}{run} --retry-file retry.csv",
    )
    try:
        html.write_html(page, text)
    except OSError as exc:
        raise LedgerError(f"{page}: cannot write the HTML report ({first_line(exc)})") from None
    print(f"wrote the HTML report to {page}", file=sys.stderr if args.json == "-" else sys.stdout)


__all__ = [
    "ALL",
    "DECISIVE_OUTCOMES",
    "RETRY_OUTCOMES",
    "Report",
    "add_parser",
    "build_report",
    "main_report",
    "summarize",
    "write_retry_file",
]

"""``batch-override report LEDGER``: a run's summary read back from its ledger, and a retry file.

Scope:
- ``--run RUN_ID`` (default, or ``latest``: the run that appended the ledger's last complete
  line) counts that run's lines: the same :class:`Summary` the run printed.  The run log beside
  the ledger (``LEDGER.runs.jsonl``) supplies what the ledger cannot: the run's duration (its own
  figure, else ``started`` to ``finished``, else its first to last line), 429 answers, rows left
  by ``--limit``, the exit code and the stop reason.  A run id only the run log knows (a run that
  wrote no line) reports zero rows.
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
- ``requests`` is the sum of the ``attempts`` column: the run's own summary also counts the one
  preflight request, so it can read one higher.
- Rows a ``--limit`` run left unattempted have no ledger line, so no retry file can list them:
  rerun the input itself (the report notes it).

The ledger is read with pyarrow in blocks, only up to its last complete line (a run may be
appending, or a kill left a torn line: the report never repairs a ledger, the next run does).
One run's report keeps per-run counts and the retry rows' line numbers; ``--run all`` keeps
about 50 bytes a line (its sort peaks near 130: a 10-million-line ledger needs ~1.3 GB).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from . import runlog
from .config import CLASSIFICATIONS, MEDIA
from .csvblocks import file_batches
from .errors import BatchOverrideError, ExitCode, LedgerError, first_line
from .keys import KEY_DTYPE, KeyArray, make_keys
from .ledger import COLUMNS, read_header
from .metrics import atomic_writer
from .outcome import DONE_OUTCOMES, Outcome
from .summary import Summary

ALL = "all"
LATEST = "latest"
#: A row whose latest line is one of these is worth sending again.
RETRY_OUTCOMES = frozenset({Outcome.FAILED, Outcome.NOT_READY, Outcome.ABORTED})
#: Lines that say what the server holds (the job's resume trusts exactly these).
DECISIVE_OUTCOMES = DONE_OUTCOMES | {Outcome.REJECTED} | RETRY_OUTCOMES
RETRY_COLUMNS = ("hash", "classification", "media")

_SCAN_COLUMNS = [
    "media",
    "hash",
    "classification",
    "outcome",
    "error_code",
    "attempts",
    "run_id",
    "finished_at",
]
_BLOCK = 1 << 22
_HASH_PATTERN = "^[0-9a-f]{64}$"
_RETRY_SET = pa.array(sorted(o.value for o in RETRY_OUTCOMES))


# -- reading the ledger ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Ledger:
    """A ledger checked far enough to read: its columns and where its last complete line ends."""

    path: Path
    header: tuple[str, ...]
    end: int

    @property
    def carried(self) -> tuple[str, ...]:
        return self.header[len(COLUMNS) :]

    @classmethod
    def open(cls, path: Path) -> _Ledger:
        if not path.exists():
            raise LedgerError(f"{path}: no such ledger")
        if path.is_dir():
            raise LedgerError(f"{path}: is a directory, not a ledger")
        try:
            header = read_header(path)
            end = _complete_end(path)
        except (OSError, UnicodeDecodeError, StopIteration) as exc:
            raise LedgerError(f"{path}: cannot read the ledger ({first_line(exc)})") from None
        if header is None:
            raise LedgerError(f"{path}: the ledger is empty (no header line)")
        if tuple(header[: len(COLUMNS)]) != COLUMNS:
            raise LedgerError(
                f"{path}: not a batch-override ledger (its header starts {', '.join(header[:4])}; "
                f"expected {', '.join(COLUMNS[:4])}, ...)"
            )
        return cls(path, tuple(header), end)

    def blocks(self, columns: Sequence[str], types: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
        """Record batches of ``columns``, strings never null, up to the last complete line."""
        convert = pacsv.ConvertOptions(
            include_columns=list(columns),
            column_types={c: types.get(c, pa.string()) for c in columns},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        try:
            yield from file_batches(self.path, convert, end=self.end, block_size=_BLOCK)
        except (pa.ArrowException, OSError) as exc:
            raise LedgerError(f"{self.path}: cannot read the ledger ({first_line(exc)})") from None


def _complete_end(path: Path) -> int:
    """The size of the ledger up to and including its last line break (0 if it has none)."""
    size = path.stat().st_size
    chunk = 1 << 16
    with open(path, "rb") as fh:
        pos = size
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            cut = fh.read(pos - start).rfind(b"\n")
            if cut >= 0:
                return start + cut + 1
            pos = start
    return 0


class _Codes:
    """Small integer codes for the few distinct values of a column (run ids, outcomes, error codes)."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._index: dict[str, int] = {}

    def encode(self, column: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int32]:
        encoded = pc.dictionary_encode(column)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        local = np.array([self.code(v) for v in encoded.dictionary.to_pylist()], np.int32)
        indices = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), np.int64)
        return local[indices] if len(local) else np.zeros(len(indices), np.int32)

    def code(self, value: str) -> int:
        found = self._index.get(value)
        if found is None:
            found = self._index[value] = len(self.values)
            self.values.append(value)
        return found


# -- the run log -------------------------------------------------------------------------------
@dataclass(slots=True)
class _RunRecords:
    started: dict[str, Any] | None = None
    finished: dict[str, Any] | None = None


def _read_runlog(ledger: Path) -> dict[str, _RunRecords]:
    """The run log's records by run id; a missing log is empty, a torn or foreign line is skipped."""
    out: dict[str, _RunRecords] = {}
    try:
        for record in runlog.records(runlog.runlog_path(ledger)):
            entry = out.setdefault(record["run_id"], _RunRecords())
            if record.get("event") == "started":
                entry.started = record
            elif record.get("event") == "finished":
                entry.finished = record
    except OSError:
        return {}
    return out


# -- the scan ------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Scan:
    """Everything one pass over the ledger learns, per run and (for ``all``) per line."""

    lines: int = 0
    last_run: str | None = None
    runs: _Codes = field(default_factory=_Codes)
    outcomes: _Codes = field(default_factory=_Codes)
    error_codes: _Codes = field(default_factory=_Codes)
    counts: Counter[tuple[int, int, int]] = field(default_factory=Counter)  # (run, outcome, code)
    attempts: Counter[int] = field(default_factory=Counter)  # run -> sum of attempts
    first: dict[int, str] = field(default_factory=dict)  # run -> earliest finished_at
    last: dict[int, str] = field(default_factory=dict)
    retry_at: list[npt.NDArray[np.int64]] = field(default_factory=list)  # line numbers
    retry_run: list[npt.NDArray[np.int32]] = field(default_factory=list)
    # per line, only for the whole-ledger state
    keys: list[KeyArray] = field(default_factory=list)
    line_outcome: list[npt.NDArray[np.int32]] = field(default_factory=list)
    line_code: list[npt.NDArray[np.int32]] = field(default_factory=list)
    loose_at: list[npt.NDArray[np.int64]] = field(default_factory=list)
    loose_text: list[pa.Array] = field(default_factory=list)


def _scan(ledger: _Ledger, per_line: bool) -> _Scan:
    scan = _Scan()
    for batch in ledger.blocks(_SCAN_COLUMNS, {"attempts": pa.int64()}):
        n = batch.num_rows
        if n == 0:
            continue
        table = pa.Table.from_batches([batch])
        attempts = pc.fill_null(table["attempts"], 0)
        finished = table["finished_at"]
        finished = pc.if_else(pc.equal(finished, ""), pa.scalar(None, pa.string()), finished)
        table = table.set_column(table.schema.get_field_index("attempts"), "attempts", attempts)
        table = table.set_column(table.schema.get_field_index("finished_at"), "finished_at", finished)
        runs = scan.runs.encode(table["run_id"])
        outcomes = scan.outcomes.encode(table["outcome"])
        codes = scan.error_codes.encode(table["error_code"])
        grouped = (
            pa.table({"run": runs, "outcome": outcomes, "code": codes})
            .group_by(["run", "outcome", "code"], use_threads=False)
            .aggregate([([], "count_all")])
        )
        for run, outcome, code, count in zip(
            *(grouped[c].to_pylist() for c in grouped.column_names), strict=True
        ):
            scan.counts[(run, outcome, code)] += count
        spans = (
            pa.table({"run": runs, "attempts": table["attempts"], "at": table["finished_at"]})
            .group_by("run", use_threads=False)
            .aggregate([("attempts", "sum"), ("at", "min"), ("at", "max")])
        )
        for run, total, lo, hi in zip(*(spans[c].to_pylist() for c in spans.column_names), strict=True):
            scan.attempts[run] += total
            if lo is not None and (run not in scan.first or lo < scan.first[run]):
                scan.first[run] = lo
            if hi is not None and (run not in scan.last or hi > scan.last[run]):
                scan.last[run] = hi
        retry = np.asarray(
            pc.is_in(table["outcome"], value_set=_RETRY_SET).to_numpy(zero_copy_only=False), np.bool_
        )
        at = np.flatnonzero(retry)
        scan.retry_at.append(at + scan.lines)
        scan.retry_run.append(runs[at])
        if per_line:
            _keep_line_state(scan, table, outcomes, codes)
        scan.last_run = str(table["run_id"][n - 1].as_py())
        scan.lines += n
    return scan


def _keep_line_state(
    scan: _Scan, table: pa.Table, outcomes: npt.NDArray[np.int32], codes: npt.NDArray[np.int32]
) -> None:
    """Per line: the override's key, outcome and error code (34 + 8 bytes a line)."""
    media, hashes, classes = (table[c].combine_chunks() for c in ("media", "hash", "classification"))
    proper = pc.and_(
        pc.and_(
            pc.match_substring_regex(hashes, _HASH_PATTERN),
            pc.is_in(media, value_set=pa.array(MEDIA)),
        ),
        pc.is_in(classes, value_set=pa.array(CLASSIFICATIONS)),
    )
    ok = np.asarray(proper.to_numpy(zero_copy_only=False), np.bool_)
    keys = np.empty(len(ok), KEY_DTYPE)
    if ok.any():
        sel = pa.array(ok)
        keys[ok] = make_keys(hashes.filter(sel), media.filter(sel), classes.filter(sel))
    if not ok.all():
        # An invalid row's text is not a hash: its key is its whole text, numbered at the end.
        loose = pa.array(~ok)
        text = pc.binary_join_element_wise(
            media.filter(loose), hashes.filter(loose), classes.filter(loose), "\x1f"
        )
        scan.loose_at.append(np.flatnonzero(~ok) + scan.lines)
        scan.loose_text.append(text)
    scan.keys.append(keys)
    scan.line_outcome.append(outcomes)
    scan.line_code.append(codes)


def _state_lines(scan: _Scan) -> npt.NDArray[np.int64]:
    """Line numbers of each override's state line (see the module docstring)."""
    if scan.lines == 0:
        return np.empty(0, np.int64)
    keys = np.concatenate(scan.keys)
    if scan.loose_at:
        at = np.concatenate(scan.loose_at)
        numbers = pc.dictionary_encode(pa.chunked_array(scan.loose_text)).combine_chunks().indices
        raw = np.zeros((len(at), 34), np.uint8)
        raw[:, :8] = np.asarray(numbers.to_numpy(zero_copy_only=False), "<u8").view(np.uint8).reshape(-1, 8)
        raw[:, 33] = 0xFF  # media code 0 at byte 32 keeps these apart from every proper key
        keys[at] = raw.view(KEY_DTYPE).reshape(len(at))
    outcome_values = np.array([v in DECISIVE_OUTCOMES for v in scan.outcomes.values], np.bool_)
    decisive = outcome_values[np.concatenate(scan.line_outcome)]
    rank = decisive.astype(np.int64) * scan.lines + np.arange(scan.lines, dtype=np.int64)
    order = np.lexsort((rank, keys))
    sorted_keys = keys[order]
    last = np.ones(len(order), np.bool_)
    last[:-1] = sorted_keys[1:] != sorted_keys[:-1]
    return np.sort(order[last]).astype(np.int64)


# -- summaries -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Report:
    """A summary plus what it selected: the ledger lines worth retrying, and notes for a person."""

    summary: Summary
    retry_lines: npt.NDArray[np.int64]
    notes: list[str]


def build_report(ledger: Path, run_id: str | None = None) -> Report:
    """Summarise one run (default: the latest) or, with ``run_id="all"``, the ledger's state.

    Raises :class:`LedgerError` (exit 2) for a missing or unreadable ledger and an unknown run id.
    """
    view = _Ledger.open(ledger)
    whole = run_id == ALL
    scan = _scan(view, per_line=whole)
    records = _read_runlog(ledger)
    if whole:
        return _whole_ledger(view, scan, records)
    wanted = scan.last_run if run_id in (None, LATEST) else run_id
    if wanted is None:
        raise LedgerError(f"{ledger}: the ledger has no lines yet; nothing to report")
    if wanted not in scan.runs.values and wanted not in records:
        known = scan.runs.values[-5:]
        raise LedgerError(
            f"{ledger}: no run {wanted!r} in this ledger"
            + (f" (latest runs: {', '.join(reversed(known))}; or --run all)" if known else "")
        )
    return _one_run(view, scan, records, wanted)


def summarize(ledger: Path, run_id: str | None = None) -> Summary:
    """The :class:`Summary` of one run (default: the latest) or of the whole ledger (``"all"``).

    See the module docstring for what ``all`` counts (one entry per override, not per line).
    """
    return build_report(ledger, run_id).summary


def _one_run(view: _Ledger, scan: _Scan, records: dict[str, _RunRecords], run_id: str) -> Report:
    code = scan.runs.values.index(run_id) if run_id in scan.runs.values else -1
    entry = records.get(run_id, _RunRecords())
    started = entry.started or {}
    finished = entry.finished or {}
    raw = finished.get("summary")
    logged: dict[str, Any] = raw if isinstance(raw, dict) else {}
    summary = Summary(
        run_id=run_id,
        ledger=str(view.path),
        api_url=runlog.normalise_url(str(started.get("api_url") or finished.get("api_url") or "")),
        dry_run=bool(started.get("dry_run", finished.get("dry_run", False))),
    )
    for (run, outcome, error), n in scan.counts.items():
        if run == code:
            summary.count(scan.outcomes.values[outcome], scan.error_codes.values[error], n)
    summary.requests = scan.attempts.get(code, 0)
    summary.throttled = _int(logged.get("throttled_429"))
    summary.not_attempted = _int(logged.get("not_attempted"))
    summary.rows = sum(summary.outcomes.values()) + summary.not_attempted
    summary.duration = _duration(scan, code, entry)
    notes: list[str] = []
    if "exit_code" in logged:
        summary.exit_code = _int(logged["exit_code"])
        summary.stop_reason = str(logged.get("stop_reason") or "")
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
            f"run {run_id} left {summary.not_attempted} rows unattempted (--limit); they have no ledger "
            "line, so no retry file lists them: run the input again to send them"
        )
    at = np.concatenate(scan.retry_at) if scan.retry_at else np.empty(0, np.int64)
    runs = np.concatenate(scan.retry_run) if scan.retry_run else np.empty(0, np.int32)
    return Report(summary, at[runs == code].astype(np.int64), notes)


def _whole_ledger(view: _Ledger, scan: _Scan, records: dict[str, _RunRecords]) -> Report:
    urls = sorted(_api_urls(records, scan.runs.values))
    summary = Summary(run_id=ALL, ledger=str(view.path), api_url=", ".join(urls))
    state = _state_lines(scan)
    if len(state):
        outcome = np.concatenate(scan.line_outcome)[state]
        error = np.concatenate(scan.line_code)[state]
        pairs = np.unique(np.stack([outcome, error]), axis=1, return_counts=True)
        for (o, e), n in zip(pairs[0].T.tolist(), pairs[1].tolist(), strict=True):
            summary.count(scan.outcomes.values[o], scan.error_codes.values[e], n)
    summary.rows = len(state)
    summary.requests = sum(scan.attempts.values())
    summary.duration = sum(
        _duration(scan, code, records.get(run, _RunRecords())) for code, run in enumerate(scan.runs.values)
    )
    for run in scan.runs.values:
        finished = records.get(run, _RunRecords()).finished or {}
        logged = finished.get("summary")
        if isinstance(logged, dict):
            summary.throttled += _int(logged.get("throttled_429"))
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


def _api_urls(records: dict[str, _RunRecords], runs: Sequence[str]) -> set[str]:
    """The API URLs the run log records for ``runs`` (runs it does not know are left out)."""
    out = set()
    for run in runs:
        entry = records.get(run)
        record = (entry.started or entry.finished) if entry else None
        if record and record.get("api_url"):
            out.add(runlog.normalise_url(str(record["api_url"])))
    return out


def _duration(scan: _Scan, code: int, entry: _RunRecords) -> float:
    """The run's own figure from the run log; else ``started`` to ``finished``; else its lines' span.

    Each fallback is shorter than the truth: the run log's ``started`` comes after the input was
    read, and the first ledger line after the first row finished.
    """
    logged = (entry.finished or {}).get("summary")
    if isinstance(logged, dict) and isinstance(logged.get("duration_s"), int | float):
        return max(0.0, float(logged["duration_s"]))
    start = runlog.parse_time((entry.started or {}).get("at")) or runlog.parse_time(scan.first.get(code))
    end = runlog.parse_time((entry.finished or {}).get("at")) or runlog.parse_time(scan.last.get(code))
    return max(0.0, end - start) if start is not None and end is not None else 0.0


def _int(value: object) -> int:
    """A run log number, 0 when absent or not a number (the log is written by other versions too)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        return int(value)
    except ValueError:
        return 0


# -- the retry file ------------------------------------------------------------------------------
def write_retry_file(ledger: Path, lines: npt.NDArray[np.int64], path: Path) -> int:
    """Write ledger ``lines`` (0-based line numbers, ascending) as an input for ``batch-override run``.

    Columns: hash, classification, media, then the ledger's carried columns under their ledger
    names, so running the file into the *same* ledger passes its column check.  Rows come in
    ledger order (the order they finished), not input order.  Carried cells are written as the
    ledger holds them, i.e. with the apostrophe the ledger puts before a formula-like cell.
    The trap: the file uses the default column names, so run it without ``--hash-column`` and
    friends (or a job file that sets them).  Returns the number of rows written; with none, the
    file holds only the header, which ``run`` refuses (exit 2): check the count first.
    """
    view = _Ledger.open(ledger)
    columns = [*RETRY_COLUMNS, *view.carried]
    wanted = np.asarray(lines, np.int64)
    schema = pa.schema([(c, pa.string()) for c in columns])
    written = 0
    try:
        with atomic_writer(path) as fh:
            writer = pacsv.CSVWriter(fh, schema, write_options=pacsv.WriteOptions(quoting_style="needed"))
            start = 0
            for batch in view.blocks(columns, {}) if len(wanted) else iter(()):
                lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
                if hi > lo:
                    part = batch.take(pa.array(wanted[lo:hi] - start)).select(columns)
                    writer.write_batch(pa.RecordBatch.from_arrays(part.columns, schema=schema))
                    written += int(hi - lo)
                start += batch.num_rows
                if hi >= len(wanted):
                    break
            writer.close()
    except OSError as exc:
        raise LedgerError(f"{path}: cannot write the retry file ({first_line(exc)})") from None
    return written


# -- the command ---------------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``report LEDGER [--run RUN_ID|all] [--retry-file PATH] [--json PATH]``."""
    p = sub.add_parser(
        "report",
        help="summarise a run from its ledger; write the rows worth retrying as a new input",
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
        "(hash, classification, media, then the carried columns) for batch-override run",
    )
    p.add_argument(
        "--json", metavar="PATH", default=None, help="also write the summary as JSON (- for stdout)"
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
            n = write_retry_file(ledger, report.retry_lines, Path(args.retry_file))
            where = sys.stderr if args.json == "-" else sys.stdout
            if n:
                print(
                    f"wrote {n} row{'s' if n != 1 else ''} to retry to {args.retry_file} "
                    f"(send them with: batch-override run {args.retry_file} --ledger {ledger})",
                    file=where,
                )
            else:
                print(f"wrote 0 rows to {args.retry_file}: nothing to retry", file=where)
    except BatchOverrideError as exc:
        print(f"batch-override: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return ExitCode.OK


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

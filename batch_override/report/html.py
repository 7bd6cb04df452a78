"""``report --html``: a run as one self-contained HTML page, for people to look at and share.

The page holds the run's summary, a timeline of rows finished per minute (per second for a short
run, per hour for a week's) by outcome, from the ledger's ``finished_at``, with the retries and
the rows that ended on a 429; the outcomes and error codes, the server's most frequent messages
and a link to the retry file.  The chart is
inline SVG drawn from a small template here: no script, no font, no stylesheet from elsewhere,
so the file shows the same offline, in a mail attachment or years later.

Contract:
- Every value from the ledger, the run log or the command line goes through :func:`_text`
  (``html.escape``): the ledger holds user text and the server's words, so a cell reading
  ``<script>`` is shown as those characters.  A Content-Security-Policy that allows no script and
  no network is there as a second wall, not as the first.
- The timeline's bucket is the smallest of :data:`BUCKETS` that keeps under :data:`MAX_BARS`
  bars (a minute for a run of one to two hours), and the axis says which.

Traps: the ledger records a row's last answer only, so the 429 series counts rows whose last
answer was a 429, not every 429 (the summary's "429 answers" is the run's own count); and
``retries`` is each row's attempts beyond the first, put in the bucket the row finished in.
"""

from __future__ import annotations

import html
import math
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..files import atomic_writer
from ..ledger.reader import LedgerFile
from ..outcome import Outcome
from ..summary import Summary

#: Bucket sizes the timeline may use, in seconds: the minute for a run of an hour or two.
BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
MAX_BARS = 120
TOP_MESSAGES = 10
#: Bar colours by outcome; an outcome not listed (a hand-edited ledger's) is grey.
COLOURS = {
    "submitted": "#2e7d32",
    "already_submitted": "#66bb6a",
    "skipped": "#a5d6a7",
    "duplicate": "#c5e1a5",
    "planned": "#64b5f6",
    "not_ready": "#ffb300",
    "rejected": "#e53935",
    "failed": "#8e0000",
    "aborted": "#6a1b9a",
    "invalid": "#fb8c00",
    "conflict": "#f06292",
}
_OTHER = "#9e9e9e"


@dataclass(slots=True)
class Detail:
    """What the page needs beyond the summary, from two passes over the run's ledger lines.

    The timeline's counts are per bucket (index ``i`` covers ``start + i * bucket`` seconds on).
    """

    start: int = 0  # Unix time of the first bucket
    bucket: int = 60  # seconds per bucket
    bars: int = 0
    rows: Counter[tuple[int, str]] = field(default_factory=Counter)  # (bucket, outcome) -> rows
    retries: Counter[int] = field(default_factory=Counter)  # bucket -> attempts beyond the first
    throttled: Counter[int] = field(default_factory=Counter)  # bucket -> rows ending on a 429
    messages: Counter[str] = field(default_factory=Counter)


def bucket_seconds(span: float) -> int:
    """The smallest of :data:`BUCKETS` that draws ``span`` seconds in at most :data:`MAX_BARS` bars."""
    return next((b for b in BUCKETS if span / b < MAX_BARS), BUCKETS[-1])


def _seconds(table: pa.Table) -> pa.ChunkedArray:
    """``finished_at`` as Unix seconds (null where empty or not a time: a hand-edited ledger)."""
    at = pc.utf8_slice_codeunits(table["finished_at"], 0, 19)  # 2026-12-01T20:26:05
    when = pc.strptime(at, format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True)
    return pc.cast(when, pa.int64())


def _lines(ledger: LedgerFile, columns: list[str], run_id: str | None) -> Iterator[pa.Table]:
    types = {"attempts": pa.int64(), "http_status": pa.int64()}
    for batch in ledger.blocks([*columns, "run_id"], {c: t for c, t in types.items() if c in columns}):
        table = pa.Table.from_batches([batch])
        if run_id is not None:
            table = table.filter(pc.equal(table["run_id"], run_id))
        if table.num_rows:
            yield table


def read_detail(ledger: Path, run_id: str | None) -> Detail:
    """The timeline and message counts of run ``run_id``'s lines (``None``: every line).

    A first pass finds the span (for the bucket size), so memory stays a count per bucket and
    per distinct message, however long the run.
    """
    view = LedgerFile.open(ledger)
    detail = Detail()
    first = last = None
    for table in _lines(view, ["finished_at"], run_id):
        span = pc.min_max(_seconds(table)).as_py()
        if span["min"] is not None:
            first = span["min"] if first is None else min(first, span["min"])
            last = span["max"] if last is None else max(last, span["max"])
    if first is not None and last is not None:
        detail.bucket = bucket_seconds(last - first + 1)
        detail.start = first - first % detail.bucket
        detail.bars = (last - detail.start) // detail.bucket + 1
    for table in _lines(view, ["outcome", "http_status", "attempts", "message", "finished_at"], run_id):
        index = pc.divide(pc.subtract(_seconds(table), detail.start), detail.bucket)
        retries = pc.max_element_wise(pc.subtract(pc.fill_null(table["attempts"], 0), 1), 0)
        is_429 = pc.cast(pc.equal(pc.fill_null(table["http_status"], 0), 429), pa.int64())
        frame = pa.table({"i": index, "outcome": table["outcome"], "retries": retries, "t": is_429})
        frame = frame.filter(pc.is_valid(frame["i"]))
        grouped = frame.group_by(["i", "outcome"]).aggregate([([], "count_all")])
        for i, outcome, n in zip(*(grouped[c].to_pylist() for c in grouped.column_names), strict=True):
            detail.rows[(i, outcome)] += n
        sums = frame.group_by("i").aggregate([("retries", "sum"), ("t", "sum")])
        for i, retried, throttled in zip(*(sums[c].to_pylist() for c in sums.column_names), strict=True):
            detail.retries[i] += retried
            detail.throttled[i] += throttled
        # The server's words only: a line without an HTTP status holds the job's own (invalid,
        # duplicate, skipped, aborted unsent), which would crowd the server's out of the table.
        said = table.filter(pc.and_(pc.not_equal(table["message"], ""), pc.is_valid(table["http_status"])))
        if said.num_rows:
            counted = said.group_by("message").aggregate([([], "count_all")])
            for message, n in zip(*(counted[c].to_pylist() for c in counted.column_names), strict=True):
                detail.messages[message] += n
    return detail


def _text(value: object) -> str:
    """Any value as HTML text: the one way a value enters the page."""
    return html.escape(str(value), quote=True)


# -- the timeline --------------------------------------------------------------------------------
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 960, 320, 56, 16, 16, 44


def _when(at: int, with_date: bool) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S", time.gmtime(at))


def _unit(seconds: int) -> str:
    if seconds % 3600 == 0:
        return "hour" if seconds == 3600 else f"{seconds // 3600} hours"
    if seconds % 60 == 0:
        return "minute" if seconds == 60 else f"{seconds // 60} minutes"
    return "second" if seconds == 1 else f"{seconds} seconds"


def timeline_svg(detail: Detail) -> str:
    """The stacked bars (rows by outcome per bucket), the retries line and the 429 markers."""
    if not detail.rows:
        return '<p id="timeline" class="empty">No line of this run has a finished_at time.</p>'
    bars, size, start = detail.bars, detail.bucket, detail.start
    stacks: list[Counter[str]] = [Counter() for _ in range(bars)]
    for (i, outcome), n in detail.rows.items():
        stacks[i][outcome] += n
    retries = [detail.retries.get(i, 0) for i in range(bars)]
    throttled = [detail.throttled.get(i, 0) for i in range(bars)]
    top = max([sum(s.values()) for s in stacks] + retries + throttled + [1])
    step = 10 ** math.floor(math.log10(top))
    top = math.ceil(top / step) * step
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    width = plot_w / bars

    def y(value: float) -> float:
        return float(_TOP + plot_h * (1 - value / top))

    unit = _unit(size)
    out = [
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="rows finished per {_text(unit)} by outcome">',
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_W - _RIGHT}" y2="{_TOP + plot_h}"/>',
    ]
    for tick in (0, top / 2, top):
        out.append(
            f'<text class="tick" x="{_LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
            f'<line class="grid" x1="{_LEFT}" y1="{y(tick):.1f}" x2="{_W - _RIGHT}" y2="{y(tick):.1f}"/>'
        )
    order = [o.value for o in Outcome]
    for i, stack in enumerate(stacks):
        x = _LEFT + i * width
        base = 0
        label = _when(start + i * size, with_date=False)
        for outcome in sorted(stack, key=lambda o: (order.index(o) if o in order else len(order), o)):
            n = stack[outcome]
            colour = COLOURS.get(outcome, _OTHER)
            out.append(
                f'<rect class="bar" data-outcome="{_text(outcome)}" x="{x:.2f}" y="{y(base + n):.2f}" '
                f'width="{max(width - 1, 0.5):.2f}" height="{y(base) - y(base + n):.2f}" fill="{colour}">'
                f"<title>{_text(label)} {_text(outcome)}: {n}</title></rect>"
            )
            base += n
    points = " ".join(f"{_LEFT + (i + 0.5) * width:.1f},{y(r):.1f}" for i, r in enumerate(retries))
    out.append(f'<polyline id="retries" fill="none" stroke="#212121" stroke-width="1.5" points="{points}"/>')
    for i, n in enumerate(throttled):
        if n:
            cx = _LEFT + (i + 0.5) * width
            out.append(
                f'<circle class="throttled" cx="{cx:.1f}" cy="{y(n):.1f}" r="3.5" fill="#d50000">'
                f"<title>{_text(_when(start + i * size, False))}: {n} rows ended on a 429</title></circle>"
            )
    ticks = min(bars, 6)
    for k in range(ticks):
        i = round(k * (bars - 1) / max(ticks - 1, 1))
        out.append(
            f'<text class="tick" x="{_LEFT + (i + 0.5) * width:.1f}" y="{_TOP + plot_h + 16}" '
            f'text-anchor="middle">{_text(_when(start + i * size, with_date=k == 0))}</text>'
        )
    out.append(
        f'<text class="tick" x="{_LEFT + plot_w / 2}" y="{_H - 6}" text-anchor="middle">'
        f"UTC; bars: rows finished per {_text(unit)}; line: retries; dots: rows ending on a 429</text>"
    )
    out.append("</svg>")
    return "\n".join(out)


# -- the page ------------------------------------------------------------------------------------
_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#212121;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .8em;border-bottom:1px solid #e0e0e0;
text-align:left;vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b71c1c}.ok{color:#1b5e20}code{background:#f5f5f5;padding:0 .2em}
svg .axis{stroke:#616161}svg .grid{stroke:#eeeeee}svg .tick{font-size:11px;fill:#616161}
.swatch{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}
.msg{max-width:760px;word-break:break-word}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "\n".join(f"<tr><th>{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in pairs)


def _counts_table(table_id: str, heading: str, counts: dict[str, int], total: int, swatch: bool) -> str:
    if not counts:
        return f'<p id="{table_id}">None.</p>'
    lines = [f'<table id="{table_id}"><tr><th>{_text(heading)}</th><th>rows</th><th>share</th></tr>']
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        mark = (
            f'<span class="swatch" style="background:{COLOURS.get(name, _OTHER)}"></span>' if swatch else ""
        )
        share = f"{100 * n / total:.1f}%" if total else ""
        lines.append(
            f'<tr data-name="{_text(name)}"><td>{mark}{_text(name)}</td><td class="n">{n}</td>'
            f'<td class="n">{share}</td></tr>'
        )
    lines.append("</table>")
    return "\n".join(lines)


def render_html(
    summary: Summary,
    detail: Detail,
    *,
    notes: Sequence[str] = (),
    retry_rows: int = 0,
    retry_href: str | None = None,
    retry_hint: str = "",
) -> str:
    """The page.  ``retry_href`` links the retry file (a URL relative to the page); without it,
    ``retry_hint`` says how to write one."""
    ok = summary.exit_code == 0
    title = "batch-override report: " + (
        "the ledger's state" if summary.run_id == "all" else f"run {summary.run_id}"
    )
    c = summary.concurrency
    facts = [
        ("ledger", summary.ledger or "-"),
        ("API URL", summary.api_url or "-"),
        ("rows", str(summary.rows)),
        ("duration", f"{summary.duration:.1f} s"),
        ("exit code", str(summary.exit_code)),
        ("requests", f"{summary.requests} ({summary.sent_rate:.1f}/s)"),
        ("429 answers", str(summary.throttled)),
    ]
    if summary.stop_reason:
        facts.insert(5, ("stopped", summary.stop_reason))
    if summary.not_attempted:
        facts.append(("not attempted (--limit or a stop)", str(summary.not_attempted)))
    if c:
        facts.append(("concurrency", f"{c.get('mode')}, {c.get('mean_in_flight')} in flight on average"))
    finished = sum(summary.outcomes.values())
    succeeded = sum(n for o, n in summary.outcomes.items() if o in summary.ok_outcomes)
    top = detail.messages.most_common(TOP_MESSAGES)
    messages = (
        '<table id="messages"><tr><th>rows</th><th>message</th></tr>'
        + "".join(f'<tr><td class="n">{n}</td><td class="msg">{_text(m)}</td></tr>' for m, n in top)
        + "</table>"
        if top
        else '<p id="messages">No messages.</p>'
    )
    worth = f"{retry_rows} row{'s' if retry_rows != 1 else ''} worth sending again"
    if retry_href is not None:
        shown = _text(urllib.parse.unquote(retry_href))
        retry = f'<p id="retry"><a href="{_text(retry_href)}">{shown}</a>: {worth}.</p>'
    else:
        retry = f'<p id="retry">{worth}. {_text(retry_hint)}</p>'
    note_html = "".join(f'<p class="note">{_text(n)}</p>' for n in notes)
    status = "ok" if ok else "bad"
    written = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    headline = f"{finished} rows finished, {succeeded} succeeded; exit code {summary.exit_code}."
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{_text(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{_text(title)}</h1>
<p id="headline" class="{status}">{headline}</p>
{note_html}
<table id="summary">{_rows(facts)}</table>
<h2>Timeline</h2>
{timeline_svg(detail)}
<h2>Outcomes</h2>
{_counts_table("outcomes", "outcome", dict(summary.outcomes), finished, swatch=True)}
<h2>Error codes</h2>
{_counts_table("error-codes", "error code", dict(summary.error_codes), finished, swatch=False)}
<h2>Top server messages</h2>
{messages}
<h2>Retry file</h2>
{retry}
<footer><p>Written by batch-override report on {_text(written)}.</p></footer>
</body></html>
"""


def retry_link(page: Path, retry_file: Path) -> str:
    """The retry file's URL relative to the page (percent-encoded), so the two can move together."""
    relative = os.path.relpath(retry_file.resolve(), page.resolve().parent)
    return urllib.parse.quote(Path(relative).as_posix())


def write_html(path: Path, text: str) -> None:
    with atomic_writer(path) as fh:
        fh.write(text.encode("utf-8"))


__all__ = [
    "BUCKETS",
    "COLOURS",
    "Detail",
    "bucket_seconds",
    "read_detail",
    "render_html",
    "retry_link",
    "timeline_svg",
    "write_html",
]

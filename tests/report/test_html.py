"""``report --html``: one self-contained page, every value escaped, the counts the ledger holds.

The page is parsed back with the standard library's HTML parser, the way a browser builds its
tree; ``test_report_browser.py`` renders it in a real headless Chromium (``make integration``).
"""

from __future__ import annotations

from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

from batch_override.report.html import MAX_BARS, bucket_seconds
from batch_override.report.run_report import add_parser
from tests.support import line, run_command, write_ledger, write_runlog

HOSTILE = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'


class Page(HTMLParser):
    """Elements by tag (with attributes), the text of each element id, and all text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.attrs: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.by_id: dict[str, list[str]] = {}
        self._open: list[str | None] = []
        self.title = ""
        self._in_title = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        found = dict(attrs)
        self.attrs.append((tag, found))
        self._in_title = tag == "title" and not self.tags["svg"]  # the page's, not a tooltip's
        if tag not in ("meta", "link", "line", "polyline", "circle", "br", "img", "rect"):
            self._open.append(found.get("id"))
        if found.get("id"):
            self.by_id.setdefault(str(found["id"]), [])

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False
        if tag not in ("meta", "link", "line", "polyline", "circle", "br", "img", "rect") and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_title:
            self.title += data
        for opened in self._open:
            if opened:
                self.by_id[opened].append(data)

    def of(self, element_id: str) -> str:
        return " ".join(" ".join(self.by_id[element_id]).split())


def _ledger(tmp_path: Path) -> Path:
    """One run over three minutes: 5 submitted (one retried twice), one that ended on a 429, one
    not ready, and a rejected row whose server message is hostile markup."""
    at = "2026-01-01T10:0{}:{:02d}.000Z"
    lines = [
        line(0, "submitted", "r1", at=at.format(0, 5)),
        line(1, "submitted", "r1", at=at.format(0, 30)),
        line(2, "submitted", "r1", attempts=3, at=at.format(1, 10)),
        line(3, "failed", "r1", error_code="rate_limited", http_status=429, attempts=6, message="Too Many",
             at=at.format(1, 40)),
        line(4, "not_ready", "r1", error_code="not_classified", http_status=400, message="not yet",
             at=at.format(2, 0)),
        line(5, "rejected", "r1", error_code="no_request", http_status=400, message=HOSTILE,
             at=at.format(2, 50)),
        line(6, "submitted", "r1", at=at.format(2, 55)),
        line(7, "submitted", "r1", at=at.format(2, 59)),
    ]  # fmt: skip
    ledger = write_ledger(tmp_path / "l.csv", [line(9, "submitted", "r0"), *lines])
    base = {"run_id": "r1", "api_url": "https://backend.identifai.net/", "dry_run": False}
    write_runlog(
        ledger,
        [
            {**base, "event": "started", "at": "2026-01-01T10:00:00.000Z"},
            {**base, "event": "finished", "at": "2026-01-01T10:03:00.000Z",
             "summary": {"throttled_429": 9, "exit_code": 1, "stop_reason": "", "duration_s": 180.0}},
        ],
    )  # fmt: skip
    return ledger


def test_the_page_has_the_summary_the_timeline_and_the_counts_and_shows_markup_as_text(
    tmp_path: Path, capsys
) -> None:
    ledger = _ledger(tmp_path)
    out, retry = tmp_path / "report" / "run.html", tmp_path / "retry.csv"
    out.parent.mkdir()
    assert run_command(add_parser, "report", str(ledger), "--html", str(out), "--retry-file", str(retry)) == 0
    assert f"wrote the HTML report to {out}" in capsys.readouterr().out
    page = Page(out.read_text(encoding="utf-8"))
    assert page.title == "batch-override report: run r1"
    assert "8 rows finished, 5 succeeded; exit code 1." in page.of("headline")
    assert "429 answers 9" in page.of("summary") and "duration 180.0 s" in page.of("summary")
    assert "submitted 5 62.5%" in page.of("outcomes") and "rejected 1 12.5%" in page.of("outcomes")
    assert "rate_limited 1" in page.of("error-codes")
    # The hostile message is text in the messages table, and no element came of it.
    assert HOSTILE in page.of("messages")
    assert page.tags["script"] == 0 and page.tags["img"] == 0
    assert "pwned" not in page.title
    # The timeline: 10:00:05 to 10:02:59 in 35 buckets of 5 seconds; a bar segment per (bucket,
    # outcome): the rows at 10:02:55 and 10:02:59 share one.
    assert page.tags["svg"] == 1
    bars = [a for tag, a in page.attrs if tag == "rect" and "bar" in str(a.get("class"))]
    assert Counter(a["data-outcome"] for a in bars) == {"submitted": 4, "failed": 1, "not_ready": 1,
                                                        "rejected": 1}  # fmt: skip
    assert "rows finished per 5 seconds" in page.of("timeline")
    assert len([a for tag, a in page.attrs if tag == "circle"]) == 1  # one bucket with a 429 ending
    retries = next(a for tag, a in page.attrs if tag == "polyline")
    assert len(str(retries["points"]).split()) == 35
    # Self-contained: the only link is the retry file, relative to the page; nothing is fetched.
    links = [(tag, a) for tag, a in page.attrs if "href" in a or "src" in a]
    assert [a["href"] for tag, a in links if tag == "a"] == ["../retry.csv"]
    assert [a["href"] for tag, a in links if tag == "link"] == ["data:,"]
    assert "2 rows worth sending again" in page.of("retry")
    csp = next(a["content"] for tag, a in page.attrs if tag == "meta" and a.get("http-equiv"))
    assert "default-src 'none'" in str(csp) and "script-src" not in str(csp)


def test_without_a_retry_file_the_page_says_how_to_write_one_and_all_shows_every_run(
    tmp_path: Path,
) -> None:
    ledger = _ledger(tmp_path)
    out = tmp_path / "all.html"
    assert run_command(add_parser, "report", str(ledger), "--run", "all", "--html", str(out)) == 0
    page = Page(out.read_text(encoding="utf-8"))
    assert page.title == "batch-override report: the ledger's state"
    assert f"batch-override report {ledger} --retry-file retry.csv" in page.of("retry")
    assert "9 rows finished" in page.of("headline")


def test_an_unwritable_page_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    ledger = _ledger(tmp_path)
    code = run_command(add_parser, "report", str(ledger), "--html", str(tmp_path / "missing" / "x.html"))
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"batch-override: error: {tmp_path / 'missing' / 'x.html'}: cannot"
    )


def test_the_bucket_keeps_the_bars_few_and_is_the_minute_for_an_hour_or_two() -> None:
    assert bucket_seconds(9) == 1
    assert bucket_seconds(180) == 5
    assert bucket_seconds(3600) == 60 and bucket_seconds(7000) == 60
    assert bucket_seconds(7 * 86400) == 7200
    for span in (1, 59, 600, 86400, 30 * 86400):
        assert span / bucket_seconds(span) < MAX_BARS


def test_top_server_messages_leave_out_the_jobs_own_texts(tmp_path: Path) -> None:
    """Lines without an HTTP status carry the job's words (invalid, duplicate, aborted unsent)."""
    lines = [
        *(line(i, "invalid", "r", error_code="invalid_row", message="hash is empty") for i in range(5)),
        *(line(i, "duplicate", "r", message="repeats an earlier row of this input") for i in range(5, 9)),
        line(9, "aborted", "r", error_code="not_sent", message="signal SIGTERM", attempts=0),
        line(10, "rejected", "r", error_code="no_request", http_status=400, message="No request found"),
    ]
    ledger = write_ledger(tmp_path / "l.csv", lines)
    out = tmp_path / "run.html"
    assert run_command(add_parser, "report", str(ledger), "--html", str(out)) == 0
    messages = Page(out.read_text(encoding="utf-8")).of("messages")
    assert "No request found" in messages
    assert not any(text in messages for text in ("hash is empty", "repeats an earlier", "SIGTERM"))

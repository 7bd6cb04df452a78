"""The demo's HTML report in a real browser: headless Chromium (Debian's ``chromium``) renders it to
a PNG with no console message, and its DOM shows the title, the chart, the counts, and a hostile
server message as text.  Slow (the demo runs, the browser starts): ``make integration``.
"""

from __future__ import annotations

import csv
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from batch_override.report.run_report import build_report
from tests.binaries import debian_binary
from tests.support import REPO, cli_env

pytestmark = pytest.mark.integration

HOSTILE = '<script>document.title="pwned";console.error("pwned")</script><img src=x onerror=alert(1)>'
#: The flags of a quiet, offline, throw-away headless browser.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0",
)  # fmt: skip


def _chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = debian_binary("chromium", "chromium")
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    return subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def _console(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


def test_the_console_check_sees_what_a_page_logs(tmp_path: Path) -> None:
    """The control: a page that logs an error is caught, so silence below means no message."""
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><title>c</title><script>console.error("control")</script>')
    result = _chromium(tmp_path, page, "--dump-dom")
    assert any('"control"' in line for line in _console(result)), result.stderr


def _demo_ledger(tmp_path: Path) -> Path:
    """``make demo`` in a scratch copy of the checkout's data, its rejected rows' message made hostile."""
    for folder in ("sample_data", "jobs"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    demo = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py")],
        cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=120,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    ledger = tmp_path / "out" / "demo.ledger.csv"
    with open(ledger, newline="", encoding="utf-8") as fh:
        lines = list(csv.reader(fh))
    header = lines[0]
    message, outcome = header.index("message"), header.index("outcome")
    for line in lines[1:]:
        if line[outcome] == "rejected":  # many rows: the top messages list it
            line[message] = HOSTILE
    with open(ledger, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(lines)
    return ledger


def test_the_demos_report_renders_in_chromium_with_no_console_message(tmp_path: Path) -> None:
    ledger = _demo_ledger(tmp_path)
    page = tmp_path / "report.html"
    report = subprocess.run(
        [sys.executable, "-m", "batch_override", "report", str(ledger), "--html", str(page),
         "--retry-file", str(tmp_path / "retry.csv")],
        capture_output=True, text=True, env=cli_env(), timeout=60,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    summary = build_report(ledger).summary

    png = tmp_path / "report.png"
    shot = _chromium(tmp_path, page, "--window-size=1100,1800", f"--screenshot={png}")
    assert shot.returncode == 0, shot.stderr
    assert _console(shot) == []
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1100, 1800)
    assert png.stat().st_size > 20_000  # a drawn page, not a blank one

    dumped = _chromium(tmp_path, page, "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr
    assert _console(dumped) == []
    dom = dumped.stdout
    assert f"<title>batch-override report: run {summary.run_id}</title>" in dom
    assert re.search(r'<svg id="timeline"[^>]*>', dom)
    assert len(re.findall(r'<rect class="bar"', dom)) >= len([o for o, n in summary.outcomes.items() if n])
    for outcome, n in summary.outcomes.items():
        if n:
            assert re.search(rf'<tr data-name="{outcome}"><td>.*?{outcome}</td><td class="n">{n}</td>', dom)
    finished = sum(summary.outcomes.values())
    assert f"{finished} rows finished" in dom
    # The hostile message: text in the table, no element, no script run.
    assert '&lt;script&gt;document.title="pwned";console.error("pwned")&lt;/script&gt;' in dom
    assert "<script" not in dom and "<img" not in dom and "pwned</title>" not in dom
    assert 'href="retry.csv"' in dom

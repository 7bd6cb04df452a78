"""``make demo`` writes the same ledger and run log as before the package moved into stage folders.

The snapshots in ``tests/job/snapshots/`` were taken from ``make demo`` (then ``python -m
batch_override.demo``) at commit 97af032, the last commit before the stage move, and normalised by
:func:`normalise_ledger` and :func:`normalise_runlog`: what differs from one run to the next (run
id, times, the emulator's port, the checkout's path, the user and host, durations, rates, the
concurrency the auto meter settled on) is replaced by a placeholder; everything else (rows,
outcomes, error codes, statuses, attempts, messages, the carried columns, every key of the run log)
must match.  Two runs of the old demo gave identical normalised output, line order included; the
ledger is still compared in row order, so a change in which row finished first (concurrency) is not
a difference.  The trap: a 429 would add an attempt and a request, so a pacer that lets one through
fails this test; that is a change of behaviour, not noise.  Regenerate a snapshot only for an
intended change of the demo's data or of a file format, and say so in the commit.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import REPO

SNAPSHOTS = Path(__file__).parent / "snapshots"
LEDGER = Path("out") / "demo.ledger.csv"
RUNLOG = Path("out") / "demo.ledger.csv.runs.jsonl"
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

#: Run-log values that differ between runs of the same demo, by their path in the record.
_VARYING = {
    ("at",),
    ("run_id",),
    ("api_url",),  # the emulator's ephemeral port
    ("user_host",),
    ("summary", "run_id"),
    ("summary", "api_url"),
    ("summary", "duration_s"),
    ("summary", "requests_per_s"),
    ("summary", "concurrency", "mean_in_flight"),
    ("summary", "concurrency", "peak_in_flight"),
    ("summary", "concurrency", "limit"),
}
#: Run-log keys added since the snapshot (issue 19's estimate, issue 25's revised estimate): a new
#: key, not a changed one.
_ADDED_SINCE = {
    ("summary", "estimate"),
    ("summary", "estimate_s"),
    ("summary", "revised_estimate"),
    ("summary", "revised_estimate_s"),
}


def normalise_ledger(text: str) -> str:
    """The ledger's lines in row order, run ids and finish times replaced; quoting kept as written."""
    header, *lines = text.splitlines()
    columns = next(csv.reader([header]))
    row_at, run_at = columns.index("row"), columns.index("run_id")
    keyed = []
    for raw in lines:
        fields = next(csv.reader([raw]))
        normal = raw.replace(f'"{fields[run_at]}"', '"RUN_ID"') if fields[run_at] else raw
        keyed.append((int(fields[row_at]), _TIME.sub("TIME", normal)))
    return "\n".join([header, *(line for _, line in sorted(keyed))]) + "\n"


def _replace(record: dict[str, Any], path: tuple[str, ...]) -> None:
    *parents, leaf = path
    for key in parents:
        record = record.get(key, {})
    if leaf in record:
        record[leaf] = leaf.upper()


def normalise_runlog(text: str) -> str:
    """One JSON record a line, sorted keys, the values that differ between runs replaced."""
    out = []
    for line in text.splitlines():
        record = json.loads(line)
        for path in _VARYING:
            _replace(record, path)
        for *parents, leaf in _ADDED_SINCE:
            holder = record
            for key in parents:
                holder = holder.get(key, {})
            holder.pop(leaf, None)
        # The input's absolute path depends on the checkout; its place in the checkout does not.
        record["input"] = "/".join(Path(record["input"]).parts[-2:])
        # A fingerprint of the public demo key; kept out of the snapshot all the same.
        assert re.fullmatch(r"[0-9a-f]{12}", record["key_fingerprint"])
        record["key_fingerprint"] = "KEY_FINGERPRINT"
        out.append(json.dumps(record, sort_keys=True))
    return "\n".join(out) + "\n"


def test_the_demo_writes_the_ledger_and_run_log_it_wrote_before_the_stage_move(tmp_path: Path) -> None:
    # The demo reads jobs/ and sample_data/ from, and writes out/ to, its working directory: a
    # temporary one that sees the checkout's data, so the test never touches the checkout's out/.
    for name in ("jobs", "sample_data"):
        (tmp_path / name).symlink_to(REPO / name, target_is_directory=True)
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    ledger = normalise_ledger((tmp_path / LEDGER).read_text(encoding="utf-8"))
    runlog = normalise_runlog((tmp_path / RUNLOG).read_text(encoding="utf-8"))
    assert ledger == (SNAPSHOTS / "demo-ledger.snapshot.csv").read_text(encoding="utf-8")
    assert runlog == (SNAPSHOTS / "demo-runlog.snapshot.jsonl").read_text(encoding="utf-8")
    assert "demo-key" not in ledger + runlog

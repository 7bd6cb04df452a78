"""The run log beside a ledger (``LEDGER.runs.jsonl``): who ran what, against which server, with which key.

Resume trusts a ledger line only when its run was made against the same API URL with the same
key (by fingerprint): a rehearsal against the emulator never makes a production run skip rows.

Append safety: every record starts on a fresh line.  A torn last line (a kill or ENOSPC while
appending) is cut off before the next append, as the ledger's is, unless it is a whole record that
lost only its newline (then the newline is added); a reader that meets a torn record glued to the
next one (written by an older version) still reads the one after it.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from ..files import complete_end


def runlog_path(ledger: Path) -> Path:
    """The run log beside the ledger's real file: a symlink and its target share one log."""
    real = ledger.resolve()
    return real.with_name(real.name + ".runs.jsonl")


def normalise_url(url: str) -> str:
    return url.rstrip("/")


def user_at_host() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def append(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one line, on a fresh line whatever the log's last write left."""
    with open(path, "a+b") as fh:
        _end_on_a_fresh_line(path, fh)
        fh.write((json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def _end_on_a_fresh_line(path: Path, fh: BinaryIO) -> None:
    """Cut a torn last line; a whole record that lost only its newline gets it back instead."""
    size = fh.seek(0, os.SEEK_END)
    if size == 0:
        return
    fh.seek(size - 1)
    if fh.read(1) == b"\n":
        return
    keep = complete_end(path)
    fh.seek(keep)
    if _record(fh.read(size - keep).decode("utf-8", errors="replace")) is not None:
        fh.write(b"\n")
    else:
        fh.truncate(keep)


def _record(line: str) -> dict[str, Any] | None:
    """The run log record of ``line``, else None (torn, foreign).  A line that is a torn record
    glued to a whole one yields the whole one: only the torn record is lost."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
        text = line.rstrip()
        decoder = json.JSONDecoder()
        start = text.find("{", 1)
        while start > 0 and record is None:
            with contextlib.suppress(ValueError):
                found, end = decoder.raw_decode(text, start)
                record = found if end == len(text) else None
            start = text.find("{", start + 1)
    if isinstance(record, dict) and isinstance(record.get("run_id"), str):
        return record
    return None


def records(path: Path) -> Iterator[dict[str, Any]]:
    """The run log's records, oldest first; a torn line (a kill mid-write) or a foreign one is
    skipped, and a missing log has none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if (record := _record(line)) is not None:
                    yield record
    except FileNotFoundError:
        return


def trusted_runs(path: Path, api_url: str, key_fingerprint: str) -> dict[str, float]:
    """Run ids made against ``api_url`` with the same key, oldest first, with their start times
    (unix seconds; NaN when unknown)."""
    wanted = normalise_url(api_url)
    out: dict[str, float] = {}
    for record in records(path):
        if (
            normalise_url(str(record.get("api_url", ""))) == wanted
            and record.get("key_fingerprint") == key_fingerprint
            and record["run_id"] not in out
        ):
            started = parse_time(record.get("at"))
            out[record["run_id"]] = math.nan if started is None else started
    return out


def parse_time(text: object) -> float | None:
    """Unix seconds of an ISO 8601 time as the run log and the ledger write it; None if not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(slots=True)
class RunRecords:
    """What the run log says of one run: its ``started`` and ``finished`` records, if any."""

    started: dict[str, Any] | None = None
    finished: dict[str, Any] | None = None

    @property
    def first(self) -> dict[str, Any]:
        """The ``started`` record, else the ``finished`` one, else empty."""
        return self.started or self.finished or {}


def run_records(ledger: Path) -> dict[str, RunRecords]:
    """The run log's records by run id, in the order the runs started; a missing or unreadable
    log is empty, a torn or foreign line is skipped."""
    out: dict[str, RunRecords] = {}
    try:
        for record in records(runlog_path(ledger)):
            entry = out.setdefault(record["run_id"], RunRecords())
            if record.get("event") == "started":
                entry.started = record
            elif record.get("event") == "finished":
                entry.finished = record
    except OSError:
        return {}
    return out

"""The run log beside a ledger (``LEDGER.runs.jsonl``): who ran what, against which server, with which key.

Resume trusts a ledger line only when its run was made against the same API URL with the same
key (by fingerprint): a rehearsal against the emulator never makes a production run skip rows.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


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
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def records(path: Path) -> Iterator[dict[str, Any]]:
    """The run log's records, oldest first; a torn line (a kill mid-write) or a foreign one is
    skipped, and a missing log has none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("run_id"), str):
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

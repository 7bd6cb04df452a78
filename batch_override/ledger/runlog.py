"""The run log beside a ledger (``LEDGER.runs.jsonl``): who ran what, against which server, with which key.

Resume trusts a ledger line only when its run was made against the same API URL with the same
key (by fingerprint): a rehearsal against the emulator never makes a production run skip rows.

The format is owned here: one JSON object a line, a :class:`RunRecord` (``started``, then
``finished`` with a :class:`RunSummary`).  Every writer and reader goes through those two types;
their fields are the keys, so a key added to :meth:`Summary.to_dict` (the CLI's output) does not
reach the file by accident.  The trap: the log is also written by other versions and by hand,
so :meth:`RunRecord.from_json` ignores keys it does not know and gives missing ones None.

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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from ..files import complete_end
from ..summary import Summary
from .location import open_regular, utf8_line

STARTED = "started"
FINISHED = "finished"


def _text(value: object) -> str:
    """A logged value as text (a number written by hand included)."""
    return value if isinstance(value, str) else "" if value is None else str(value)


def _int(value: object) -> int:
    """A logged number, 0 when absent or not a number (the log is written by other versions too)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        return int(value)
    except ValueError:
        return 0


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _texts(value: object) -> dict[str, str] | None:
    return {k: v for k, v in value.items() if isinstance(v, str)} if isinstance(value, dict) else None


def _summary(value: object) -> RunSummary | None:
    return RunSummary.from_json(value) if isinstance(value, dict) else None


#: How a value is read, by its field's annotation (an optional field reads None as None).
_READERS: dict[str, Callable[[object], Any]] = {
    "str": _text,
    "int": _int,
    "float": _number,
    "bool": bool,
    "Mapping[str, int]": _dict,
    "Mapping[str, Any]": _dict,
    "Mapping[str, str]": _texts,
    "RunSummary": _summary,
}
_T = TypeVar("_T")


def _from_json(cls: type[_T], obj: Mapping[str, Any]) -> _T:
    """An instance of the dataclass ``cls`` from the keys of ``obj`` named like its fields: an
    unknown key is ignored, a missing one is None (an optional field) or empty (0, "", False)."""
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        kind = str(f.type)
        value = obj.get(f.name)
        optional = kind.endswith(" | None")
        values[f.name] = None if optional and value is None else _READERS[kind.removesuffix(" | None")](value)
    return cls(**values)


def _to_json(record: object) -> dict[str, Any]:
    """The fields of the dataclass ``record`` as JSON holds them (a Mapping as a dict)."""
    out: dict[str, Any] = {}
    for f in fields(record):  # type: ignore[arg-type]
        value = getattr(record, f.name)
        out[f.name] = dict(value) if isinstance(value, Mapping) else value
    return out


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A ``finished`` record's ``summary``: the run's figures as it ended.

    Its keys are those :meth:`Summary.to_dict` had when the run log began recording it; readers
    use ``exit_code`` (None: not logged), ``stop_reason``, ``duration_s`` (None: not logged),
    ``throttled_429`` and ``not_attempted``.
    """

    run_id: str
    ledger: str | None
    api_url: str
    dry_run: bool
    rows: int
    outcomes: Mapping[str, int]
    error_codes: Mapping[str, int]
    requests: int
    throttled_429: int
    duration_s: float | None
    requests_per_s: float | None
    not_attempted: int
    exit_code: int | None
    stop_reason: str
    concurrency: Mapping[str, Any]
    #: What the run said before sending (requests, pace, duration); "" and None before it did.
    estimate: str
    estimate_s: float | None
    #: Said again once the server's window was known ("" and None when the first was not a range).
    revised_estimate: str = ""
    revised_estimate_s: float | None = None

    @classmethod
    def of(cls, summary: Summary) -> RunSummary:
        return cls.from_json(summary.to_dict())

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RunSummary:
        return _from_json(cls, obj)

    def to_json(self) -> dict[str, Any]:
        return _to_json(self)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One line of the run log: a run ``started`` (after its input was read, before anything
    was sent) or ``finished`` (with its :class:`RunSummary`).

    Every field but ``event`` and ``run_id`` is None when a line does not have it (an older
    version, a hand-written line); :meth:`to_json` writes every key, ``summary`` only when set.
    """

    event: str
    run_id: str
    api_url: str | None = None
    key_fingerprint: str | None = None
    tool_version: str | None = None
    user_host: str | None = None
    #: A resolved path, or "<stdin>", "<DataFrame>", "<pyarrow.Table>".
    input: str | None = None
    input_sha256: str | None = None
    input_rows: int | None = None
    #: The input's own names of the hash, classification and media columns (the retry file's).
    columns: Mapping[str, str] | None = None
    dry_run: bool | None = None
    #: An object-store input's version read (ETag, version id or generation); only for those.
    input_object: Mapping[str, str] | None = None
    #: ISO 8601 UTC, as the ledger's ``finished_at``.
    at: str | None = None
    summary: RunSummary | None = None

    @classmethod
    def from_json(cls, obj: object) -> RunRecord | None:
        """The record of a parsed line; None for one that is not a run-log record."""
        if not isinstance(obj, dict) or not isinstance(obj.get("run_id"), str):
            return None
        return _from_json(cls, obj)

    def to_json(self) -> dict[str, Any]:
        out = _to_json(self)
        if self.input_object is None:
            del out["input_object"]
        if self.summary is None:
            del out["summary"]
        else:
            out["summary"] = self.summary.to_json()
        return out


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


def append(path: Path, record: RunRecord) -> None:
    """Append ``record`` as one line, on a fresh line whatever the log's last write left.
    A run log that is a special file raises :class:`~.errors.LedgerError`, unwritten."""
    fd = open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, "the ledger's run log")
    with open(fd, "a+b") as fh:
        _end_on_a_fresh_line(path, fh)
        fh.write((json.dumps(record.to_json(), sort_keys=True) + "\n").encode("utf-8"))
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
    """The run log's records as parsed JSON, oldest first; a torn line (a kill mid-write) or a
    foreign one is skipped, and a missing log has none.  :func:`read_records` types them.

    Raises :class:`~.errors.LedgerError` for a run log that is a special file, or a whole line
    that is not UTF-8 (named; the job writes ASCII, so only an edit puts one there).  The trap:
    a torn last line is not a whole line, and is skipped whatever its bytes.
    """
    try:
        fd = open_regular(path, os.O_RDONLY, "the ledger's run log")
    except FileNotFoundError:
        return
    with open(fd, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            whole = raw.endswith(b"\n")
            line = utf8_line(path, raw, number) if whole else raw.decode("utf-8", errors="replace")
            if (record := _record(line)) is not None:
                yield record


def read_records(path: Path) -> Iterator[RunRecord]:
    """The run log's :class:`RunRecord` s, oldest first (see :func:`records`)."""
    for obj in records(path):
        record = RunRecord.from_json(obj)
        if record is not None:
            yield record


def trusted_runs(path: Path, api_url: str, key_fingerprint: str) -> dict[str, float]:
    """Run ids made against ``api_url`` with the same key, oldest first, with their start times
    (unix seconds; NaN when unknown)."""
    wanted = normalise_url(api_url)
    out: dict[str, float] = {}
    for record in read_records(path):
        if (
            normalise_url(record.api_url or "") == wanted
            and record.key_fingerprint == key_fingerprint
            and record.run_id not in out
        ):
            started = parse_time(record.at)
            out[record.run_id] = math.nan if started is None else started
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

    started: RunRecord | None = None
    finished: RunRecord | None = None

    @property
    def first(self) -> RunRecord | None:
        """The ``started`` record, else the ``finished`` one."""
        return self.started or self.finished


def run_records(ledger: Path) -> dict[str, RunRecords]:
    """The run log's records by run id, in the order the runs started; a missing or unreadable
    log is empty, a torn or foreign line is skipped."""
    out: dict[str, RunRecords] = {}
    try:
        for record in read_records(runlog_path(ledger)):
            entry = out.setdefault(record.run_id, RunRecords())
            if record.event == STARTED:
                entry.started = record
            elif record.event == FINISHED:
                entry.finished = record
    except OSError:
        return {}
    return out

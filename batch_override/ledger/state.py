"""Resume's state beside the ledger: the resume index of one trusted scope, kept as a cache.

Without it every run reads the whole ledger to learn what is done, so a nightly run's time and
memory grow with the number of past nights.  The state file holds what :func:`resume.read_entries`
would build from the ledger's first ``covered`` bytes for one scope (an API URL and a key
fingerprint: the runs resume trusts, see :func:`runlog.trusted_runs`): one 37-byte entry and a
2-byte first run per key.  A run loads it, reads only the ledger's lines past ``covered`` (its
own lines, or what another version or a killed run appended), and at its end replaces it
atomically with one covering the ledger's last complete line.  Cost: the new lines, plus
39 bytes read per distinct key; memory: 37 + 4 (lookup prefix) + 2 bytes per distinct key.

File: ``LEDGER.state-<scope>`` beside the ledger's real file (a symlink shares it): a magic line,
a JSON header line, then the entries and the first runs.  The header names the bytes it covers,
a SHA-256 of the ledger's first 64 KiB and of the 64 KiB that end at ``covered``, the trusted
run ids the ordinals stand for, and a SHA-256 of the payload.

The trap it avoids: a cache that claims more than the ledger says would make a run skip a row
nobody sent.  So the state is only ever a cache: it is used when every check holds (the ledger
is at least ``covered`` long with the same bytes there, the trusted runs begin with its runs,
the payload is whole) and rebuilt from the ledger otherwise (deleted, truncated, corrupted,
another ledger moved in, the run log edited).  It is written only from lines read back from the
ledger, after they were written, so a kill -9 at any moment leaves the old state (covering less:
the next run reads more) or the new one, never one ahead of the ledger.  An older version of the
job ignores the file and appends lines: the next run reads those past ``covered``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import LedgerError
from ..files import atomic_writer
from .format import read_header
from .latest import ENTRY_DTYPE, ENTRY_SIZE
from .location import open_regular
from .reader import LedgerFile
from .resume import MAX_RUNS, ResumeIndex, read_entries
from .runlog import normalise_url

log = logging.getLogger("batch_override")

MAGIC = b"batch-override resume state 1\n"
#: Bytes of the ledger hashed at its start and before ``covered``: another file (a ledger moved
#: in, rewritten, cut back and appended again) differs there.
IDENTITY_BYTES = 1 << 16
#: An entry's key (its first 34 bytes) as a field: keys sort as the entries do.
_KEY = np.dtype({"names": ["key"], "formats": ["S34"], "offsets": [0], "itemsize": ENTRY_SIZE})
FirstRuns = npt.NDArray[np.uint16]


def scope_of(api_url: str, key_fingerprint: str) -> str:
    """The name of a trusted scope in the state file's name (16 hex digits)."""
    text = f"{normalise_url(api_url)}\n{key_fingerprint}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def state_path(ledger: Path, scope: str) -> Path:
    """The state file of ``scope`` beside the ledger's real file."""
    real = ledger.resolve()
    return real.with_name(f"{real.name}.state-{scope}")


@dataclass(slots=True)
class ResumeState:
    """The latest entry and first run of each key among ``runs``' lines in ``[0, covered)``."""

    entries: npt.NDArray[np.bytes_]
    first_run: FirstRuns
    runs: list[str]
    covered: int
    #: Where it came from: "state" (the file, plus any newer lines) or "ledger" (rebuilt).
    source: str = "ledger"

    def index(self, started: dict[str, float], *, first_seen: bool) -> ResumeIndex:
        """The :class:`ResumeIndex` of this state (``started``: each run's start time)."""
        if not first_seen:
            return ResumeIndex(self.entries)
        times = np.array([started.get(r, np.nan) for r in self.runs], np.float64)
        return ResumeIndex(self.entries, self.first_run, times)

    def read_past(self, ledger: LedgerFile, runs: Sequence[str]) -> None:
        """Take in the ledger's complete lines past ``covered`` (``runs`` begins with ours)."""
        if ledger.end > self.covered:
            newer, firsts = read_entries(ledger, runs, first_run=True, start=self.covered)
            assert firsts is not None
            self.entries, self.first_run = merge(self.entries, self.first_run, newer, firsts)
        self.runs, self.covered = list(runs), ledger.end


def merge(
    entries: npt.NDArray[np.bytes_], firsts: FirstRuns, newer: npt.NDArray[np.bytes_], newer_firsts: FirstRuns
) -> tuple[npt.NDArray[np.bytes_], FirstRuns]:
    """Two sorted sets of latest entries as one: per key the byte-greatest entry (the later run's,
    as :mod:`latest` keeps it) and the smaller first run.  ``newer`` is usually small."""
    if not len(newer):
        return entries, firsts
    keys = entries.view(_KEY)["key"]
    wanted = newer.view(_KEY)["key"]
    at = np.searchsorted(keys, wanted)
    found = at < len(entries)
    found[found] = keys[at[found]] == wanted[found]
    where = at[found]
    later = newer[found] > entries[where]
    entries = entries.copy()
    firsts = firsts.copy()
    entries[where[later]] = newer[found][later]
    firsts[where] = np.minimum(firsts[where], newer_firsts[found])
    fresh = ~found
    return np.insert(entries, at[fresh], newer[fresh]), np.insert(firsts, at[fresh], newer_firsts[fresh])


def load(path: Path, scope: str, runs: Sequence[str]) -> ResumeState:
    """Resume's state for ``runs`` (the trusted runs, oldest first) on the ledger at ``path``:
    the state file's if it fits the ledger, plus the lines past it; else rebuilt from the ledger."""
    runs = list(runs)
    if read_header(path) is None:
        return ResumeState(np.empty(0, ENTRY_DTYPE), np.empty(0, np.uint16), runs, 0)
    ledger = LedgerFile.open(path)
    state = _cached(path, state_path(path, scope), runs) if len(runs) <= MAX_RUNS else None
    if state is not None:
        state.read_past(ledger, runs)
        return state
    kept = runs[-MAX_RUNS:]
    entries, firsts = read_entries(ledger, kept, first_run=True)
    assert firsts is not None
    return ResumeState(entries, firsts, kept, ledger.end)


def save(path: Path, scope: str, state: ResumeState) -> None:
    """Replace the state file with ``state`` (atomically: the old one or the new one, never a mix)."""
    if len(state.runs) > MAX_RUNS:
        return
    entries = np.ascontiguousarray(state.entries).tobytes()
    firsts = np.ascontiguousarray(state.first_run, "<u2").tobytes()
    payload = hashlib.sha256(entries)
    payload.update(firsts)
    header = {
        "covered": state.covered,
        "entries": len(state.entries),
        "identity": _identity(path, state.covered),
        "runs": state.runs,
        "sha256": payload.hexdigest(),
    }
    with atomic_writer(state_path(path, scope)) as fh:
        fh.write(MAGIC)
        fh.write(json.dumps(header, sort_keys=True).encode("utf-8") + b"\n")
        fh.write(entries)
        fh.write(firsts)


def _identity(path: Path, covered: int) -> list[str]:
    """SHA-256 of the ledger's first bytes and of those that end at ``covered``."""
    with open(path, "rb") as fh:
        head = fh.read(min(covered, IDENTITY_BYTES))
        start = max(0, covered - IDENTITY_BYTES)
        fh.seek(start)
        tail = fh.read(covered - start)
    if len(tail) != covered - start:
        return []
    return [hashlib.sha256(head).hexdigest(), hashlib.sha256(tail).hexdigest()]


def _cached(ledger: Path, path: Path, runs: list[str]) -> ResumeState | None:
    """The state file's content if every check holds, else None (and why, at DEBUG)."""
    try:  # never open() a FIFO put there: it would block; a special file is rebuilt over
        with os.fdopen(open_regular(path, os.O_RDONLY, "the resume state"), "rb") as fh:
            state, why = _read(fh, ledger, runs)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, LedgerError) as exc:
        state, why = None, f"unreadable ({exc})"
    if state is None:
        log.info("resume state %s: %s; rebuilding it from the ledger", path.name, why)
    return state


def _read(fh: Any, ledger: Path, runs: list[str]) -> tuple[ResumeState | None, str]:
    if fh.readline() != MAGIC:
        return None, "not a resume state"
    header = json.loads(fh.readline())
    covered, count, known = int(header["covered"]), int(header["entries"]), list(header["runs"])
    if covered > ledger.stat().st_size or _identity(ledger, covered) != header["identity"]:
        return None, "made for another ledger, or for this one before it was cut back or replaced"
    if runs[: len(known)] != known:
        return None, "made for other trusted runs (the run log changed)"
    entries = fh.read(count * ENTRY_SIZE)
    firsts = fh.read(count * 2)
    payload = hashlib.sha256(entries)
    payload.update(firsts)
    if len(firsts) != count * 2 or fh.read(1) or payload.hexdigest() != header["sha256"]:
        return None, "incomplete or damaged"
    array = np.frombuffer(entries, ENTRY_DTYPE).copy()
    first = np.frombuffer(firsts, "<u2").astype(np.uint16)
    return ResumeState(array, first, known, covered, source="state"), ""


def refresh(path: Path, scope: str, state: ResumeState, runs: Sequence[str]) -> None:
    """At a run's end: take in the lines the run wrote (and any other new ones) and save the state.

    Never fails the run: a state that cannot be written is only a slower next run (a warning)."""
    if len(runs) > MAX_RUNS:
        return  # ordinals would shift: every run rebuilds (see resume.MAX_RUNS)
    try:
        state.read_past(LedgerFile.open(path), runs)
        save(path, scope, state)
    except (OSError, LedgerError) as exc:
        # The old state still fits the ledger (which only grew): the next run reads more lines.
        log.warning("cannot save the resume state beside %s (%s)", path, exc)

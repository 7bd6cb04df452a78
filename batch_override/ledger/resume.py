"""Resume: which overrides a ledger already settled, as one compact sorted index.

The index holds, per (media, hash, classification), the verdict of its latest *decisive* line
(one that says what the server holds: done, rejected, or worth retrying) among the runs resume
trusts: runs made against the same API URL with the same key (see :func:`runlog.trusted_runs`),
so a rehearsal against the emulator never makes a production run skip a row.

An entry is 37 bytes: the 34-byte key of :mod:`keys`, the trusted run's ordinal (2 bytes,
big-endian) and the :class:`Prior`.  :mod:`plan` looks rows up in it; :func:`trusted_lines` is the
same rule for a reader that wants the lines themselves (``read_ledger(latest=True)``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..input.blocks import BLOCK_SIZE
from ..keys import CLASS_CODES, MEDIA_CODES, KeyArray, hex_to_bytes
from ..outcome import DONE_OUTCOMES, RETRY_OUTCOMES, Outcome
from .format import read_header
from .latest import ENTRY_DTYPE, LatestEntries
from .reader import LedgerFile


class Prior(enum.IntEnum):
    """What a trusted earlier ledger line says of a (media, hash, classification)."""

    NONE = 0
    DONE = 1
    REJECTED = 2
    RETRY = 3


_PRIOR_OF = {
    **{o.value: Prior.DONE for o in DONE_OUTCOMES},
    Outcome.REJECTED.value: Prior.REJECTED,
    **{o.value: Prior.RETRY for o in RETRY_OUTCOMES},
}
_DECISIVE = pa.array(list(_PRIOR_OF))
_PRIOR_OF_CODE = np.array([int(p) for p in _PRIOR_OF.values()], np.uint8)
#: The ledger columns resume reads.
WANTED = ("media", "hash", "classification", "outcome", "run_id")


@dataclass(slots=True)
class ResumeIndex:
    """The latest trusted ledger verdict per (media, hash, classification), sorted for lookup.

    One 37-byte entry per key and its 4-byte prefix (plus 2 bytes per key with ``first_run``),
    so a ledger of millions of lines resumes in little memory: see :func:`load_resume_index`.
    """

    entries: npt.NDArray[np.bytes_]
    #: The ordinal of the first trusted run that wrote a line for the key (``--give-up-after``).
    first_run: npt.NDArray[np.uint16] | None = None
    #: Unix start time of each trusted run, by ordinal.
    run_started: npt.NDArray[np.float64] | None = None

    #: The first 4 bytes of each entry as a big-endian integer: searching these is much faster
    #: than comparing 37-byte strings (one machine word against bytes), and the few entries that
    #: share one are scanned after.
    prefix: npt.NDArray[np.uint32] = field(default_factory=lambda: np.empty(0, np.uint32))

    def __post_init__(self) -> None:
        if len(self.prefix) != len(self.entries):
            self.prefix = _prefix(self.entries.view(np.uint8).reshape(-1, 37))

    @classmethod
    def empty(cls) -> ResumeIndex:
        return cls(np.empty(0, ENTRY_DTYPE))

    def __len__(self) -> int:
        return len(self.entries)

    def _scan(
        self, keys: KeyArray
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.intp]]:
        """For each key: the prior of the key, the prior of the same (media, hash) with the other
        classification, and the entry position of the key (-1 when absent)."""
        k = len(keys)
        same = np.zeros(k, np.uint8)
        other = np.zeros(k, np.uint8)
        where = np.full(k, -1, np.intp)
        n = len(self.entries)
        if n == 0 or k == 0:
            return same, other, where
        raw = self.entries.view(np.uint8).reshape(n, 37)
        probe = keys.view(np.uint8).reshape(k, 34)
        wanted = _prefix(probe)
        pos = np.searchsorted(self.prefix, wanted)
        active = np.arange(k)
        while len(active):
            at = pos[active]
            inside = at < n
            active, at = active[inside], at[inside]
            sharing = self.prefix[at] == wanted[active]
            active, at = active[sharing], at[sharing]
            if not len(active):
                break
            entry = raw[at]
            item = (entry[:, :33] == probe[active, :33]).all(axis=1)
            exact = item & (entry[:, 33] == probe[active, 33])
            same[active[exact]] = entry[exact, 36]
            where[active[exact]] = at[exact]
            flipped = item & ~exact
            other[active[flipped]] = entry[flipped, 36]
            pos[active] += 1
        return same, other, where

    def lookup(self, keys: KeyArray) -> npt.NDArray[np.uint8]:
        """The :class:`Prior` of each key (NONE when the ledger has no trusted line for it)."""
        return self._scan(keys)[0]

    def lookup_both(self, keys: KeyArray) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """The prior of each key and of the same (media, hash) with the other classification."""
        same, other, _ = self._scan(keys)
        return same, other

    def first_seen_of(self, keys: KeyArray) -> npt.NDArray[np.float64]:
        """When each key first appeared in the ledger (its first run's start; NaN: unknown)."""
        if self.first_run is None or self.run_started is None or len(self.entries) == 0:
            return np.full(len(keys), np.nan)
        where = self._scan(keys)[2]
        found = where >= 0
        out = np.full(len(keys), np.nan)
        out[found] = self.run_started[self.first_run[where[found]]]
        return out


def _prefix(raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    """The first 4 bytes of each row as a big-endian uint32 (same order as the bytes)."""
    # Read in place as a field of each row: one pass, a third of the time of copying them out first.
    head = np.dtype({"names": ["head"], "formats": [">u4"], "offsets": [0], "itemsize": raw.shape[1]})
    rows: npt.NDArray[Any] = np.ascontiguousarray(raw).reshape(-1).view(head)
    return rows["head"].astype(np.uint32)


#: At most this many trusted runs are told apart by resume (2 bytes of run ordinal per entry).
MAX_RUNS = 65_535


def load_resume_index(path: Path, trusted_runs: dict[str, float], *, first_seen: bool = False) -> ResumeIndex:
    """The latest line per (media, hash, classification) among the runs the caller trusts.

    The ledger is streamed; each decisive line becomes a 37-byte entry (key, run ordinal,
    verdict), kept in buckets by hash and sorted one bucket at a time (:mod:`latest`), so memory
    stays at ~40 bytes per line at the peak (42 measured on 4M lines) and 37 per distinct key
    after (+4 for the lookup prefix).  A key has at most
    one decisive line per run (a run sends each key once), so the entry of the latest run is
    the key's latest line; the trap: should a run have written two decisive lines for a key
    (a hand-edited ledger), the greater verdict wins (retry over rejected over done), not the
    later line.  With ``first_seen`` the first run of each key is kept too (2 bytes per key).
    """
    if not trusted_runs or read_header(path) is None:
        return ResumeIndex.empty()
    runs = list(trusted_runs)[-MAX_RUNS:]
    ledger = LedgerFile.open(path)
    array, first_run = read_entries(ledger, runs, first_run=first_seen)
    started = np.array([trusted_runs[r] for r in runs], np.float64) if first_seen else None
    return ResumeIndex(array, first_run, started)


def read_entries(
    ledger: LedgerFile, runs: Sequence[str], *, first_run: bool, start: int = 0
) -> tuple[npt.NDArray[np.bytes_], npt.NDArray[np.uint16] | None]:
    """Each key's latest entry among the decisive lines of ``runs`` (ordinals: positions in
    ``runs``), from the ledger's lines at byte ``start`` (a line's start) up to its last complete
    line; with ``first_run`` the smallest ordinal of each key beside it."""
    run_values = pa.array(list(runs), pa.string())
    entries = LatestEntries(_estimated_lines(ledger.path, start))
    # Threads: the job's own ledger has no ragged rows to locate, so pyarrow may parse blocks
    # ahead in parallel while this loop turns the previous one into entries (in blocks twice the
    # usual size: fewer, larger batches for the threads).
    for batch in ledger.blocks(WANTED, block_size=2 * BLOCK_SIZE, ahead=True, start=start):
        block = _entries(batch, run_values)
        if block is not None:
            entries.add(block)
    return entries.finish(first_run=first_run)


def _entries(batch: pa.RecordBatch, run_values: pa.Array) -> npt.NDArray[np.bytes_] | None:
    """The 37-byte entries of ``batch``'s trusted decisive lines (None: it has none)."""
    coded = _code_lines(batch, run_values)
    keep = coded.keep
    k = int(np.count_nonzero(keep))
    if k == 0:
        return None
    raw = np.empty((k, 37), np.uint8)
    run, outcome, media, cls = coded.run, coded.outcome, coded.media, coded.cls
    if k < len(keep):  # usually every line is decisive and trusted: no copies then
        run, outcome, media, cls = run[keep], outcome[keep], media[keep], cls[keep]
        hashes = batch["hash"].filter(pa.array(keep))
    else:
        hashes = batch["hash"]
    raw[:, :32] = hex_to_bytes(hashes)
    raw[:, 32] = media + 1
    raw[:, 33] = cls + 1
    raw[:, 34] = run >> 8
    raw[:, 35] = run & 0xFF
    raw[:, 36] = _PRIOR_OF_CODE[outcome]
    return raw.view(ENTRY_DTYPE).reshape(k)


def trusted_lines(batch: pa.RecordBatch | pa.Table, runs: Sequence[str]) -> npt.NDArray[np.bool_]:
    """Which lines of ``batch`` (with :data:`WANTED` columns) resume would trust from ``runs``:
    a decisive outcome, a trusted run, a known media and classification, a 64-character hash."""
    return _code_lines(batch, pa.array(list(runs)[-MAX_RUNS:], pa.string())).keep


class _Coded(NamedTuple):
    run: npt.NDArray[np.int32]
    outcome: npt.NDArray[np.int32]
    media: npt.NDArray[np.int32]
    cls: npt.NDArray[np.int32]
    keep: npt.NDArray[np.bool_]


def _code_lines(batch: pa.RecordBatch | pa.Table, run_values: pa.Array) -> _Coded:
    run = _codes(batch["run_id"], run_values)
    outcome = _codes(batch["outcome"], _DECISIVE)
    media = _codes(batch["media"], MEDIA_CODES)
    cls = _codes(batch["classification"], CLASS_CODES)
    # A 64-character hash: the job wrote only validated ones (a hand-edited line that is not hex
    # gives a key that matches nothing, which is harmless).
    length = pc.binary_length(batch["hash"]).to_numpy(zero_copy_only=False)
    keep = (run >= 0) & (outcome >= 0) & (media >= 0) & (cls >= 0) & (length == 64)
    return _Coded(run, outcome, media, cls, keep)


def _estimated_lines(path: Path, start: int = 0) -> int:
    """About how many lines the ledger has past ``start`` (from its size and a MiB of lines):
    it sizes the buckets of :class:`LatestEntries` (a wrong guess costs speed, not correctness)."""
    with open(path, "rb") as fh:
        fh.seek(start)
        head = fh.read(1 << 20)
    per_line = len(head) / max(1, head.count(b"\n"))
    return int(max(0, path.stat().st_size - start) / per_line * 1.02) + 1024


def _codes(values: pa.Array | pa.ChunkedArray, vocabulary: pa.Array) -> npt.NDArray[np.int32]:
    """0-based positions of ``values`` in ``vocabulary``; -1 where absent."""
    sole = _sole_value(values)
    if sole is not None:
        return np.full(len(values), pc.index(vocabulary, sole).as_py(), np.int32)
    found = pc.fill_null(pc.index_in(values, value_set=vocabulary), -1)
    return np.asarray(found.to_numpy(zero_copy_only=False), np.int32)


def _sole_value(values: pa.Array | pa.ChunkedArray) -> str | None:
    """The one value every cell of a text column holds, or None (cells differ, or a null).

    A block of a ledger mostly repeats its run, media and outcome.  Checked on the bytes: every
    cell as long as the first, and the characters repeating with that period, which costs a
    tenth of looking each cell up in a hash table (``index_in``).
    """
    if not isinstance(values, pa.Array) or not pa.types.is_string(values.type) or values.null_count:
        return None
    n = len(values)
    if n == 0:
        return None
    offsets = np.frombuffer(values.buffers()[1], np.int32)[values.offset : values.offset + n + 1]
    width = int(offsets[1] - offsets[0])
    if int(offsets[-1] - offsets[0]) != n * width or not (np.diff(offsets) == width).all():
        return None
    text = np.frombuffer(values.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    if width and not np.array_equal(text[width:], text[:-width]):
        return None
    return str(values[0].as_py())

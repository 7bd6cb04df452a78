"""One pass over a ledger for ``report``: per-run counts, and per line what ``--run all`` needs.

Memory: per-run counts and the retry rows' line numbers; with ``per_line`` (``--run all``) also
about 50 bytes a line, 130 at the peak of the sort in :func:`state_lines` (a 10-million-line
ledger needs ~1.3 GB).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..domain import CLASSIFICATIONS, HASH_PATTERN, MEDIA
from ..keys import KEY_DTYPE, KeyArray, make_keys
from ..ledger.reader import LedgerFile
from ..outcome import DECISIVE_OUTCOMES, RETRY_OUTCOMES

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
_RETRY_SET = pa.array(sorted(o.value for o in RETRY_OUTCOMES))


class Codes:
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


@dataclass(slots=True)
class Scan:
    """Everything one pass over the ledger learns, per run and (for ``all``) per line."""

    lines: int = 0
    last_run: str | None = None
    runs: Codes = field(default_factory=Codes)
    outcomes: Codes = field(default_factory=Codes)
    error_codes: Codes = field(default_factory=Codes)
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


def scan_ledger(ledger: LedgerFile, per_line: bool) -> Scan:
    scan = Scan()
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
    scan: Scan, table: pa.Table, outcomes: npt.NDArray[np.int32], codes: npt.NDArray[np.int32]
) -> None:
    """Per line: the override's key, outcome and error code (34 + 8 bytes a line)."""
    media, hashes, classes = (table[c].combine_chunks() for c in ("media", "hash", "classification"))
    proper = pc.and_(
        pc.and_(
            pc.match_substring_regex(hashes, HASH_PATTERN),
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


def state_lines(scan: Scan) -> npt.NDArray[np.int64]:
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

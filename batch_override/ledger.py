"""The ledger: one CSV line per input row with its outcome, appended as each row finishes.

Contract:
- Every line is complete and flushed when its row finishes; the file is fsynced at least every
  ``fsync_interval`` seconds and on close, so a crash loses at most the lines the kernel had not
  written, and a kill leaves at most one torn last line, which the next run cuts off.
- No field contains a line break (they are folded to spaces), so "a line" is "a record" and
  ``pandas.read_csv(ledger)`` reads it with no options.
- A ledger accumulates runs under one header; a row's state is its latest line.
- Text cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or CR)
  get a leading apostrophe, unless ``neutralize`` is off.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Full, Queue
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .csvblocks import file_batches
from .errors import LedgerError, LedgerLocked, first_line
from .keys import CLASS_CODES, MEDIA_CODES, GrowableKeys, hex_to_bytes
from .outcome import DONE_OUTCOMES, Outcome
from .plan import ENTRY_DTYPE, Prior, ResumeIndex

COLUMNS = (
    "row", "media", "hash", "classification", "outcome", "error_code",
    "http_status", "attempts", "message", "run_id", "finished_at",
)  # fmt: skip

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_PATTERN = r"^[=+\-@\t\r]"
_PRIOR_OF = {
    **{o.value: Prior.DONE for o in DONE_OUTCOMES},
    Outcome.REJECTED.value: Prior.REJECTED,
    Outcome.FAILED.value: Prior.RETRY,
    Outcome.NOT_READY.value: Prior.RETRY,
    Outcome.ABORTED.value: Prior.RETRY,
}


_second: list[Any] = [None, ""]  # the last whole second formatted, reused within that second


def utc_now() -> str:
    """Now, as ISO 8601 UTC with milliseconds (``2026-11-28T09:15:49.123Z``); called per row."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[0], _second[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second[1]}.{int((now - second) * 1000):03d}Z"


def carried_names(carried: Sequence[str], *, neutralize_names: bool = True) -> tuple[str, ...]:
    """Ledger names of carried input columns; a name the ledger uses itself gets ``input_``.
    Names are header cells: one line, neutralised like any cell unless ``--raw-cells``."""
    out = []
    for name in carried:
        clean = " ".join(name.split()) or "unnamed"
        clean = f"input_{clean}" if clean in COLUMNS else clean
        out.append(neutralize(clean) if neutralize_names else clean)
    return tuple(out)


def neutralize(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def one_line(text: str) -> str:
    return (
        text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
        if "\n" in text or "\r" in text
        else text
    )


def neutralize_array(values: pa.Array, enabled: bool) -> pa.Array:
    """Vectorised :func:`one_line` and :func:`neutralize` for a text column."""
    values = pc.replace_substring_regex(values, pattern=r"\r\n|\r|\n", replacement=" ")
    if not enabled:
        return values
    flagged = pc.match_substring_regex(values, _FORMULA_PATTERN)
    return pc.if_else(flagged, pc.binary_join_element_wise("'", values, ""), values)


def check_ledger_path(path: Path) -> None:
    """Fail early, in one line, on a ledger path that cannot be a ledger file."""
    if path.is_dir():
        raise LedgerError(f"--ledger {path}: is a directory; name a file inside it")
    if not path.parent.is_dir():
        raise LedgerError(f"--ledger {path}: the directory {path.parent} does not exist")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise LedgerError(f"--ledger {path}: not readable and writable by this user")
    if not os.access(path.parent, os.W_OK):
        raise LedgerError(f"--ledger {path}: cannot create files in {path.parent}")


class LedgerLock:
    """An exclusive ``flock`` on ``LEDGER.lock``; the kernel releases it if the holder dies.
    Beside the ledger's real file: a symlink and its target share one lock."""

    def __init__(self, ledger: Path) -> None:
        real = ledger.resolve()
        self.path = real.with_name(real.name + ".lock")
        self._fh: IO[str] | None = None

    def acquire(self, holder: dict[str, Any]) -> None:
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            fh.close()
            try:
                info = json.loads(text)
                who = (
                    f"pid {info.get('pid')} on {info.get('host')}, run {info.get('run_id')} "
                    f"since {info.get('started_at')}"
                )
            except ValueError:
                who = "holder unknown"
            raise LedgerLocked(f"{self.path.with_suffix('')}: another run holds the ledger ({who})") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(holder) + "\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def repair_torn_tail(path: Path) -> int:
    """Cut off a last line without its newline (left by a kill); returns the bytes removed."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        chunk = 1 << 16
        pos = size
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            data = fh.read(pos - start)
            cut = data.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                fh.truncate(keep)
                return size - keep
            pos = start
        fh.truncate(0)
        return size


def read_header(path: Path) -> list[str] | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, encoding="utf-8", newline="") as fh:
        return next(csv.reader([fh.readline()]))


@dataclass(frozen=True, slots=True)
class LineValues:
    """The per-row values of a ledger line (the run-wide ones are the writer's)."""

    row: int
    media: str
    hash: str
    classification: str
    outcome: Outcome
    error_code: str = ""
    http_status: int | None = None
    attempts: int = 0
    message: str = ""


class LedgerWriter:
    """Appends ledger lines.  Single-threaded use from the event loop (no locking inside)."""

    def __init__(
        self,
        path: Path,
        carried: Sequence[str],
        run_id: str,
        *,
        neutralize: bool = True,
        fsync_interval: float = 2.0,
    ) -> None:
        self.path = path
        self.columns = COLUMNS + carried_names(carried, neutralize_names=neutralize)
        self._run_id = run_id
        self._neutralize = neutralize
        self._fsync_interval = fsync_interval
        header = read_header(path)
        if header is not None and tuple(header) != self.columns:
            raise LedgerError(
                f"{path}: the ledger's columns ({', '.join(header)}) differ from what this input "
                f"writes ({', '.join(self.columns)}); use another --ledger for this input"
            )
        # A raw O_APPEND descriptor: each line is one write() straight to the kernel, so a line is
        # never split across two writes, and there is no buffer layer to flush per row.
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._buf = io.StringIO()
        self._csv = csv.writer(self._buf, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        if header is None:
            header_buf = io.StringIO()
            csv.writer(header_buf, lineterminator="\n").writerow(self.columns)
            self._append(header_buf.getvalue().encode("utf-8"))
        self._last_sync = time.monotonic()
        self.lines = 0

    def _text(self, value: str) -> str:
        value = one_line(value)
        return neutralize(value) if self._neutralize else value

    def write(self, line: LineValues, carried: Sequence[str] = ()) -> None:
        """Append one finished row and flush it to the kernel."""
        self._csv.writerow(
            (
                line.row,
                line.media,
                line.hash,
                line.classification,
                line.outcome.value,
                line.error_code,
                "" if line.http_status is None else line.http_status,
                line.attempts,
                self._text(line.message),
                self._run_id,
                utc_now(),
                *carried,
            )
        )
        self._append(self._buf.getvalue().encode("utf-8"))
        self._buf.seek(0)
        self._buf.truncate()
        self.lines += 1
        self._maybe_sync()

    def write_table(self, table: pa.Table) -> None:
        """Append many finished rows at once (see :meth:`bulk_table`); same quoting as :meth:`write`."""
        if table.num_rows == 0:
            return
        sink = io.BytesIO()
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        self._append(sink.getbuffer())
        self.lines += table.num_rows
        self._maybe_sync()

    def bulk_table(
        self,
        rows: np.ndarray[Any, Any],
        media: pa.Array,
        hashes: pa.Array,
        classes: pa.Array,
        outcomes: pa.Array,
        error_codes: pa.Array,
        messages: pa.Array,
        carried: Sequence[pa.Array],
    ) -> pa.Table:
        """A table of immediate lines (nothing sent) in ledger column order."""
        n = len(rows)
        columns = [
            pa.array(rows.astype(np.int64)),
            media,
            hashes,
            classes,
            outcomes,
            error_codes,
            pa.nulls(n, pa.int64()),
            pa.array(np.zeros(n, np.int64)),
            neutralize_array(messages, self._neutralize),
            pa.array(np.full(n, self._run_id, dtype=object), pa.string()),
            pa.array(np.full(n, utc_now(), dtype=object), pa.string()),
            *carried,
        ]
        return pa.Table.from_arrays(columns, names=list(self.columns))

    def text_array(self, values: pa.Array) -> pa.Array:
        """Input text made safe for a ledger cell (one line; formulas neutralised if enabled)."""
        return neutralize_array(values, self._neutralize)

    def _append(self, data: bytes | memoryview) -> None:
        assert self._fd is not None, "ledger closed"
        view = memoryview(data)
        while view:  # a regular file takes it all at once; a full disk raises
            view = view[os.write(self._fd, view) :]

    def _maybe_sync(self) -> None:
        now = time.monotonic()
        if now - self._last_sync >= self._fsync_interval and self._fd is not None:
            os.fsync(self._fd)
            self._last_sync = now

    def close(self) -> None:
        if self._fd is None:
            return
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None


#: At most this many trusted runs are told apart by resume (2 bytes of run ordinal per entry).
MAX_RUNS = 65_535
_HASH_PATTERN = "^[0-9a-f]{64}$"
_COMPACT_STEP = 1 << 20  # entries compared and moved at a time (bounds the temporaries)


def load_resume_index(path: Path, trusted_runs: dict[str, float], *, first_seen: bool = False) -> ResumeIndex:
    """The latest line per (media, hash, classification) among the runs the caller trusts.

    The ledger is streamed; each decisive line becomes a 37-byte entry (key, run ordinal,
    verdict) in one array that is sorted in place, so memory stays at ~38 bytes per line at the
    peak and 37 per distinct key after.  A key has at most one decisive line per run (a run
    sends each key once), so the entry of the latest run is the key's latest line.  With
    ``first_seen`` the first run of each key is kept too (2 bytes per key).
    """
    if not trusted_runs or read_header(path) is None:
        return ResumeIndex.empty()
    runs = list(trusted_runs)[-MAX_RUNS:]
    run_values = pa.array(runs, pa.string())
    decisive = pa.array(list(_PRIOR_OF))
    prior_of_code = np.array([int(p) for p in _PRIOR_OF.values()], np.uint8)
    wanted = ["media", "hash", "classification", "outcome", "run_id"]
    entries = GrowableKeys(_estimated_lines(path), dtype=ENTRY_DTYPE)
    try:
        # Threads: the job's own ledger has no ragged rows to locate, so pyarrow may parse
        # blocks ahead in parallel while this loop turns the previous one into entries.
        types = {c: pa.string() for c in wanted}
        convert = pacsv.ConvertOptions(include_columns=wanted, column_types=types, strings_can_be_null=False)
        reader = file_batches(path, convert, use_threads=True, block_size=1 << 23)
        for batch in _read_ahead(reader):
            run = _codes(batch["run_id"], run_values)
            outcome = _codes(batch["outcome"], decisive)
            media = _codes(batch["media"], MEDIA_CODES)
            cls = _codes(batch["classification"], CLASS_CODES)
            # A 64-character hash: the job wrote only validated ones (a hand-edited line that is
            # not hex gives a key that matches nothing, which is harmless).
            length = pc.binary_length(batch["hash"]).to_numpy(zero_copy_only=False)
            keep = (run >= 0) & (outcome >= 0) & (media >= 0) & (cls >= 0) & (length == 64)
            k = int(np.count_nonzero(keep))
            if k == 0:
                continue
            raw = np.empty((k, 37), np.uint8)
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
            raw[:, 36] = prior_of_code[outcome]
            block = raw.view(ENTRY_DTYPE).reshape(k)
            block.sort()  # here, while the reader thread parses the next block (no GIL held)
            entries.extend(block)
    except (pa.ArrowException, OSError) as exc:
        raise LedgerError(f"{path}: cannot read the ledger ({first_line(exc)})") from None
    array = entries.finish()
    # By key, then run ordinal. The blocks are sorted runs already: the stable sort (timsort)
    # only merges them, which costs a fraction of sorting from scratch.
    array.sort(kind="stable")
    first_run = _compact_latest(array, keep_first_run=first_seen)
    started = np.array([trusted_runs[r] for r in runs], np.float64) if first_seen else None
    return ResumeIndex(array, first_run, started)


def _read_ahead(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Iterate ``batches`` with a thread parsing up to ``depth`` batches ahead.

    pyarrow parses without the GIL, so the caller's work on one batch overlaps the parsing of
    the next (the streaming reader alone parses only when asked).  Errors surface in order.
    """
    queue: Queue[pa.RecordBatch | BaseException | None] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        queue.put(batch, timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            queue.put(exc)

    thread = threading.Thread(target=produce, name="ledger-reader", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _estimated_lines(path: Path) -> int:
    """About how many lines the ledger has (from its size and its first MiB): the entries array
    is sized once instead of grown, and untouched capacity costs no memory until written."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    per_line = len(head) / max(1, head.count(b"\n"))
    return int(path.stat().st_size / per_line * 1.02) + 1024


def _codes(values: pa.Array, vocabulary: pa.Array) -> np.ndarray[Any, np.dtype[np.int32]]:
    """0-based positions of ``values`` in ``vocabulary``; -1 where absent."""
    found = pc.fill_null(pc.index_in(values, value_set=vocabulary), -1)
    return np.asarray(found.to_numpy(zero_copy_only=False), np.int32)


#: An entry's key seen as four 8-byte words and two bytes: five vectorised comparisons instead
#: of one over 34 separate bytes (and its 34-byte-per-entry temporary).
_KEY_WORDS = np.dtype(
    {
        "names": ["a", "b", "c", "d", "e"],
        "formats": ["<u8", "<u8", "<u8", "<u8", "<u2"],
        "offsets": [0, 8, 16, 24, 32],
        "itemsize": 37,
    }
)


def _same_key(entries: np.ndarray[Any, Any], others: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Element-wise: does each entry hold the same 34-byte key as its counterpart?"""
    a, b = entries.view(_KEY_WORDS), others.view(_KEY_WORDS)
    same: np.ndarray[Any, Any] = a["a"] == b["a"]
    for name in ("b", "c", "d", "e"):
        same &= a[name] == b[name]
    return same


def _compact_latest(array: np.ndarray[Any, Any], *, keep_first_run: bool) -> np.ndarray[Any, Any] | None:
    """Keep the last entry of each key, moving entries forward in place, chunk by chunk, and
    shrink ``array`` to them; returns each kept key's first run ordinal if asked."""
    n = len(array)
    if n == 0:
        return np.empty(0, np.uint16) if keep_first_run else None
    raw = array.view(np.uint8).reshape(n, 37)
    first_runs: list[np.ndarray[Any, Any]] = []
    write = 0
    step = _COMPACT_STEP
    run_of_first = 0
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        last = np.ones(hi - lo, np.bool_)
        nxt = min(n, hi + 1)
        same_as_next = _same_key(array[lo + 1 : nxt], array[lo : nxt - 1])
        last[: len(same_as_next)] = ~same_as_next
        if keep_first_run:
            first = np.ones(hi - lo, np.bool_)
            if lo > 0:
                first[0] = not (raw[lo, :34] == raw[lo - 1, :34]).all()
            first[1:] = ~same_as_next[: hi - lo - 1]
            ordinals = raw[lo:hi, 34].astype(np.uint16) << 8 | raw[lo:hi, 35]
            # The first run of the group each kept (last) entry closes.
            group_first = np.maximum.accumulate(np.where(first, np.arange(hi - lo), -1))
            firsts = np.where(group_first >= 0, ordinals[np.maximum(group_first, 0)], run_of_first)
            first_runs.append(firsts[last].astype(np.uint16))
            if first.any():
                run_of_first = int(ordinals[np.flatnonzero(first)[-1]])
        kept = array[lo:hi][last]
        array[write : write + len(kept)] = kept
        write += len(kept)
    array.resize(write, refcheck=False)
    return np.concatenate(first_runs) if keep_first_run else None

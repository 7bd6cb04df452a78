"""Inputs and ledgers the benchmarks generate (never committed): fast, deterministic, vectorised.

Hashes are random 32-byte values turned into 64 lowercase hex characters with numpy, so every row
is unique.  The "wide" inputs carry four extra text columns of 250 characters each (~1 KB a row);
their contents repeat every block of rows, which costs the generator nothing and the reader just as
much as unique text would (CSV is read and copied byte for byte either way).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from batch_override.apikey import ApiKey
from bench.procs import DEMO_API_KEY

HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
EXTRA_COLUMNS = ("note_1", "note_2", "note_3", "note_4")
EXTRA_WIDTH = 250
CHUNK = 1 << 18
# The ledger's own columns, as batch_override.ledger.format.COLUMNS writes them.
LEDGER_COLUMNS = (
    "row", "media", "hash", "classification", "outcome", "error_code",
    "http_status", "attempts", "message", "run_id", "finished_at",
)  # fmt: skip
TRUSTED_RUN = "20260101T000000Z-bench0"
#: Dry runs name this never-contacted loopback URL, so no benchmark can reach a real server.
DRY_RUN_URL = "http://127.0.0.1:9"


def hex_hashes(rng: np.random.Generator, n: int) -> pa.Array:
    raw = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    chars = np.empty((n, 64), np.uint8)
    chars[:, 0::2] = HEX[raw >> 4]
    chars[:, 1::2] = HEX[raw & 15]
    offsets = np.arange(0, 64 * (n + 1), 64, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes())])


def classifications(n: int, start: int = 0) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array((np.arange(start, start + n) % 2).astype(np.int8)), pa.array(["human", "artificial"])
    ).cast(pa.string())


def _extra_block(rng: np.random.Generator, n: int) -> pa.Array:
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz     ", np.uint8)
    data = letters[rng.integers(0, len(letters), size=n * EXTRA_WIDTH)]
    data[::EXTRA_WIDTH] = ord("x")  # no cell starts with a space
    offsets = np.arange(0, EXTRA_WIDTH * (n + 1), EXTRA_WIDTH, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())])


def _chunks(rows: int) -> list[tuple[int, int]]:
    return [(lo, min(rows, lo + CHUNK)) for lo in range(0, rows, CHUNK)]


def write_corrections(path: Path, rows: int, *, wide: bool = False, seed: int = 1) -> Path:
    """A corrections CSV: ``hash,classification`` (+ four 250-character notes when ``wide``)."""
    rng = np.random.default_rng(seed)
    names = ["hash", "classification", *(EXTRA_COLUMNS if wide else ())]
    extras = [_extra_block(rng, CHUNK) for _ in EXTRA_COLUMNS] if wide else []
    schema = pa.schema([(name, pa.string()) for name in names])
    tmp = path.with_name(path.name + ".part")
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with open(tmp, "wb") as fh, pacsv.CSVWriter(fh, schema, write_options=options) as writer:
        fh.write((",".join(names) + "\n").encode())
        for lo, hi in _chunks(rows):
            n = hi - lo
            cols = [hex_hashes(rng, n), classifications(n, lo), *(e.slice(0, n) for e in extras)]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))
    tmp.replace(path)
    return path


def hashes_of(path: Path, rows: int) -> pa.Array:
    """The first ``rows`` hashes of a corrections CSV written by :func:`write_corrections`."""
    read = pacsv.ReadOptions(block_size=1 << 24)
    convert = pacsv.ConvertOptions(include_columns=["hash"], column_types={"hash": pa.string()})
    out: list[pa.Array] = []
    have = 0
    with pacsv.open_csv(str(path), read_options=read, convert_options=convert) as reader:
        for batch in reader:
            if have >= rows:
                break
            out.append(batch.column(0).slice(0, rows - have))
            have += len(out[-1])
    return pa.concat_arrays(out) if out else pa.array([], pa.string())


def write_ledger(path: Path, corrections: Path, rows: int, *, wide: bool = False) -> Path:
    """A ledger of an earlier, trusted run that accepted the first ``rows`` rows of ``corrections``.

    The header matches what the job writes for that input (carried columns included); the run log
    beside it makes the run trusted for :data:`DRY_RUN_URL` and the demo key.
    """
    rng = np.random.default_rng(7)
    carried = list(EXTRA_COLUMNS if wide else ())
    names = [*LEDGER_COLUMNS, *carried]
    extras = [_extra_block(rng, CHUNK) for _ in carried]
    numeric = {"row", "http_status", "attempts"}
    schema = pa.schema([(name, pa.int64() if name in numeric else pa.string()) for name in names])
    hashes = hashes_of(corrections, rows)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write((",".join(names) + "\n").encode())
        with pacsv.CSVWriter(
            fh, schema, write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed")
        ) as writer:
            for lo, hi in _chunks(rows):
                n = hi - lo

                def const(value: str, n: int = n) -> pa.Array:
                    return pa.array(np.full(n, value, dtype=object), pa.string())

                cols = [
                    pa.array(np.arange(lo, hi, dtype=np.int64)),
                    const("video"),
                    hashes.slice(lo, n),
                    classifications(n, lo),
                    const("submitted"),
                    const(""),
                    pa.array(np.full(n, 201, np.int64)),
                    pa.array(np.ones(n, np.int64)),
                    const(""),
                    const(TRUSTED_RUN),
                    const("2026-01-01T00:00:00.000Z"),
                    *(e.slice(0, n) for e in extras),
                ]
                writer.write_table(pa.Table.from_arrays(cols, schema=schema))
    tmp.replace(path)
    write_runlog(path)
    return path


def write_runlog(ledger: Path, api_url: str = DRY_RUN_URL) -> None:
    """The run log line that makes :data:`TRUSTED_RUN` trusted for ``api_url`` and the demo key."""
    fingerprint = ApiKey(DEMO_API_KEY).fingerprint
    record = {
        "event": "finished",
        "run_id": TRUSTED_RUN,
        "api_url": api_url,
        "key_fingerprint": fingerprint,
        "at": "2026-01-01T00:00:00.000Z",
    }
    ledger.with_name(ledger.name + ".runs.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")


def file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0

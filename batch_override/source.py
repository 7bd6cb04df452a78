"""Reading a corrections file: CSV, gzip CSV or Parquet, streamed in batches, normalised and validated.

pyarrow does the file work in C++; normalising and validating a batch are vectorised compute
calls.  Only the (rare) invalid rows get a per-row Python loop, to word their reasons.

Row numbers: ``row`` is the 0-based position among data rows; messages for people name the
*line* a spreadsheet shows (the header is line 1, so row 0 is line 2).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .cells import as_text as _as_text  # non-text cells: one rule for Parquet and DataFrames
from .cellsize import describe_size, oversized, replace_cells
from .config import CLASSIFICATIONS, MEDIA
from .csvblocks import BLOCK_SIZE, straddles
from .errors import InputError, first_line
from .stdin_copy import StdinCopy
from .table import open_table

_TRIM = " \t\r\n\u00a0\u2007\u202f\u200b\ufeff"
_HASH_PATTERN = "^[0-9a-f]{64}$"
_MEDIA_SET = pa.array(MEDIA)
_CLASS_SET = pa.array(CLASSIFICATIONS)


def spreadsheet_line(row: int) -> int:
    """The line a spreadsheet shows for 0-based data row ``row`` (header = line 1)."""
    return row + 2


@dataclass(frozen=True, slots=True)
class Columns:
    """The input's column names as found in the file."""

    hash: str
    classification: str
    media: str | None
    carried: tuple[str, ...]


@dataclass(slots=True)
class Batch:
    """One batch of rows, normalised; ``valid`` says which rows may be sent."""

    start: int
    media: pa.Array
    hash: pa.Array
    classification: pa.Array
    raw_hash: pa.Array
    raw_classification: pa.Array
    raw_media: pa.Array | None
    valid: npt.NDArray[np.bool_]
    carried: list[pa.Array]
    #: Rows whose problem is their shape (too few or too many fields), by index in the batch.
    notes: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.valid)

    def reasons(self) -> dict[int, str]:
        """Why each invalid row is invalid, keyed by its index within the batch."""
        out: dict[int, str] = {}
        bad = np.flatnonzero(~self.valid)
        if len(bad) == 0:
            return out
        take = pa.array(bad)
        hashes = self.hash.take(take).to_pylist()
        classes = self.classification.take(take).to_pylist()
        raw_media = self.raw_media.take(take).to_pylist() if self.raw_media is not None else None
        medias = self.media.take(take).to_pylist()
        for j, i in enumerate(bad.tolist()):
            if i in self.notes:
                out[i] = self.notes[i]
                continue
            problems = []
            h = hashes[j] or ""
            if len(h) != 64:
                what = "is empty" if not h else f"has {len(h)} characters"
                problems.append(f"hash {what}, expected 64 hex characters (SHA-256)")
            elif any(ch not in "0123456789abcdef" for ch in h):
                problems.append("hash has characters that are not hex digits")
            c = classes[j] or ""
            if c not in CLASSIFICATIONS:
                problems.append(
                    "classification is empty" if not c else "classification is not 'human' or 'artificial'"
                )
            if medias[j] not in MEDIA:
                shown = raw_media[j] if raw_media is not None else medias[j]
                problems.append(f"media {shown!r} is not video, image or audio")
            out[i] = "; ".join(problems)
        return out


def normalise(values: pa.Array) -> pa.Array:
    """Trim (non-breaking and zero-width spaces too) and lowercase; null becomes empty."""
    text = pc.fill_null(values.cast(pa.string()), "")
    return pc.utf8_lower(pc.utf8_trim(text, characters=_TRIM))


def validity(hashes: pa.Array, classes: pa.Array, media: pa.Array) -> npt.NDArray[np.bool_]:
    ok = pc.and_(
        pc.and_(pc.match_substring_regex(hashes, _HASH_PATTERN), pc.is_in(classes, value_set=_CLASS_SET)),
        pc.is_in(media, value_set=_MEDIA_SET),
    )
    return np.asarray(pc.fill_null(ok, False).to_numpy(zero_copy_only=False), dtype=np.bool_)


class CorrectionsFile:
    """A corrections file, opened and checked far enough to know its columns.

    Iterating :meth:`batches` twice reads the file twice (the job validates everything before it
    sends anything, then streams again to send), so memory never holds the whole file.
    """

    def __init__(
        self,
        path: str,
        *,
        hash_column: str = "hash",
        classification_column: str = "classification",
        media_column: str | None = None,
        default_media: str = "video",
        batch_rows: int = 65_536,
        label_map: tuple[tuple[str, str], ...] = (),
        encoding: str | None = None,
    ) -> None:
        self.display = "<stdin>" if path == "-" else path
        self.sha256: str | None = None
        self._ragged: list[tuple[int | None, str, int]] = []
        self._spooled: StdinCopy | None = None
        self._default_media = default_media
        self._label_map = label_map
        self._batch_rows = batch_rows
        try:
            if path == "-":
                self._spooled = StdinCopy()
            self.path = self._spooled.path if self._spooled is not None else Path(path)
            self._table = open_table(
                self.path,
                display=self.display,
                encoding=encoding,
                extensions=".csv, .csv.gz, .tsv, .parquet (or - for CSV on stdin)",
            )
            self.kind = self._table.kind
            self._names = self._table.names
            if self._table.parquet is not None:
                self._parquet = self._table.parquet
            self.columns = self._resolve(hash_column, classification_column, media_column)
        except BaseException:
            self.close()  # the stdin copy holds the whole input: never leave it behind
            raise

    # -- opening ---------------------------------------------------------------------------
    def physical_lines(self, rows: list[int]) -> dict[int, int]:
        """The line a text editor shows for each 0-based data row of ``rows`` (see :mod:`.table`)."""
        return self._table.physical_lines(rows)

    def _fail(self, problem: str) -> InputError:
        return InputError(f"{self.display}: {problem}")

    def compute_sha256(self) -> str:
        """SHA-256 of the input file's bytes (for the run log); cached."""
        if self.sha256 is None:
            digest = hashlib.sha256()
            with open(self.path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
            self.sha256 = digest.hexdigest()
        return self.sha256

    def close(self) -> None:
        """Remove the spooled copy of standard input, if any."""
        if self._spooled is not None:
            self._spooled.close()
            self._spooled = None

    def _resolve(self, hash_column: str, classification_column: str, media_column: str | None) -> Columns:
        folded: dict[str, str] = {}
        for name in self._names:
            key = name.strip().lower()
            if key in folded:
                raise self._fail(f"column {name.strip()!r} appears twice in the header")
            folded[key] = name

        def find(wanted: str) -> str | None:
            return folded.get(wanted.strip().lower())

        found_hash, found_class = find(hash_column), find(classification_column)
        missing = [
            repr(w) for w, f in ((hash_column, found_hash), (classification_column, found_class)) if f is None
        ]
        if missing:
            have = ", ".join(repr(n) for n in self._names)
            raise self._fail(
                f"missing required column {' and '.join(missing)} (header has {have}); "
                "use --hash-column / --classification-column to map other names"
            )
        assert found_hash is not None and found_class is not None
        found_media = find(media_column or "media")
        if media_column is not None and found_media is None:
            have = ", ".join(repr(n) for n in self._names)
            raise self._fail(f"no column {media_column!r} named by --media-column (header has {have})")
        used = {found_hash, found_class, found_media}
        carried = tuple(n for n in self._names if n not in used)
        return Columns(found_hash, found_class, found_media, carried)

    # -- reading -----------------------------------------------------------------------------
    def _record_batches(self) -> Iterator[pa.RecordBatch]:
        if self.kind == "parquet":
            yield from self._parquet_batches()
            return
        # Single-threaded: the streaming reader is as fast that way here, and only then does
        # pyarrow number the rows it hands to invalid_row_handler.
        yield from self._table.csv_reader(invalid_row_handler=self._on_ragged_row)

    def _on_ragged_row(self, row: pacsv.InvalidRow) -> str:
        """A row with too few or too many fields: keep it, as an invalid row (never dropped)."""
        self._ragged.append((row.number, row.text, row.actual_columns))
        return "skip"

    def _with_ragged_rows(self, record: pa.RecordBatch, start: int) -> tuple[pa.RecordBatch, dict[int, str]]:
        """Put the rows pyarrow skipped back in their places, as text in the hash column.

        Their place comes from the physical line number, which equals the data row + 2 unless a
        quoted field spans lines; the place is clamped into this batch either way.
        """
        ragged, self._ragged = self._ragged, []
        n, names = record.num_rows, record.schema.names
        filler = {name: pa.array([""] * len(ragged), pa.string()) for name in names}
        filler[self.columns.hash] = pa.array([text for _, text, _ in ragged], pa.string())
        combined = pa.Table.from_batches([record]).combine_chunks()
        combined = pa.concat_tables([combined, pa.table(filler).select(names)]).combine_chunks()
        order = list(range(n))
        notes: dict[int, str] = {}
        for k, (number, _, _fields) in enumerate(ragged):
            want = (number - 2 - start) if number is not None else len(order)
            place = min(max(want, 0), len(order))
            order.insert(place, n + k)
        for place, source in enumerate(order):
            if source >= n:
                _, _, fields = ragged[source - n]
                notes[place] = f"the row has {fields} field(s) where the header has {len(names)}"
        taken = combined.take(pa.array(order)).combine_chunks()
        return taken.to_batches()[0], notes

    def _parquet_batches(self) -> Iterator[pa.RecordBatch]:
        schema = self._parquet.schema_arrow
        hash_type = schema.field(self.columns.hash).type
        if not (
            pa.types.is_string(hash_type)
            or pa.types.is_large_string(hash_type)
            or pa.types.is_binary(hash_type)
            or pa.types.is_large_binary(hash_type)
            or pa.types.is_fixed_size_binary(hash_type)
            or pa.types.is_dictionary(hash_type)
        ):
            raise self._fail(
                f"column {self.columns.hash!r} holds {hash_type} values; expected text or 32-byte binary"
            )
        yield from self._parquet.iter_batches(batch_size=self._batch_rows)

    def batches(self) -> Iterator[Batch]:
        """Normalised batches; raises :class:`InputError` on a file that cannot be read."""
        start = 0
        iterator = self._record_batches()
        while True:
            try:
                record = next(iterator)
            except StopIteration:
                break
            except (pa.ArrowException, OSError, EOFError, zlib.error, UnicodeError) as exc:
                raise self._read_error(exc, start) from None
            notes: dict[int, str] = {}
            if self._ragged:
                record, notes = self._with_ragged_rows(record, start)
            for offset in range(0, record.num_rows, self._batch_rows):
                part = record.slice(offset, self._batch_rows)
                batch = self._normalise(part, start)
                for i, note in notes.items():
                    if offset <= i < offset + part.num_rows:
                        batch.notes[i - offset] = note
                        batch.valid[i - offset] = False
                yield batch
                start += part.num_rows
        if start == 0:
            raise self._fail("has a header but no data rows")

    def _read_error(self, exc: BaseException, start: int) -> InputError:
        text = first_line(exc)
        if straddles(exc):
            return self._fail(
                f"a row after line {spreadsheet_line(start)} is longer than the reader's block of "
                f"{describe_size(BLOCK_SIZE)}: cells that large are not supported ({text})"
            )
        if self.kind != "parquet" and self._table.is_decode_error(exc):
            return self._table.decode_error()
        if self.kind == "csv.gz" and (
            "gzip" in text.lower() or "zlib" in text.lower() or isinstance(exc, EOFError)
        ):
            return self._fail(f"truncated or corrupt gzip data after line {spreadsheet_line(start)} ({text})")
        return self._fail(f"cannot read after line {spreadsheet_line(start)}: {text}")

    def _normalise(self, record: pa.RecordBatch, start: int) -> Batch:
        cols = self.columns
        raw_hash = _hash_text(record.column(cols.hash))
        raw_class = _as_text(record.column(cols.classification))
        raw_media = _as_text(record.column(cols.media)) if cols.media is not None else None
        hashes = normalise(raw_hash)
        classes = apply_label_map(normalise(raw_class), self._label_map)
        if raw_media is not None:
            media = normalise(raw_media)
            media = pc.if_else(pc.equal(media, ""), self._default_media, media)
        else:
            media = pa.array(np.full(record.num_rows, self._default_media, dtype=object), pa.string())
        valid = validity(hashes, classes, media)
        carried = [_as_text(record.column(name)) for name in cols.carried]
        batch = Batch(start, media, hashes, classes, raw_hash, raw_class, raw_media, valid, carried)
        _drop_oversized_cells(batch, cols)
        return batch


def apply_label_map(classes: pa.Array, label_map: tuple[tuple[str, str], ...]) -> pa.Array:
    """``--label-map`` applied as one mapping: ``a=b,b=a`` swaps, whatever the order."""
    if not label_map:
        return classes
    words = pa.array([word for word, _ in label_map], pa.string())
    targets = pa.array([target for _, target in label_map], pa.string())
    return pc.coalesce(pc.take(targets, pc.index_in(classes, value_set=words)), classes)


def _drop_oversized_cells(batch: Batch, cols: Columns) -> None:
    """Make a row with a cell over the size limit invalid, and keep that cell out of the ledger."""
    # The key columns of a valid row are written normalised (64 hex, a word): only an invalid
    # row copies them as read, and its message already says what is wrong with them.
    batch.raw_hash = replace_cells(batch.raw_hash, oversized(batch.raw_hash))
    batch.raw_classification = replace_cells(batch.raw_classification, oversized(batch.raw_classification))
    if batch.raw_media is not None:
        batch.raw_media = replace_cells(batch.raw_media, oversized(batch.raw_media))
    for j, (name, values) in enumerate(zip(cols.carried, batch.carried, strict=True)):
        sizes = oversized(values)
        for i, size in sizes.items():
            batch.notes.setdefault(
                i, f"column {name!r} holds a {describe_size(size)} cell, over the 1 MiB limit"
            )
            batch.valid[i] = False
        batch.carried[j] = replace_cells(values, sizes)


def _hash_text(values: pa.Array) -> pa.Array:
    """A hash column as text: binary values of 32 bytes become hex (others stay flagged invalid)."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not (
        pa.types.is_binary(values.type)
        or pa.types.is_large_binary(values.type)
        or pa.types.is_fixed_size_binary(values.type)
    ):
        return _as_text(values)
    from .keys import bytes_to_hex  # local: keys imports config only, but keep source light

    lengths = pc.fill_null(pc.binary_length(values), -1).to_numpy(zero_copy_only=False)
    good = lengths == 32
    out = np.empty(len(values), dtype=object)
    out[:] = ""
    if good.any():
        picked = values.filter(pa.array(good))
        raw = np.frombuffer(b"".join(picked.cast(pa.binary()).to_pylist()), np.uint8).reshape(-1, 32)
        out[good] = np.asarray(bytes_to_hex(raw).to_pylist(), dtype=object)
    for i in np.flatnonzero(~good & (lengths >= 0)).tolist():
        out[i] = f"<{lengths[i]}-byte binary>"
    return pa.array(out, pa.string())


__all__ = ["Batch", "Columns", "CorrectionsFile", "spreadsheet_line"]

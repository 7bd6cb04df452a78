"""One batch of input rows, normalised and validated with vectorised pyarrow compute calls.

Every input (a CSV or Parquet file, a DataFrame) ends up as these :class:`Batch` objects; only
the (rare) invalid rows get a per-row Python loop, to word their reasons.

Row numbers: ``Batch.start`` is the 0-based position among data rows; messages for people name
the *line* a spreadsheet shows (the header is line 1, so row 0 is line 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..config import check_media, option_name
from ..domain import CLASSIFICATION_COLUMN, CLASSIFICATIONS, HASH_COLUMN, HASH_PATTERN, MEDIA
from ..keys import bytes_to_hex
from ..urls import check_url, endpoint
from .cells import as_text as _as_text  # non-text cells: one rule for Parquet and DataFrames
from .cellsize import describe_size, oversized, replace_cells

if TYPE_CHECKING:
    from ..config import RunConfig

_TRIM = " \t\r\n\u00a0\u2007\u202f\u200b\ufeff"
_MEDIA_SET = pa.array(MEDIA)
_CLASS_SET = pa.array(CLASSIFICATIONS)
#: A binary hash that is neither a digest nor ASCII text (see _hash_text and _hash_problem).
_BINARY_TEXT = "<{}-byte binary>"
_BINARY = re.compile(r"<(\d+)-byte binary>")


@dataclass(frozen=True, slots=True)
class InputOptions:
    """How to read an input: the :class:`~.config.RunConfig` fields of the same names.

    ``media`` is the default media (of rows without one); ``encoding`` None detects it (files only).
    """

    hash_column: str = HASH_COLUMN
    classification_column: str = CLASSIFICATION_COLUMN
    media_column: str | None = None
    media: str = "video"
    batch_rows: int = 65_536
    label_map: tuple[tuple[str, str], ...] = ()
    encoding: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    gcs_endpoint: str | None = None
    anonymous: bool = False
    #: A header with no data rows reads as no batches instead of an :class:`InputError`.
    allow_empty: bool = False

    def __post_init__(self) -> None:
        check_media(self.media)
        for name in ("s3_endpoint", "gcs_endpoint"):
            if getattr(self, name) is not None:
                check_url(endpoint(option_name(name)), getattr(self, name))

    @classmethod
    def of(cls, config: RunConfig) -> InputOptions:
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


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
            if (problem := _hash_problem(hashes[j] or "")) is not None:
                problems.append(problem)
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


def _hash_problem(h: str) -> str | None:
    """Why a normalised hash cannot be sent (None: it can).  A binary value :func:`_hash_text`
    could not read is named by its length in bytes, not by its placeholder's characters."""
    if (binary := _BINARY.fullmatch(h)) is not None:
        return f"hash is a {binary[1]}-byte binary value, expected 32 bytes or 64 hex characters (SHA-256)"
    if len(h) != 64:
        what = "is empty" if not h else f"has {len(h)} characters"
        return f"hash {what}, expected 64 hex characters (SHA-256)"
    if any(ch not in "0123456789abcdef" for ch in h):
        return "hash has characters that are not hex digits"
    return None


def normalise(values: pa.Array) -> pa.Array:
    """Trim (non-breaking and zero-width spaces too) and lowercase; null becomes empty."""
    text = pc.fill_null(values.cast(pa.string()), "")
    return pc.utf8_lower(pc.utf8_trim(text, characters=_TRIM))


def validity(hashes: pa.Array, classes: pa.Array, media: pa.Array) -> npt.NDArray[np.bool_]:
    """Which rows may be sent: a 64-hex hash, a known classification and media (normalised values)."""
    ok = pc.and_(
        pc.and_(pc.match_substring_regex(hashes, HASH_PATTERN), pc.is_in(classes, value_set=_CLASS_SET)),
        pc.is_in(media, value_set=_MEDIA_SET),
    )
    return np.asarray(pc.fill_null(ok, False).to_numpy(zero_copy_only=False), dtype=np.bool_)


def normalise_record(record: pa.RecordBatch, start: int, columns: Columns, options: InputOptions) -> Batch:
    """One record batch of the input as a :class:`Batch`: normalised, validated, oversized cells out.

    The trap: an empty media cell takes ``options.media`` (as a missing media column does), so
    it is never a reason for a row to be invalid.
    """
    raw_hash = _hash_text(record.column(columns.hash))
    raw_class = _as_text(record.column(columns.classification))
    raw_media = _as_text(record.column(columns.media)) if columns.media is not None else None
    hashes = normalise(raw_hash)
    classes = apply_label_map(normalise(raw_class), options.label_map)
    if raw_media is not None:
        media = normalise(raw_media)
        media = pc.if_else(pc.equal(media, ""), options.media, media)
    else:
        media = pa.array(np.full(record.num_rows, options.media, dtype=object), pa.string())
    valid = validity(hashes, classes, media)
    carried = [_as_text(record.column(name)) for name in columns.carried]
    batch = Batch(start, media, hashes, classes, raw_hash, raw_class, raw_media, valid, carried)
    _drop_oversized_cells(batch, columns)
    return batch


def apply_label_map(classes: pa.Array, label_map: tuple[tuple[str, str], ...]) -> pa.Array:
    """``--label-map`` applied as one mapping: ``a=b,b=a`` swaps, whatever the order.  The words
    are normalised by :func:`normalise`, the cells' own rule, so every case of a word matches."""
    if not label_map:
        return classes
    words = normalise(pa.array([word for word, _ in label_map], pa.string()))
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
    """A hash column as text: binary values of 32 bytes (a digest) become hex, other values of
    printable ASCII are read as the text they are (``b"ab12..."``, 64 bytes, as its 64 characters);
    any other binary value becomes a placeholder naming its length, which :func:`_hash_problem` words.

    The trap: 32 ASCII bytes are a digest, not 32 characters of text (no SHA-256 in hex is 32
    characters long, and a digest's bytes may all happen to be ASCII)."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not (
        pa.types.is_binary(values.type)
        or pa.types.is_large_binary(values.type)
        or pa.types.is_fixed_size_binary(values.type)
    ):
        return _as_text(values)
    lengths = pc.fill_null(pc.binary_length(values), -1).to_numpy(zero_copy_only=False)
    good = lengths == 32
    out = np.empty(len(values), dtype=object)
    out[:] = ""
    if good.any():
        picked = values.filter(pa.array(good))
        raw = np.frombuffer(b"".join(picked.cast(pa.binary()).to_pylist()), np.uint8).reshape(-1, 32)
        out[good] = np.asarray(bytes_to_hex(raw).to_pylist(), dtype=object)
    for i in np.flatnonzero(~good & (lengths >= 0)).tolist():
        value: bytes = values[i].as_py()
        text = value.decode("ascii").strip() if value.isascii() else "\0"
        out[i] = text if text.isprintable() else _BINARY_TEXT.format(lengths[i])
    return pa.array(out, pa.string())


__all__ = [
    "Batch",
    "Columns",
    "InputOptions",
    "apply_label_map",
    "normalise",
    "normalise_record",
    "spreadsheet_line",
    "validity",
]

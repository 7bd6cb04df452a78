"""What every input of the job is: named columns read as a stream of normalised :class:`Batch`.

A file (:class:`.file_input.CorrectionsFile`) and a DataFrame or Table (:class:`.frame_input.TableInput`)
subclass :class:`BatchSource`: each says how to get its record batches and how to word a read
error; this class resolves the columns, slices, normalises and validates, the same for both.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from ..domain import MEDIA_COLUMN
from ..errors import InputError, first_line
from .batch import Batch, Columns, InputOptions, normalise_record


def resolve_columns(
    names: list[str], display: str, hash_column: str, classification_column: str, media_column: str | None
) -> Columns:
    """The header's columns the job uses, matched trimmed and case-folded; the rest are carried.

    Raises :class:`InputError` for a header naming a column twice (after folding), a missing
    required column, or a ``media_column`` given but absent (an absent ``media`` is fine: every
    row takes the default media).
    """
    folded: dict[str, str] = {}
    for name in names:
        key = name.strip().lower()
        if key in folded:
            raise InputError(f"{display}: column {name.strip()!r} appears twice in the header")
        folded[key] = name

    def find(wanted: str) -> str | None:
        return folded.get(wanted.strip().lower())

    found_hash, found_class = find(hash_column), find(classification_column)
    missing = [
        repr(w) for w, f in ((hash_column, found_hash), (classification_column, found_class)) if f is None
    ]
    have = ", ".join(repr(n) for n in names)
    if missing:
        raise InputError(
            f"{display}: missing required column {' and '.join(missing)} (header has {have}); "
            "use --hash-column / --classification-column to map other names"
        )
    assert found_hash is not None and found_class is not None
    found_media = find(media_column or MEDIA_COLUMN)
    if media_column is not None and found_media is None:
        raise InputError(f"{display}: no column {media_column!r} named by --media-column (header has {have})")
    used = {found_hash, found_class, found_media}
    return Columns(found_hash, found_class, found_media, tuple(n for n in names if n not in used))


class BatchSource:
    """An input whose columns are known; :meth:`batches` streams it, normalised, from the start.

    Iterating :meth:`batches` twice reads the input twice (the job validates everything before
    it sends anything, then streams again to send), so memory never holds a whole file.
    Subclasses set ``path`` and ``kind`` and implement :meth:`_record_batches`.
    """

    path: Path
    kind: str

    def __init__(self, display: str, names: list[str], options: InputOptions) -> None:
        self.display = display
        self.sha256: str | None = None
        self._options = options
        self._batch_rows = options.batch_rows
        self.columns = resolve_columns(
            names, display, options.hash_column, options.classification_column, options.media_column
        )

    def _fail(self, problem: str) -> InputError:
        return InputError(f"{self.display}: {problem}")

    def _record_batches(self) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def _repair(self, record: pa.RecordBatch, start: int) -> tuple[pa.RecordBatch, dict[int, str]]:
        """``record`` with rows the reader set aside put back, and why each of those is invalid."""
        return record, {}

    def _read_error(self, exc: BaseException, start: int) -> InputError:
        return self._fail(f"cannot read row {start} on: {first_line(exc)}")

    @property
    def origin(self) -> dict[str, str] | None:
        """The version of an object-store input read (for the run log); None for other inputs."""
        return None

    def physical_lines(self, rows: list[int]) -> dict[int, int]:
        """The line a person finds each 0-based data row of ``rows`` on (here: its position)."""
        return {row: row for row in rows}

    def compute_sha256(self) -> str:
        """A SHA-256 of the input's content (for the run log); cached."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the input holds (nothing here)."""

    def batches(self) -> Iterator[Batch]:
        """Normalised batches; raises :class:`InputError` on an input that cannot be read, or that
        has a header but no data rows unless ``allow_empty`` (then it yields nothing)."""
        start = 0
        iterator = self._record_batches()
        while True:
            try:
                record = next(iterator)
            except StopIteration:
                break
            except (pa.ArrowException, OSError, EOFError, zlib.error, UnicodeError) as exc:
                raise self._read_error(exc, start) from None
            record, notes = self._repair(record, start)
            for offset in range(0, record.num_rows, self._batch_rows):
                part = record.slice(offset, self._batch_rows)
                batch = normalise_record(part, start, self.columns, self._options)
                for i, note in notes.items():
                    if offset <= i < offset + part.num_rows:
                        batch.notes[i - offset] = note
                        batch.valid[i - offset] = False
                yield batch
                start += part.num_rows
        if start == 0 and not self._options.allow_empty:
            raise self._fail("has a header but no data rows (--allow-empty makes that a run of 0 rows)")


__all__ = ["BatchSource", "resolve_columns"]

"""``batch-override hash INPUT -o corrections.csv``: media files to a corrections file, by SHA-256.

INPUT (CSV, gzip CSV, TSV or Parquet, like the job's inputs) names each media file in a path
column instead of giving its hash.  The output is INPUT with a ``hash`` column first and an
``error`` column last, every other column kept in order (the path too), so a person can review
it and then ``batch-override run`` it.

Contract:
- Relative paths resolve against INPUT's directory, not the working directory: the input and its
  media travel together, and cron's working directory is not the user's.
- Files are hashed in a thread pool (``hashlib`` releases the GIL), streamed in 1 MiB reads, and
  INPUT is read in chunks with at most a few chunks in flight, so memory stays bounded however
  many rows there are; output rows keep INPUT's order.
- The output is written to a temporary file and renamed at the end: an interrupted command
  leaves no half file behind.

Traps:
- A file that cannot be read gives its row an empty hash and a reason in ``error`` (the job marks
  the row invalid), and the command exits 1: check the count on stderr before running the file.
- The ``error`` column is always written, empty when all went well, so every output of the same
  INPUT layout has the same columns (a ledger refuses an input whose columns changed); the job
  carries it into the ledger like any other column.
- An INPUT that already has a ``hash`` or ``error`` column gets it replaced, with a note.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import sys
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .csvheader import HeaderError, parse_header
from .errors import BatchOverrideError, ExitCode, InputError, UsageError, first_line
from .metrics import atomic_writer

CHUNK_BYTES = 1 << 20


def sha256_file(path: Path) -> tuple[str, str]:
    """``(hex digest, "")`` of the file's bytes, or ``("", reason)`` when it cannot be read."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    try:
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(buffer):
                digest.update(view[:n])
    except IsADirectoryError:
        return "", f"{path}: is a directory, not a file"
    except FileNotFoundError:
        return "", f"{path}: no such file"
    except OSError as exc:
        return "", f"{path}: {exc.strerror or type(exc).__name__}"
    return digest.hexdigest(), ""


class _Input:
    """INPUT opened far enough to know its columns; :meth:`batches` streams it."""

    def __init__(self, path: Path, path_column: str, chunk_rows: int) -> None:
        self.path = path
        self.chunk_rows = chunk_rows
        if not path.exists():
            raise self._fail("no such file")
        if path.is_dir():
            raise self._fail("is a directory, not a file")
        name = path.name.lower()
        if name.endswith((".parquet", ".pq")):
            self.kind = "parquet"
        elif name.endswith((".csv.gz", ".tsv.gz", ".txt.gz")):
            self.kind = "csv.gz"
        elif name.endswith((".csv", ".tsv", ".txt")):
            self.kind = "csv"
        else:
            raise self._fail("unknown extension; expected .csv, .csv.gz, .tsv or .parquet")
        self.delimiter = ","
        self.names = self._column_names()
        folded: dict[str, str] = {}
        for column in self.names:
            key = column.strip().lower()
            if key in folded:
                raise self._fail(f"column {column.strip()!r} appears twice in the header")
            folded[key] = column
        found = folded.get(path_column.strip().lower())
        if found is None:
            have = ", ".join(repr(n) for n in self.names)
            raise self._fail(f"no {path_column!r} column (header has {have}); use --path-column NAME")
        self.path_column = found
        self.replaced = [folded[k] for k in ("hash", "error") if k in folded]
        self.kept = [n for n in self.names if n not in self.replaced]

    def _fail(self, problem: str) -> InputError:
        return InputError(f"{self.path}: {problem}")

    def _column_names(self) -> list[str]:
        try:
            if self.path.stat().st_size == 0:
                raise self._fail("file is empty")
            if self.kind == "parquet":
                self._parquet = pq.ParquetFile(self.path)
                return list(self._parquet.schema_arrow.names)
            opener = gzip.open if self.kind == "csv.gz" else open
            with opener(self.path, "rb") as fh:
                head: bytes = fh.read(1 << 16)
        except (pa.ArrowException, OSError, EOFError, zlib.error) as exc:
            raise self._fail(f"cannot read ({first_line(exc)})") from None
        try:
            self.delimiter, names = parse_header(head)
        except HeaderError as exc:
            raise self._fail(str(exc)) from None
        return names

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Chunks of at most ``chunk_rows`` rows, every column as text (null becomes empty)."""
        try:
            if self.kind == "parquet":
                records: Iterator[pa.RecordBatch] = self._parquet.iter_batches(batch_size=self.chunk_rows)
            else:
                records = pacsv.open_csv(
                    str(self.path),
                    read_options=pacsv.ReadOptions(column_names=self.names, skip_rows=1, block_size=1 << 22),
                    parse_options=pacsv.ParseOptions(delimiter=self.delimiter),
                    convert_options=pacsv.ConvertOptions(
                        column_types={n: pa.string() for n in self.names},
                        strings_can_be_null=False,
                        quoted_strings_can_be_null=False,
                    ),
                )
            for record in records:
                for offset in range(0, record.num_rows, self.chunk_rows):
                    yield _as_text(record.slice(offset, self.chunk_rows))
        except (pa.ArrowException, OSError, EOFError, zlib.error) as exc:
            raise self._fail(f"cannot read ({first_line(exc)})") from None


def _as_text(record: pa.RecordBatch) -> pa.RecordBatch:
    columns = []
    for column in record.columns:
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        if not pa.types.is_string(column.type):
            try:
                column = column.cast(pa.string())
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                column = pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())
        columns.append(pc.fill_null(column, ""))
    return pa.RecordBatch.from_arrays(columns, names=record.schema.names)


def hash_corrections(
    input_path: Path,
    output: Path,
    *,
    path_column: str = "path",
    workers: int | None = None,
    chunk_rows: int = 1024,
) -> tuple[int, int]:
    """Hash every file INPUT names and write the corrections file; returns ``(rows, failed)``.

    Raises :class:`InputError` for an unreadable INPUT or one without the path column (nothing is
    written then), :class:`UsageError` for ``output`` naming INPUT itself.
    """
    if output.resolve() == input_path.resolve():
        raise UsageError(f"-o {output}: would overwrite INPUT; write the corrections to another file")
    source = _Input(input_path, path_column, chunk_rows)
    for column in source.replaced:
        print(
            f"batch-override: note: {input_path}: its {column!r} column is replaced by the computed one",
            file=sys.stderr,
        )
    base = input_path.resolve().parent
    names = ["hash", *source.kept, "error"]
    schema = pa.schema([(n, pa.string()) for n in names])
    rows = failed = 0
    threads = workers or min(8, os.cpu_count() or 1)
    # Two chunks queued keep every worker busy while the oldest chunk's slowest file finishes.
    max_pending = max(2 * chunk_rows, 4 * threads)
    pending: deque[tuple[pa.RecordBatch, list[Future[tuple[str, str]]]]] = deque()
    queued = 0
    with (
        ThreadPoolExecutor(max_workers=threads) as pool,
        atomic_writer(output) as fh,
    ):
        writer = pacsv.CSVWriter(fh, schema, write_options=pacsv.WriteOptions(quoting_style="needed"))

        def flush_oldest() -> None:
            nonlocal rows, failed, queued
            batch, futures = pending.popleft()
            queued -= len(futures)
            results = [f.result() for f in futures]
            hashes = pa.array([h for h, _ in results], pa.string())
            errors = pa.array([e for _, e in results], pa.string())
            columns = [hashes, *(batch.column(n) for n in source.kept), errors]
            writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
            rows += batch.num_rows
            failed += sum(1 for _, e in results if e)

        try:
            for batch in source.batches():
                paths = batch.column(source.path_column).to_pylist()
                futures = [pool.submit(_hash_cell, base, p) for p in paths]
                pending.append((batch, futures))
                queued += len(futures)
                while queued > max_pending:
                    flush_oldest()
            while pending:
                flush_oldest()
        except BaseException:
            for _, futures in pending:
                for future in futures:
                    future.cancel()
            raise
        if rows == 0:
            raise InputError(f"{input_path}: has a header but no data rows")
        writer.close()
    return rows, failed


def _hash_cell(base: Path, cell: str) -> tuple[str, str]:
    text = cell.strip()
    if not text:
        return "", "path is empty"
    return sha256_file(base / text)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``hash INPUT -o OUTPUT [--path-column NAME] [--workers N]``."""
    p = sub.add_parser(
        "hash",
        help="compute the SHA-256 of the media files INPUT lists, writing a corrections file",
        description="Read INPUT (.csv, .csv.gz, .tsv, .parquet) with a path column naming media files "
        "(relative to INPUT's directory) and write OUTPUT: a hash column, then INPUT's columns, then "
        "an error column (empty when the file was hashed).",
        epilog="exit codes: 0 every file hashed; 1 some files unreadable (empty hash, reason in the "
        "error column); 2 unreadable INPUT, no path column, or an unwritable OUTPUT",
    )
    p.add_argument("input", metavar="INPUT", help="file listing the media files, one per row")
    p.add_argument("-o", "--output", metavar="PATH", required=True, help="corrections CSV to write")
    p.add_argument(
        "--path-column", metavar="NAME", default="path", help="column naming each media file (default path)"
    )
    p.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=None,
        help="files hashed at once (default: CPUs, at most 8)",
    )
    p.set_defaults(handler=main_hash)


def main_hash(args: argparse.Namespace) -> int:
    """Run ``hash`` with parsed ``args``: exit 0 all hashed, 1 some files unreadable, 2 cannot run."""
    try:
        if args.workers is not None and args.workers < 1:
            raise UsageError("--workers must be at least 1")
        rows, failed = hash_corrections(
            Path(args.input), Path(args.output), path_column=args.path_column, workers=args.workers
        )
    except BatchOverrideError as exc:
        print(f"batch-override: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"batch-override: error: {args.output}: cannot write ({first_line(exc)})", file=sys.stderr)
        return ExitCode.USAGE
    if failed:
        print(
            f"batch-override: {failed} of {rows} files could not be hashed; their rows have an empty "
            f"hash and the reason in the error column of {args.output}",
            file=sys.stderr,
        )
        return ExitCode.SOME_ROWS_FAILED
    print(f"hashed {rows} files into {args.output}")
    return ExitCode.OK


__all__ = ["CHUNK_BYTES", "add_parser", "hash_corrections", "main_hash", "sha256_file"]

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
  leaves no half file behind, and no temporary file either, on every exit path: an error, Ctrl-C,
  and SIGTERM or SIGHUP (which raise in the command, so the temporary file is removed, and exit
  143 or 129).

Traps:
- A file that cannot be read gives its row an empty hash and a reason in ``error`` (the job marks
  the row invalid), and the command exits 1: check the count on stderr before running the file.
- The ``error`` column is always written, empty when all went well, so every output of the same
  INPUT layout has the same columns (a ledger refuses an input whose columns changed); the job
  carries it into the ledger like any other column.
- An INPUT that already has a ``hash`` or ``error`` column gets it replaced, with a note.
- Text cells and column names that start with ``=``, ``+``, ``-``, ``@``, tab or CR (a media file
  named ``=1+2.mp4``) get a leading ``'``, as the ledger's do, so a spreadsheet opening the
  output runs no formula; ``raw_cells`` (``--raw-cells``) writes them as they are.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import sys
import threading
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv

from ..domain import CLASSIFICATIONS, MEDIA
from ..errors import BatchOverrideError, ExitCode, InputError, UsageError, first_line
from ..files import atomic_writer
from ..input.batch import InputOptions
from ..input.cells import as_text  # non-text cells: the ledger's one rule
from ..input.object_store import ObjectCopy, is_object_uri
from ..input.table import open_table
from ..job.progress import Progress
from ..ledger.format import neutralize, neutralize_formulas
from .options import OBJECT_STORE, add_config_options
from .pathlist import read_paths, shown

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
    """INPUT opened through :func:`~batch_override.input.table.open_table`; :meth:`batches` streams it."""

    def __init__(
        self, path: Path, path_column: str, chunk_rows: int, encoding: str | None, copy: ObjectCopy | None
    ) -> None:
        self.table = open_table(
            copy.path if copy else path, display=str(copy.uri) if copy else None, encoding=encoding
        )
        self.chunk_rows = chunk_rows
        # An object's media are local files: relative paths resolve against the working directory.
        self.base = Path.cwd() if copy else path.resolve().parent
        folded: dict[str, str] = {}
        for column in self.table.names:
            key = column.strip().lower()
            if key in folded:
                raise self.table.fail(f"column {column.strip()!r} appears twice in the header")
            folded[key] = column
        found = folded.get(path_column.strip().lower())
        if found is None:
            have = ", ".join(repr(n) for n in self.table.names)
            raise self.table.fail(f"no {path_column!r} column (header has {have}); use --path-column NAME")
        self.path_column = found
        self.replaced = [folded[k] for k in ("hash", "error") if k in folded]
        self.kept = [n for n in self.table.names if n not in self.replaced]
        parquet = self.table.parquet
        self.total: int | None = parquet.metadata.num_rows if parquet is not None else None

    def batches(self) -> Iterator[tuple[pa.RecordBatch, list[str]]]:
        """Chunks of at most ``chunk_rows`` rows, every column as text (by :mod:`..input.cells`' rule), and
        their paths."""
        table = self.table
        try:
            records: Iterator[pa.RecordBatch] = (
                table.parquet.iter_batches(batch_size=self.chunk_rows)
                if table.parquet is not None
                else table.csv_reader(use_threads=True)
            )
            for record in records:
                for offset in range(0, record.num_rows, self.chunk_rows):
                    piece = record.slice(offset, self.chunk_rows)
                    texts = [as_text(column) for column in piece.columns]
                    chunk = pa.RecordBatch.from_arrays(texts, names=piece.schema.names)
                    yield chunk, chunk.column(self.path_column).to_pylist()
        except (pa.ArrowException, OSError, EOFError, zlib.error, UnicodeError) as exc:
            if table.kind != "parquet" and table.is_decode_error(exc):
                raise table.decode_error() from None
            raise table.fail(f"cannot read ({first_line(exc)})") from None


class _PathList:
    """Paths on standard input (``hash -``), one per line or NUL-separated; relative to the cwd."""

    def __init__(self, stream: BinaryIO, *, nul: bool, chunk_rows: int) -> None:
        self.path_column = "path"
        self.kept = ["path"]
        self.replaced: list[str] = []
        self.total: int | None = None
        self.base = Path.cwd()
        self._chunks = read_paths(stream, nul=nul, chunk=chunk_rows)

    def batches(self) -> Iterator[tuple[pa.RecordBatch, list[str]]]:
        for paths in self._chunks:
            column = pa.array([shown(p) for p in paths], pa.string())
            yield pa.RecordBatch.from_arrays([column], names=["path"]), paths


def hash_corrections(
    input_path: Path | str,
    output: Path,
    *,
    path_column: str = "path",
    workers: int | None = None,
    chunk_rows: int = 1024,
    encoding: str | None = None,
    fill: Mapping[str, str] | None = None,
    paths_from: BinaryIO | None = None,
    nul: bool = False,
    progress: bool | None = None,
    store: InputOptions | None = None,
    raw_cells: bool = False,
    allow_empty: bool = False,
) -> tuple[int, int]:
    """Hash every file INPUT names and write the corrections file; returns ``(rows, failed)``.

    With ``paths_from`` (``hash -``), the paths are read from that stream instead (see
    :mod:`.pathlist`; NUL-separated when ``nul``), relative to the working directory, and
    ``input_path`` only names them in messages.  ``fill`` adds columns with one value on every
    row (``--classification human``).  An ``s3://`` or ``gs://`` INPUT (a string) is copied first,
    reached as ``store`` says; its relative paths resolve against the working directory.
    Raises :class:`InputError` for an unreadable INPUT, one without the path column, or one with
    no rows (a header alone, or no paths on the stream) unless ``allow_empty`` (then the output is
    a header alone and the result ``(0, 0)``), nothing written then; :class:`UsageError` for
    ``output`` naming INPUT itself or a ``fill`` column INPUT already has.
    """
    copy = None
    if isinstance(input_path, str) and is_object_uri(input_path):
        copy = ObjectCopy(input_path, store or InputOptions(), extensions=".csv, .csv.gz, .tsv, .parquet")
    try:
        return _hash_into(
            input_path if copy else Path(input_path), output, path_column, workers, chunk_rows, encoding,
            dict(fill or {}), paths_from, nul, progress, copy, raw_cells, allow_empty,
        )  # fmt: skip
    finally:
        if copy is not None:
            copy.close()


def _hash_into(
    input_path: Path | str,
    output: Path,
    path_column: str,
    workers: int | None,
    chunk_rows: int,
    encoding: str | None,
    fill: dict[str, str],
    paths_from: BinaryIO | None,
    nul: bool,
    progress: bool | None,
    copy: ObjectCopy | None,
    raw_cells: bool = False,
    allow_empty: bool = False,
) -> tuple[int, int]:
    source: _Input | _PathList
    if paths_from is not None:
        source = _PathList(paths_from, nul=nul, chunk_rows=chunk_rows)
    else:
        if copy is None and output.resolve() == Path(input_path).resolve():
            raise UsageError(f"-o {output}: would overwrite INPUT; write the corrections to another file")
        source = _Input(Path(input_path), path_column, chunk_rows, encoding, copy)
    for column in fill:
        if column.lower() in {n.strip().lower() for n in source.kept}:
            raise UsageError(f"--{column}: {input_path} already has a {column!r} column")
    for column in source.replaced:
        print(
            f"batch-override: note: {input_path}: its {column!r} column is replaced by the computed one",
            file=sys.stderr,
        )
    names = ["hash", *(n if raw_cells else neutralize(n) for n in source.kept), *fill, "error"]
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
        Progress(source.total, unit="file", retries=False, enabled=progress) as bar,
    ):
        writer = pacsv.CSVWriter(fh, schema, write_options=pacsv.WriteOptions(quoting_style="needed"))

        def flush_oldest() -> None:
            nonlocal rows, failed, queued
            batch, futures = pending.popleft()
            queued -= len(futures)
            results = []
            for future in futures:  # in order, so the bar moves while the chunk finishes
                results.append(future.result())
                bar.tally(not results[-1][1])
            hashes = pa.array([h for h, _ in results], pa.string())
            errors = pa.array([e for _, e in results], pa.string())
            filled = [pa.array([value] * batch.num_rows, pa.string()) for value in fill.values()]
            kept = [batch.column(n) for n in source.kept]
            if not raw_cells:  # the ledger's rule: a spreadsheet opening the output runs no formula
                kept, errors = [neutralize_formulas(c) for c in kept], neutralize_formulas(errors)
            columns = [hashes, *kept, *filled, errors]
            writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
            rows += batch.num_rows
            failed += sum(1 for _, e in results if e)

        try:
            for batch, paths in source.batches():
                futures = [pool.submit(_hash_cell, source.base, p) for p in paths]
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
        if rows == 0 and not allow_empty:
            raise InputError(
                f"{input_path}: no paths"
                if paths_from is not None
                else f"{input_path}: has a header but no data rows"
            )
        writer.close()
    return rows, failed


def _hash_cell(base: Path, cell: str) -> tuple[str, str]:
    text = cell.strip()
    if not text:
        return "", "path is empty"
    return sha256_file(base / text)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``hash INPUT|- -o OUTPUT [-0] [--classification LABEL] [--media MEDIA] ...`` (its line
    in the top-level ``--help`` is :mod:`.main`'s: that one must not import this)."""
    p = sub.add_parser(
        "hash",
        description="Read INPUT (.csv, .csv.gz, .tsv, .parquet) with a path column naming media files "
        "(relative to INPUT's directory), or - for paths on standard input, one per line (relative to "
        "the current directory), and write OUTPUT: a hash column, then INPUT's columns, then an error "
        "column (empty when the file was hashed).  Example: find media -type f -print0 | "
        "batch-override hash - -0 --classification human -o corrections.csv",
        epilog="exit codes: 0 every file hashed (none, with --allow-empty and no rows); 1 some files "
        "unreadable (empty hash, reason in the error column); 2 unreadable INPUT, no path column, no "
        "rows (without --allow-empty), or an unwritable OUTPUT; 129, 130, 143 SIGHUP, SIGINT, SIGTERM "
        "(no OUTPUT, no temporary file left)",
    )
    p.add_argument(
        "input",
        metavar="INPUT",
        help="file listing the media files, one per row (or an s3:// or gs:// object of one), or - (stdin)",
    )
    p.add_argument("-o", "--output", metavar="PATH", required=True, help="corrections CSV to write")
    p.add_argument(
        "-0",
        "--null",
        dest="nul",
        action="store_true",
        help="with -: paths are NUL-separated, as find -print0 writes them",
    )
    p.add_argument(
        "--path-column", metavar="NAME", default="path", help="column naming each media file (default path)"
    )
    p.add_argument(
        "--classification",
        metavar="LABEL",
        choices=CLASSIFICATIONS,
        help="add a classification column with LABEL (human or artificial) on every row",
    )
    p.add_argument("--media", choices=MEDIA, help="add a media column with this value on every row")
    p.add_argument(
        "--encoding",
        metavar="NAME",
        help="text encoding of a CSV INPUT without a byte-order mark, e.g. cp1252 (default utf-8)",
    )
    add_config_options(p, (*OBJECT_STORE, "neutralize_formulas", "allow_empty"))
    p.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=None,
        help="files hashed at once (default: CPUs, at most 8)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a progress bar (default: only when stderr is a terminal)",
    )
    p.set_defaults(handler=main_hash)


class _Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the command is, so every ``finally`` runs (the temp file)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise :class:`_Terminated` (Ctrl-C already
    raises KeyboardInterrupt); their default action would kill the process past the cleanup."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread: the caller's own handling applies
        return

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise _Terminated(signum)

    previous = {signum: signal.signal(signum, terminate) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main_hash(args: argparse.Namespace) -> int:
    """Run ``hash`` with parsed ``args``: exit 0 all hashed, 1 some files unreadable, 2 cannot run."""
    try:
        with _signals_raise():
            return _main_hash(args)
    except _Terminated as stop:
        name = signal.Signals(stop.signum).name
        print(f"batch-override: {name}: stopped; {args.output} was not written", file=sys.stderr)
        return 128 + stop.signum


def _main_hash(args: argparse.Namespace) -> int:
    from_stdin = args.input == "-"
    fill = {k: v for k, v in (("classification", args.classification), ("media", args.media)) if v}
    try:
        if args.workers is not None and args.workers < 1:
            raise UsageError("--workers must be at least 1")
        if args.nul and not from_stdin:
            raise UsageError("-0 reads NUL-separated paths from standard input: use it with INPUT -")
        store = InputOptions(**{k: getattr(args, k) for k in OBJECT_STORE if k in args})
        rows, failed = hash_corrections(
            "<stdin>" if from_stdin else args.input,
            Path(args.output),
            path_column=args.path_column,
            workers=args.workers,
            encoding=args.encoding,
            fill=fill,
            paths_from=sys.stdin.buffer if from_stdin else None,
            nul=args.nul,
            progress=args.progress,
            store=store,
            raw_cells=not getattr(args, "neutralize_formulas", True),
            allow_empty=bool(getattr(args, "allow_empty", False)),
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

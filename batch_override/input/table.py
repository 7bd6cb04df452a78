"""Opening a table file: format, text encoding, delimiter and header, one way for run, validate and hash.

:func:`open_table` looks at a file's name and first bytes and returns a :class:`Table` that
knows how to stream it (``Table.csv_reader``) and how to word its problems.

Encodings: a byte-order mark decides (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE: Excel's "Unicode
Text" export is UTF-16 LE with a BOM, tab-separated); otherwise the encoding the user named
(``--encoding``: any Python text codec, such as cp1252 or latin-1); otherwise UTF-8.  pyarrow
reads UTF-8 natively and transcodes any other encoding through the Python codec, in the reader.

Traps:
- A BOM wins over ``--encoding``: a file that starts with one is in that encoding whatever was
  named (an Excel export re-saved by another tool keeps its BOM but the user may name the wrong
  UTF).
- Any byte sequence is valid latin-1, so ``--encoding latin-1`` never fails: a wrong guess shows
  up as odd accents in the ledger, not as an error.
- pyarrow's row numbers count records, not lines: :meth:`Table.physical_lines` recounts the
  lines a text editor shows (quoted cells spanning lines, blank lines) for the few rows a person
  is told about.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import InputError, UsageError, first_line
from ..files import kind_of
from .blocks import BLOCK_SIZE

DELIMITERS = (",", ";", "\t")
_HEAD_BYTES = 1 << 16
_FIELD_LIMIT = (1 << 31) - 1  # the largest the csv module takes on every platform
#: Longest BOMs first: UTF-32 LE's starts with UTF-16 LE's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_NEWLINE = re.compile(r"\r\n|\r|\n")


_PROBE = "hash,classification;\t\r\n"


def check_encoding(name: str) -> str:
    """The canonical name of text codec ``name``; :class:`UsageError` when Python has none, or
    when it is not a codec a file can be streamed through.

    The trap: Python calls ``punycode`` and ``idna`` text encodings, but they encode domain
    names: ``idna`` decodes nothing until it sees a dot (the file read as empty), ``punycode``
    fails on a chunk cut anywhere (exit 70).  A codec passes when a short text, encoded, decodes
    back as it is fed, cut at any byte.
    """
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise UsageError(f"--encoding {name!r}: unknown encoding (such as utf-8, utf-16, cp1252)") from None
    if not getattr(info, "_is_text_encoding", True) or not _streams(info):
        raise UsageError(
            f"--encoding {name!r}: not a text encoding for files (such as utf-8, utf-16, cp1252)"
        )
    return info.name


def _streams(info: codecs.CodecInfo) -> bool:
    """Whether ``info`` decodes a text fed in pieces cut at any byte, without waiting for the end."""
    try:
        data = info.encode(_PROBE)[0]
        if info.incrementaldecoder().decode(data, final=False) != _PROBE:
            return False
        for cut in range(len(data) + 1):
            decoder = info.incrementaldecoder()
            if decoder.decode(data[:cut], final=False) + decoder.decode(data[cut:], final=True) != _PROBE:
                return False
    except (UnicodeError, ValueError, TypeError):
        return False
    return True


def sniff_encoding(head: bytes, declared: str | None = None) -> str:
    """The encoding to read a file starting with ``head``: its BOM's, else ``declared``, else UTF-8.

    A UTF-16/32 name without an endianness is returned for a BOM, so the codec reads the BOM
    (and drops it) itself.
    """
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    return check_encoding(declared) if declared else "utf-8"


@dataclass(slots=True)
class Table:
    """A table file opened far enough to know its columns (and, for text, encoding and delimiter)."""

    path: Path
    display: str
    kind: str
    names: list[str]
    delimiter: str = ","
    encoding: str = "utf-8"
    parquet: pq.ParquetFile | None = None

    def fail(self, problem: str) -> InputError:
        return InputError(f"{self.display}: {problem}")

    def csv_reader(
        self,
        *,
        invalid_row_handler: Callable[[pacsv.InvalidRow], str] | None = None,
        use_threads: bool = False,
    ) -> pacsv.CSVStreamingReader:
        """Stream the data rows (the header skipped), every column as text, empty never null."""
        read = pacsv.ReadOptions(
            column_names=self.names,
            skip_rows=1,
            block_size=BLOCK_SIZE,
            use_threads=use_threads,
            encoding=self.encoding,
        )
        parse = pacsv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=invalid_row_handler)
        convert = pacsv.ConvertOptions(
            column_types={n: pa.string() for n in self.names},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        return pacsv.open_csv(
            arrow_source(self.path, gzipped=self.kind == "csv.gz"),
            read_options=read,
            parse_options=parse,
            convert_options=convert,
        )

    def is_decode_error(self, exc: BaseException) -> bool:
        """Whether ``exc``, raised while streaming, means bytes that are not text in the encoding."""
        text = first_line(exc).lower()
        return isinstance(exc, UnicodeError) or "utf8" in text or "utf-8" in text

    def decode_error(self) -> InputError:
        """The one-line error for undecodable bytes, naming the first line that holds them."""
        line = self.undecodable_line()
        where = f"line {line}" if line is not None else "a line"
        return self.fail(
            f"{where} is not {self._encoding_shown()} text; name the file's encoding with --encoding "
            "(such as cp1252 or latin-1)"
        )

    def _encoding_shown(self) -> str:
        return "UTF-8" if self.encoding == "utf-8" else self.encoding

    def _open_binary(self) -> gzip.GzipFile | BinaryIO:
        return gzip.GzipFile(self.path, "rb") if self.kind == "csv.gz" else open(self.path, "rb")

    def undecodable_line(self) -> int | None:
        """The 1-based physical line holding the first bytes the encoding cannot decode, if any."""
        decoder = codecs.getincrementaldecoder(self.encoding)()
        line = 1
        with self._open_binary() as fh:
            while chunk := fh.read(1 << 20):
                state = decoder.getstate()
                try:
                    line += _count_newlines(decoder.decode(chunk))
                except UnicodeDecodeError as exc:
                    decoder.setstate(state)
                    good = chunk[: max(0, exc.start - len(state[0]))]
                    with contextlib.suppress(UnicodeDecodeError):
                        line += _count_newlines(decoder.decode(good))
                    return line
        return None

    def physical_lines(self, rows: Iterable[int]) -> dict[int, int]:
        """The line a text editor shows for each 0-based data row in ``rows`` (the header is line 1).

        Counts what pyarrow does not: quoted cells that span lines and the blank lines it skips.
        Reads the file up to the last row asked for; Parquet rows get ``row + 2``.
        """
        wanted = sorted(set(rows))
        if not wanted:
            return {}
        if self.kind == "parquet":
            return {row: row + 2 for row in wanted}
        out: dict[int, int] = {}
        encoding = "utf-8-sig" if self.encoding == "utf-8" else self.encoding
        # Python's csv refuses fields over 128 KiB by default; pyarrow read them, so must this.
        with _field_size_limit(_FIELD_LIMIT), self._open_text(encoding) as fh:
            reader = csv.reader(fh, delimiter=self.delimiter)
            next(reader, None)  # the header
            row, k, before = 0, 0, reader.line_num
            for record in reader:
                if record:  # pyarrow skips blank lines: they are not rows
                    if row == wanted[k]:
                        out[row] = before + 1
                        k += 1
                        if k == len(wanted):
                            break
                    row += 1
                before = reader.line_num
        return out

    def _open_text(self, encoding: str) -> IO[str]:
        if self.kind == "csv.gz":
            return gzip.open(self.path, "rt", encoding=encoding, errors="replace", newline="")
        return open(self.path, encoding=encoding, errors="replace", newline="")


def arrow_source(path: Path, *, gzipped: bool = False) -> Any:
    """``path`` as pyarrow should open it: its name when that is UTF-8 text (pyarrow's own reader,
    gzip found by the extension), else a stream of the file opened by Python.

    The trap: pyarrow encodes a name as UTF-8, so a name that is not (a Latin-1 file name on a
    Linux disk) could not be opened, and its error read like undecodable content.
    """
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return pa.input_stream(open(path, "rb"), compression="gzip" if gzipped else None)
    return name


@contextlib.contextmanager
def _field_size_limit(limit: int) -> Iterator[None]:
    """The csv module's field size limit (process-wide state) raised to ``limit``, then restored."""
    before = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _count_newlines(text: str) -> int:
    return len(_NEWLINE.findall(text))


def open_table(
    path: Path,
    *,
    display: str | None = None,
    encoding: str | None = None,
    extensions: str = ".csv, .csv.gz, .tsv, .parquet",
) -> Table:
    """Open ``path``: its format from the extension, then its columns (and text layout).

    Raises :class:`InputError` (one line naming ``display`` and the problem) for a missing,
    empty or unreadable file, and :class:`UsageError` for an unknown ``encoding``.
    """
    shown = display or str(path)
    if encoding:
        check_encoding(encoding)
    if not path.exists():
        raise InputError(f"{shown}: no such file")
    if path.is_dir():
        raise InputError(f"{shown}: is a directory, not a file")
    kind = kind_of(path)
    if kind is None:
        raise InputError(f"{shown}: unknown extension; expected {extensions}")
    table = Table(path, shown, kind, [])
    if path.stat().st_size == 0:
        raise table.fail("file is empty")
    if kind == "parquet":
        try:
            table.parquet = pq.ParquetFile(arrow_source(path))
        except (pa.ArrowException, OSError) as exc:
            raise table.fail(f"not a readable Parquet file ({first_line(exc)})") from None
        table.names = list(table.parquet.schema_arrow.names)
        return table
    try:
        with table._open_binary() as fh:
            head = fh.read(_HEAD_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise table.fail(f"cannot read ({first_line(exc)})") from None
    table.encoding = sniff_encoding(head, encoding)
    text = _header_line(head, table.encoding)
    if text is None:
        raise table.fail(
            f"header line is not {table._encoding_shown()} text (a binary file? else name its "
            "encoding with --encoding, such as cp1252)"
        )
    if not text.strip():
        raise table.fail("file is empty (no header line)")
    counts = {d: text.count(d) for d in DELIMITERS}
    table.delimiter = max(DELIMITERS, key=lambda d: counts[d]) if any(counts.values()) else ","
    names = next(csv.reader([text], delimiter=table.delimiter))
    # Spreadsheet exports often end the header with empty names (``hash,classification,,``):
    # name them by position so they are carried like any other column.
    table.names = [name if name.strip() else f"column_{i + 1}" for i, name in enumerate(names)]
    return table


def _header_line(head: bytes, encoding: str) -> str | None:
    """The first line of ``head`` decoded (BOM dropped), or None when it is not text."""
    decoder: Any = codecs.getincrementaldecoder(encoding)()
    try:
        text = decoder.decode(head)
    except UnicodeDecodeError as exc:
        # Only the header line must decode here; a bad byte further on is reported by its line.
        try:
            text = codecs.getincrementaldecoder(encoding)().decode(head[: exc.start])
        except UnicodeDecodeError:
            return None
        if not _NEWLINE.search(text):
            return None
    if "\x00" in text:  # UTF-8 that is really UTF-16 without a BOM, or a binary file
        return None
    return _NEWLINE.split(text.removeprefix("\ufeff"), maxsplit=1)[0]


__all__ = ["DELIMITERS", "Table", "arrow_source", "check_encoding", "kind_of", "open_table", "sniff_encoding"]

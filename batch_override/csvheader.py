"""A CSV file's header line: its line ending, its delimiter and its column names.

Line endings: LF, CRLF, and the lone CR of Excel for Mac's "CSV (Macintosh)" all end a line
(pyarrow reads the rows of all three; only the header is split here).  The trap: a quoted column
name that spans lines is cut inside its quotes; such headers are not supported.
"""

from __future__ import annotations

import csv
import re

DELIMITERS = (",", ";", "\t")
_LINE_END = re.compile(rb"\r\n|\r|\n")


class HeaderError(ValueError):
    """The header cannot be read; the text says why, for a one-line message naming the file."""


def parse_header(head: bytes) -> tuple[str, list[str]]:
    """The delimiter and the column names of the first line of ``head`` (the file's first bytes).

    The delimiter is the most frequent of comma, semicolon and tab (comma when none occurs).
    """
    line = _LINE_END.split(head, maxsplit=1)[0]
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HeaderError("header line is not UTF-8 text (binary file, or another encoding?)") from None
    if not text.strip():
        raise HeaderError("file is empty (no header line)")
    counts = {d: text.count(d) for d in DELIMITERS}
    delimiter = max(DELIMITERS, key=lambda d: counts[d]) if any(counts.values()) else ","
    try:
        names = next(csv.reader([text], delimiter=delimiter))
    except csv.Error as exc:
        raise HeaderError(f"header line is not CSV ({exc})") from None
    return delimiter, names

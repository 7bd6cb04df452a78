"""A list of file paths on a stream, as ``find`` writes it: one per line, or NUL-separated (``-print0``).

Contract: :func:`read_paths` yields the paths in order, in chunks, without holding the whole
list; empty entries (a trailing separator, a blank line) are skipped; a line's trailing ``\\r``
is dropped (a list written on Windows).  Paths are decoded as the operating system does
(``os.fsdecode``), so a file name that is not UTF-8 still opens.

Trap: a file name may contain a newline; only ``-0`` (``find -print0``) lists every name
unambiguously.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

_READ = 1 << 16


def read_paths(stream: BinaryIO, *, nul: bool = False, chunk: int = 1024) -> Iterator[list[str]]:
    """Lists of at most ``chunk`` paths read from ``stream`` (NUL-separated when ``nul``)."""
    separator = b"\0" if nul else b"\n"
    pending = b""
    out: list[str] = []
    while True:
        data = stream.read(_READ)
        pieces = (pending + data).split(separator)
        pending = pieces.pop() if data else b""
        for piece in pieces:
            if not nul:
                piece = piece.removesuffix(b"\r")
            if piece:
                out.append(os.fsdecode(piece))
                if len(out) == chunk:
                    yield out
                    out = []
        if not data:
            break
    if out:
        yield out


def shown(path: str) -> str:
    """``path`` as text a CSV can hold: bytes that were not UTF-8 become ``\\xNN`` escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


__all__ = ["read_paths", "shown"]

"""Where a ledger and its side files may live: regular files, named in UTF-8.

Contract:
- :func:`open_regular` opens a path only if it is a regular file (or creates one); a FIFO, a
  device, a socket is refused with :class:`~.errors.LedgerError` (exit 2) without blocking (a
  FIFO's ``open`` would wait for a writer) and without writing to it (``/dev/null`` swallows a
  ledger, ``/dev/stdout`` mixes it into the output).  The type is checked on the descriptor
  opened, so a file swapped for a FIFO between a check and the open is refused too.
- :func:`utf8_line` and :func:`check_utf8` name the first line that is not UTF-8 (a spreadsheet's
  re-save in its "ANSI" code page), as a one-line :class:`~.errors.LedgerError` (exit 2).

The trap: every check here is of a *path*; what a lock covers is a file (see :mod:`.lock`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import LedgerError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def special_kind(mode: int) -> str | None:
    """What a file of ``mode`` is when it is not a regular file (``"a FIFO (named pipe)"``), else None."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def refuse_special(path: Path, what: str) -> None:
    """Raise :class:`LedgerError` if ``path`` exists (through symlinks) and is not a regular file."""
    try:
        kind = special_kind(os.stat(path).st_mode)
    except OSError:  # absent (or unreadable: the open after says why, as exit 6)
        return
    if kind is not None:
        raise LedgerError(f"{what} {path}: is {kind}, not a regular file; name a regular file")


def open_regular(path: Path, flags: int, what: str, mode: int = 0o644) -> int:
    """``os.open(path, flags)`` of a regular file only; a special file raises :class:`LedgerError`.

    Opened with ``O_NONBLOCK`` (a FIFO opens at once, to be refused) and ``O_NOCTTY``; on a
    regular file ``O_NONBLOCK`` changes nothing.  Other failures are the ``OSError`` they are.
    """
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, mode)
    try:
        kind = special_kind(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    if kind is not None:
        os.close(fd)
        raise LedgerError(f"{what} {path}: is {kind}, not a regular file; name a regular file")
    return fd


def not_utf8(path: Path, number: int, exc: UnicodeDecodeError) -> LedgerError:
    """The one-line error for line ``number`` of ``path``, whose decoding alone raised ``exc``."""
    return LedgerError(
        f"{path}: line {number} is not UTF-8 (byte 0x{exc.object[exc.start]:02x} at byte "
        f"{exc.start + 1} of the line); re-save the file as UTF-8"
    )


def utf8_line(path: Path, raw: bytes, number: int) -> str:
    """Line ``number`` of ``path`` (its bytes ``raw``) as text; :class:`LedgerError` if not UTF-8.

    A UTF-8 BOM at the start of line 1 is dropped (a spreadsheet's "CSV UTF-8" save writes one).
    """
    try:
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(path, number, exc) from None


def check_utf8(path: Path, end: int, chunk: int = 1 << 20) -> None:
    """Raise :class:`LedgerError` naming the first line of ``path``'s first ``end`` bytes that is
    not UTF-8.  ASCII blocks (the usual ledger) cost one ``isascii`` each; a block with other
    bytes is decoded whole, and only a failing one is split into lines to name the line."""
    lines = 0
    carry = b""
    with open(path, "rb") as fh:
        left = end
        while left > 0:
            data = carry + fh.read(min(chunk, left))
            if len(data) == len(carry):
                break  # the file shrank under us: what is left was checked
            left -= len(data) - len(carry)
            cut = data.rfind(b"\n") + 1 if left > 0 else len(data)
            block, carry = data[:cut], data[cut:]
            if not block.isascii():
                _check_block(path, block, lines)
            lines += block.count(b"\n")
    if carry:
        _check_block(path, carry, lines)


def _check_block(path: Path, block: bytes, lines: int) -> None:
    """Decode ``block`` (whole lines after ``lines`` earlier ones); name the line that fails."""
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = block.rfind(b"\n", 0, exc.start) + 1
        stop = block.find(b"\n", exc.start)
        line = block[start : stop if stop >= 0 else len(block)]
        number = lines + block.count(b"\n", 0, start) + 1
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as inner:  # always: the line holds the byte that failed
            raise not_utf8(path, number, inner) from None


__all__ = ["check_utf8", "open_regular", "refuse_special", "special_kind", "utf8_line"]

"""Small file helpers shared by the writers and readers: replace a file atomically, find where its
last complete line ends, tell an input's kind by its name."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

#: The input names ``run`` and ``validate`` read, as their messages list them (:func:`kind_of`).
INPUT_EXTENSIONS = ".csv, .csv.gz, .tsv, .parquet (or - for CSV on stdin)"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` only when the block ends without an exception.

    The data is fsynced before the rename, so after a crash ``path`` holds the old or the new
    content, never a mix; on an exception the temporary file is removed and ``path`` is untouched.
    The trap: an exception raised by a signal handler right as the file is opened can leak its
    descriptor (the process is ending then), never the file.
    """
    # The name is known before the file exists: a stop signal's exception (``hash`` raises one
    # from its handler, which may run between any two bytecodes, and a signal mask cannot hold it
    # back while another thread may take it) then always finds the file to remove.
    tmp = ""
    try:
        while True:
            tmp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(6)}.tmp")
            try:
                fd = os.open(tmp, _CREATE, 0o600)
                break
            except FileExistsError:
                tmp = ""  # not ours: never removed
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


def complete_end(path: Path) -> int:
    """The size of ``path`` up to and including its last line break (0 if it has none)."""
    size = path.stat().st_size
    chunk = 1 << 16
    with open(path, "rb") as fh:
        pos = size
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            cut = fh.read(pos - start).rfind(b"\n")
            if cut >= 0:
                return start + cut + 1
            pos = start
    return 0


def kind_of(path: Path) -> str | None:
    """``"parquet"``, ``"csv.gz"``, ``"csv"`` from the file name, or None for another extension."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv.gz", ".tsv.gz", ".txt.gz")):
        return "csv.gz"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    return None


__all__ = ["INPUT_EXTENSIONS", "atomic_writer", "complete_end", "kind_of"]

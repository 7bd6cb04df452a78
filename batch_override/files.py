"""Small file helpers shared by the writers and readers: replace a file atomically, find where its
last complete line ends."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

#: The signals that stop a run or a command (held back while a temporary file is named).
_STOPS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` only when the block ends without an exception.

    The data is fsynced before the rename, so after a crash ``path`` holds the old or the new
    content, never a mix; on an exception the temporary file is removed and ``path`` is untouched.
    """
    tmp = ""
    # A stop signal between creating the file and knowing its name would leave it behind: it is
    # held back until the name is known, then handled inside the try (whose cleanup removes it).
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
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


__all__ = ["atomic_writer", "complete_end"]

"""``run -``: standard input copied to a file, since both passes read the input.  A FIFO (named
pipe) or a character device named as the input is a stream too, copied the same way.

The copy holds the whole input, so it must never outlive the run: :meth:`StdinCopy.close` removes
it, and a finalizer does so at the latest when the copy is collected or the interpreter exits (a
cancel or Ctrl-C while the copy is made or its header is checked).  Only ``os._exit`` and SIGKILL
leave it behind, in a ``batch-override-stdin-*`` folder of the temporary directory.
"""

from __future__ import annotations

import shutil
import stat
import sys
import tempfile
import weakref
from pathlib import Path


def is_stream(path: Path) -> bool:
    """Whether ``path`` is a FIFO or a character device: read once, as standard input is."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


class StdinCopy:
    """Standard input (or the stream ``source``), copied now to ``path``: ``stdin.csv``, or
    ``stdin.csv.gz`` for gzip data; a ``source`` whose name ends in ``.parquet`` keeps that end."""

    def __init__(self, source: Path | None = None) -> None:
        folder = tempfile.mkdtemp(prefix="batch-override-stdin-")
        self._remove = weakref.finalize(self, shutil.rmtree, folder, True)
        parquet = source is not None and source.name.lower().endswith((".parquet", ".pq"))
        path = Path(folder) / ("stdin.parquet" if parquet else "stdin.csv")
        with open(path, "wb") as out:
            if source is None:
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
            else:
                with open(source, "rb") as stream:
                    shutil.copyfileobj(stream, out, 1 << 20)
        with open(path, "rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"
        self.path = path.rename(path.with_name("stdin.csv.gz")) if gzipped and not parquet else path

    def close(self) -> None:
        """Remove the copy (again: a no-op)."""
        self._remove()

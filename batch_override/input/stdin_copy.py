"""``run -``: standard input copied to a file, since both passes read the input.

The copy holds the whole input, so it must never outlive the run: :meth:`StdinCopy.close` removes
it, and a finalizer does so at the latest when the copy is collected or the interpreter exits (a
cancel or Ctrl-C while the copy is made or its header is checked).  Only ``os._exit`` and SIGKILL
leave it behind, in a ``batch-override-stdin-*`` folder of the temporary directory.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import weakref
from pathlib import Path


class StdinCopy:
    """Standard input, copied now to ``path`` (``stdin.csv``, or ``stdin.csv.gz`` for gzip data)."""

    def __init__(self) -> None:
        folder = tempfile.mkdtemp(prefix="batch-override-stdin-")
        self._remove = weakref.finalize(self, shutil.rmtree, folder, True)
        path = Path(folder) / "stdin.csv"
        with open(path, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        with open(path, "rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"
        self.path = path.rename(path.with_name("stdin.csv.gz")) if gzipped else path

    def close(self) -> None:
        """Remove the copy (again: a no-op)."""
        self._remove()

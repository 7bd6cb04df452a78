"""``run -``: standard input copied to a file, since both passes read the input.  A FIFO (named
pipe) or a character device named as the input is a stream too, copied the same way.

The copy holds the whole input, so it must never outlive the run: :meth:`StdinCopy.close` removes
it, and a finalizer does so at the latest when the copy is collected or the interpreter exits (a
cancel or Ctrl-C while the copy is made or its header is checked).  Only ``os._exit`` and SIGKILL
leave it behind, in a ``batch-override-stdin-*`` folder of the temporary directory.

A producer that never closes its end must not hold the run: given ``halted``, the copy waits for
data in steps and ends with :class:`~batch_override.stopping.Halted` (the copy removed) once it is
set.  Opening a FIFO blocks until a writer opens it, before any copy exists: the run abandons
that thread (see :func:`~batch_override.stopping.abandonable`).
"""

from __future__ import annotations

import io
import os
import select
import shutil
import stat
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import BinaryIO

from ..stopping import POLL, Halted

_CHUNK = 1 << 20


def is_stream(path: Path) -> bool:
    """Whether ``path`` is a FIFO or a character device: read once, as standard input is."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _copy(stream: BinaryIO, out: BinaryIO, halted: threading.Event | None) -> None:
    """``stream`` to its end into ``out``; with ``halted``, raises :class:`Halted` once it is set,
    looking at least every :data:`POLL` s while the stream is silent.

    The trap: the stream is read by its descriptor (no buffer, no lock a daemon thread left in
    it could hold at interpreter exit), so bytes its buffer already holds would be skipped;
    nothing reads the input before this.  A stream without a descriptor is copied as it is.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None
    if fd is None or halted is None:
        shutil.copyfileobj(stream, out, _CHUNK)
        return
    poller = select.poll()  # not select.select: a host's descriptor may be past FD_SETSIZE
    poller.register(fd, select.POLLIN)
    while not halted.is_set():
        if not poller.poll(POLL * 1000):
            continue
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:  # a descriptor left non-blocking by the producer's side
            continue
        if not chunk:
            return
        out.write(chunk)
    raise Halted


class StdinCopy:
    """Standard input (or the stream ``source``), copied now to ``path``: ``stdin.csv``, or
    ``stdin.csv.gz`` for gzip data; a ``source`` whose name ends in ``.parquet`` keeps that end.
    With ``halted``, a copy still waiting for data when it is set ends (see the module)."""

    def __init__(self, source: Path | None = None, halted: threading.Event | None = None) -> None:
        stream: BinaryIO = sys.stdin.buffer if source is None else open(source, "rb")  # noqa: SIM115
        try:
            if halted is not None and halted.is_set():  # the run stopped while a FIFO was opened
                raise Halted
            self._spool(stream, source, halted)
        finally:
            if source is not None:
                stream.close()

    def _spool(self, stream: BinaryIO, source: Path | None, halted: threading.Event | None) -> None:
        folder = tempfile.mkdtemp(prefix="batch-override-stdin-")
        self._remove = weakref.finalize(self, shutil.rmtree, folder, True)
        parquet = source is not None and source.name.lower().endswith((".parquet", ".pq"))
        path = Path(folder) / ("stdin.parquet" if parquet else "stdin.csv")
        try:
            with open(path, "wb") as out:
                _copy(stream, out, halted)
        except BaseException:
            self.close()
            raise
        with open(path, "rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"
        self.path = path.rename(path.with_name("stdin.csv.gz")) if gzipped and not parquet else path

    def close(self) -> None:
        """Remove the copy (again: a no-op)."""
        self._remove()

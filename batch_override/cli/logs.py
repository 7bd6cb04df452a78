"""Log setup: readable text on stderr by default, one JSON object per line with ``--log-format json``.

Contract: while a command runs, ``sys.stderr`` is a :class:`QueuedStderr`: a write (a log record,
a progress bar redraw, an error line) is put on a bounded queue and a writer thread writes it, so
nothing on the event loop ever waits for stderr.  When the queue is full (a stalled log shipper,
a pipe nobody reads) writes are dropped and counted; the count is written once the stream moves.

Trap: at the end, queued lines are written only while the stream keeps taking them
(:meth:`QueuedStderr.close`): a write blocked for :data:`PATIENCE` seconds (counted from when it
began, so a stream stalled long before the end costs nothing more) loses the rest, so that a
SIGTERM still ends the process in time.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

#: Writes :class:`QueuedStderr` holds before it drops (a log line or a bar redraw each).
QUEUE_SIZE = 10_000
#: Seconds a write may stay blocked at exit before the last queued lines are given up.
PATIENCE = 1.0

#: The format chosen by the last :func:`setup_logging` ("text" until then).
_format = "text"


def json_line(level: str, msg: str, created: float | None = None, **fields: Any) -> str:
    """One JSON log object, as ``--log-format json`` writes every line of stderr."""
    when = time.time() if created is None else created
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1000):03d}Z",
        "level": level,
        "logger": "batch_override",
        "msg": msg,
    }
    out.update(fields)
    return json.dumps(out, ensure_ascii=False)


def current_format() -> str:
    return _format


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = getattr(record, "fields", None)
        fields = extra if isinstance(extra, dict) else {}
        return json_line(record.levelname.lower(), record.getMessage(), record.created, **fields)


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)sZ %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        self.converter = time.gmtime


def setup_logging(fmt: str = "text", verbosity: int = 0, quiet: bool = False) -> None:
    global _format
    _format = fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger("batch_override")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.ERROR if quiet else logging.DEBUG if verbosity > 0 else logging.INFO)


def warn_always(logger: logging.Logger, msg: str, *args: object) -> None:
    """A WARNING that ``--quiet`` (the logger held at ERROR) still prints, for what a person must
    read even from a run that printed nothing else (cron mails any output).  The trap: it goes
    around the logger's level, not its handlers, so the log format (text or JSON) is the same."""
    if logger.isEnabledFor(logging.WARNING):
        logger.warning(msg, *args, stacklevel=2)
    else:
        logger.handle(logger.makeRecord(logger.name, logging.WARNING, __file__, 0, msg, args, None))


def _dropped_note(count: int) -> str:
    note = f"{count} writes to stderr dropped: it was not being read"
    return json_line("warning", note) + "\n" if _format == "json" else f"batch-override: {note}\n"


class QueuedStderr(io.TextIOBase):
    """A text stream whose :meth:`write` never blocks: a bounded queue to a writer thread.

    The thread writes to a duplicate of ``target``'s file descriptor with ``os.write`` (no Python
    lock is held while it waits, so the interpreter can exit past a blocked write), or calls
    ``target.write`` when it has none (a test's capture).  ``clock`` times how long a write has
    been blocked (:meth:`close`'s patience); tests inject a virtual one.
    """

    def __init__(
        self, target: TextIO, maxsize: int = QUEUE_SIZE, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.target = target
        self._clock = clock
        self.dropped = 0
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize)
        self._lock = threading.Lock()
        self._writing_since: float | None = None  # when the write in progress began, if any
        self._broken = False
        try:
            self._fd: int | None = os.dup(target.fileno())
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            self._fd = None
        self._thread = threading.Thread(target=self._write_all, name="stderr-writer", daemon=True)
        self._thread.start()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        try:
            return bool(self.target.isatty())
        except (AttributeError, ValueError, OSError):
            return False

    def fileno(self) -> int:
        return self.target.fileno()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text or self.dropped:
            with self._lock:  # the drop count goes where the drops happened, before this text
                try:
                    if self.dropped:
                        self._queue.put_nowait(_dropped_note(self.dropped))
                        self.dropped = 0
                    if text:
                        self._queue.put_nowait(text)
                except queue.Full:
                    self.dropped += 1 if text else 0
        return len(text)

    def flush(self) -> None:
        """Nothing to do: the writer thread writes each piece as soon as the stream takes it."""

    def _write_all(self) -> None:
        while (text := self._queue.get()) is not None:
            self._writing_since = self._clock()
            self._emit(text)
            self._writing_since = None

    def _emit(self, text: str) -> None:
        if self._broken:
            return
        try:
            if self._fd is None:
                self.target.write(text)
                self.target.flush()
                return
            view = memoryview(text.encode(self.encoding, errors="backslashreplace"))
            while view:
                view = view[os.write(self._fd, view) :]
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be shown
            self._broken = True

    def _mark_end(self) -> bool:
        """Queue the end mark, after the count of the last drops; False while there is no room."""
        self.write("")
        if self.dropped:
            return False
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            return False
        return True

    def close(self, patience: float = PATIENCE) -> None:
        """Let the writer finish what is queued while each write ends within ``patience`` seconds;
        give up on one that has been blocked longer (at once if it was blocked before the close).
        The thread is a daemon: one blocked for good does not hold the exit."""
        if self.closed:
            return
        marked = self._mark_end()
        while self._thread.is_alive():
            self._thread.join(0.02)
            started = self._writing_since
            if started is not None and self._clock() - started > patience:
                break
            marked = marked or self._mark_end()  # once there is room for it
        if not self._thread.is_alive() and self._fd is not None:
            os.close(self._fd)
        super().close()


@contextlib.contextmanager
def queued_stderr(patience: float = PATIENCE) -> Iterator[QueuedStderr]:
    """``sys.stderr`` is a :class:`QueuedStderr` while the block runs (see the module docstring)."""
    original = sys.stderr
    stream = QueuedStderr(original)
    sys.stderr = stream
    try:
        yield stream
    finally:
        sys.stderr = original
        for handler in logging.getLogger("batch_override").handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is stream:
                handler.setStream(original)
        stream.close(patience)

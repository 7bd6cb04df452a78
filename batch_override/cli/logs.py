"""Log setup: readable text on stderr by default, one JSON object per line with ``--log-format json``."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

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

"""A run's summary as Prometheus metrics, for node_exporter's textfile collector.

Contract: :func:`write_metrics` replaces ``path`` atomically (a temporary file in the same
directory, then ``os.replace``), so the collector never scrapes a half-written file; the
temporary name does not end in ``.prom``, so the collector never reads it either.  The file is
mode 0644 (node_exporter usually runs as another user).

Traps:
- Every value describes the *last* run, so every metric is a gauge, including
  ``batch_override_requests_total`` and ``batch_override_throttled_total`` whose names look like
  counters: ``rate()`` or ``increase()`` over them is meaningless; alert on their value.
- ``batch_override_last_success_timestamp_seconds`` disappears when the caller passes ``None``.
  A failed run should pass the previous value (:func:`read_last_success`), or an alert such as
  ``time() - batch_override_last_success_timestamp_seconds > 2 * 86400`` goes silent instead of
  firing.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .outcome import Outcome
from .summary import Summary

_PREFIX = "batch_override_"
_LAST_SUCCESS = _PREFIX + "last_success_timestamp_seconds"


def escape_label(value: str) -> str:
    """A label value escaped per the text exposition format: backslash, double quote, line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape_label(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


@contextlib.contextmanager
def atomic_writer(path: Path, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` only when the block ends without an exception.

    The data is fsynced before the rename, so after a crash ``path`` holds the old or the new
    content, never a mix; on an exception the temporary file is removed and ``path`` is untouched.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def render_metrics(
    summary: Summary, *, job: str, last_success_unix: float | None, now: float | None = None
) -> str:
    """The exposition text :func:`write_metrics` writes (every outcome listed, zeros included)."""
    label = f'job="{escape_label(job)}"'
    finished_rows = sum(summary.outcomes.values())
    lines: list[str] = []

    def gauge(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {_PREFIX}{name} {help_text}")
        lines.append(f"# TYPE {_PREFIX}{name} gauge")
        lines.extend(f"{_PREFIX}{name}{{{labels}}} {_number(value)}" for labels, value in samples)

    outcomes = [o.value for o in Outcome]
    outcomes += sorted(set(summary.outcomes) - set(outcomes))  # a hand-edited ledger's own words
    gauge(
        "rows",
        "Rows of the last run by outcome.",
        [(f'{label},outcome="{escape_label(o)}"', summary.outcomes.get(o, 0)) for o in outcomes],
    )
    gauge("duration_seconds", "Wall time of the last run.", [(label, summary.duration)])
    gauge(
        "last_run_timestamp_seconds",
        "Unix time the last run's metrics were written.",
        [(label, time.time() if now is None else now)],
    )
    if last_success_unix is not None:
        gauge(
            "last_success_timestamp_seconds",
            "Unix time of the last run that exited 0.",
            [(label, last_success_unix)],
        )
    gauge(
        "rows_per_second",
        "Rows finished (given a ledger line) per second of the last run.",
        [(label, finished_rows / summary.duration if summary.duration > 0 else 0.0)],
    )
    gauge("exit_code", "Exit code of the last run (0 = every row succeeded).", [(label, summary.exit_code)])
    gauge(
        "requests_total",
        "HTTP requests the last run sent (a gauge: per run, not cumulative).",
        [(label, summary.requests)],
    )
    gauge(
        "throttled_total",
        "429 answers the last run received (a gauge: per run, not cumulative).",
        [(label, summary.throttled)],
    )
    return "\n".join(lines) + "\n"


def write_metrics(
    path: Path, summary: Summary, *, job: str, last_success_unix: float | None, now: float | None = None
) -> None:
    """Write ``summary`` to ``path`` (``*.prom`` in node_exporter's textfile directory), atomically.

    ``last_success_unix`` is the Unix time of the last run that exited 0, or ``None`` when not
    known (the metric is then left out); ``now`` (default: the clock) is the last-run timestamp.
    """
    text = render_metrics(summary, job=job, last_success_unix=last_success_unix, now=now)
    with atomic_writer(path) as fh:
        fh.write(text.encode("utf-8"))


def read_last_success(path: Path, *, job: str) -> float | None:
    """The last-success timestamp a previous :func:`write_metrics` left in ``path`` for ``job``.

    For carrying the value over a failed run.  ``None`` when the file is missing, unreadable or
    has no such sample for this job.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    pattern = re.compile(rf'^{_LAST_SUCCESS}\{{job="((?:[^"\\]|\\.)*)"\}} (\S+)$')
    for line in text.splitlines():
        match = pattern.match(line)
        if match and _unescape_label(match.group(1)) == job:
            try:
                return float(match.group(2))
            except ValueError:
                return None
    return None


__all__ = ["atomic_writer", "escape_label", "read_last_success", "render_metrics", "write_metrics"]

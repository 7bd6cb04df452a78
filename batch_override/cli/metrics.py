"""A run's summary as Prometheus metrics: a textfile for node_exporter, or a push to a Pushgateway.

The exposition text comes from ``prometheus_client`` (the official client), so names, escaping
and number formats are the ones every scraper and ``promtool check metrics`` expect.

Contract:
- :func:`write_metrics` replaces ``path`` atomically (a temporary file in the same directory,
  fsynced, then ``os.replace``), so the collector never scrapes a half-written file; the temporary
  name does not end in ``.prom``, so the collector never reads it either.  The file is mode 0644
  (node_exporter usually runs as another user).  Each sample carries a ``job`` label.
- :func:`push_metrics` sends the same metrics *without* a ``job`` label, grouped by job only
  (``/metrics/job/NAME``): the Pushgateway adds ``job`` from the group.  A run that exited 0
  replaces the group (PUT); any other run adds to it (POST) and leaves out the last-success
  timestamp, so the previous success's value stays in the group.

Traps:
- Every value describes the *last* run, so every metric is a gauge and none ends in ``_total``
  (``rate()`` or ``increase()`` over them is meaningless; alert on their value).  Earlier
  versions named two of them ``batch_override_requests_total`` and ``batch_override_throttled_total``.
- ``batch_override_last_success_timestamp_seconds`` disappears when the caller passes ``None``.
  A failed run should pass the previous value (:func:`read_last_success`), or an alert such as
  ``time() - batch_override_last_success_timestamp_seconds > 2 * 86400`` goes silent instead of
  firing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import (
    basic_auth_handler,
    default_handler,
    push_to_gateway,
    pushadd_to_gateway,
)
from prometheus_client.parser import text_string_to_metric_families

from ..errors import ExitCode, UsageError
from ..files import atomic_writer
from ..outcome import Outcome
from ..summary import Summary

_PREFIX = "batch_override_"
LAST_SUCCESS = _PREFIX + "last_success_timestamp_seconds"
#: Seconds a push may take before it is given up (with a warning).
PUSH_TIMEOUT = 10.0
USERNAME_VAR = "PUSHGATEWAY_USERNAME"
PASSWORD_VAR = "PUSHGATEWAY_PASSWORD"


def build_registry(
    summary: Summary, *, job: str | None, last_success_unix: float | None, now: float | None = None
) -> CollectorRegistry:
    """The run's gauges in a fresh registry; a ``job`` label on each sample unless ``job`` is None.

    Every outcome is listed, zeros included, so a dashboard's series never vanish.
    """
    registry = CollectorRegistry(auto_describe=True)
    base = {} if job is None else {"job": job}

    def gauge(name: str, help_text: str, value: float) -> None:
        metric = Gauge(_PREFIX + name, help_text, list(base), registry=registry)
        (metric.labels(**base) if base else metric).set(value)

    rows = Gauge(_PREFIX + "rows", "Rows of the last run by outcome.", [*base, "outcome"], registry=registry)
    outcomes = [o.value for o in Outcome]
    outcomes += sorted(set(summary.outcomes) - set(outcomes))  # a hand-edited ledger's own words
    for outcome in outcomes:
        rows.labels(**base, outcome=outcome).set(summary.outcomes.get(outcome, 0))
    gauge("duration_seconds", "Wall time of the last run.", summary.duration)
    gauge(
        "last_run_timestamp_seconds",
        "Unix time the last run's metrics were written.",
        time.time() if now is None else now,
    )
    if last_success_unix is not None:
        gauge("last_success_timestamp_seconds", "Unix time of the last run that exited 0.", last_success_unix)
    finished_rows = sum(summary.outcomes.values())
    gauge(
        "rows_per_second",
        "Rows finished (given a ledger line) per second of the last run.",
        finished_rows / summary.duration if summary.duration > 0 else 0.0,
    )
    gauge("exit_code", "Exit code of the last run (0 = every row succeeded).", summary.exit_code)
    gauge("requests", "HTTP requests the last run sent (per run, not cumulative).", summary.requests)
    gauge(
        "throttled_requests",
        "Requests of the last run answered 429 (per run, not cumulative).",
        summary.throttled,
    )
    return registry


def render_metrics(
    summary: Summary, *, job: str, last_success_unix: float | None, now: float | None = None
) -> str:
    """The exposition text :func:`write_metrics` writes."""
    registry = build_registry(summary, job=job, last_success_unix=last_success_unix, now=now)
    return generate_latest(registry).decode("utf-8")


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

    For carrying the value over a failed run.  ``None`` when the file is missing, unreadable,
    not exposition text, or has no such sample for this job.
    """
    try:
        text = path.read_text(encoding="utf-8")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS and sample.labels.get("job") == job:
                    return float(sample.value)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return None


def check_pushgateway_url(url: str) -> None:
    """:class:`UsageError` unless ``url`` is ``http(s)://HOST[:PORT][/PATH]`` (or ``HOST:PORT``)."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise UsageError(f"--pushgateway {url!r}: expected http(s)://HOST[:PORT]")


def _auth_handler() -> Callable[..., Callable[[], None]]:
    """Basic auth from the environment (never a flag: flags show in ``ps``), else no auth."""
    username, password = os.environ.get(USERNAME_VAR), os.environ.get(PASSWORD_VAR)
    if not username and not password:
        return default_handler

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return handler


def push_metrics(gateway: str, summary: Summary, *, job: str, now: float | None = None) -> None:
    """Push ``summary`` to the Pushgateway at ``gateway``, in the group of ``job`` alone.

    Exit 0 replaces the group (PUT) with a fresh last-success timestamp; any other exit adds to
    it (POST) without one, so the previous success's timestamp survives.  Raises ``OSError``
    (``urllib``'s errors included) or ``ValueError`` when the push fails; at most
    :data:`PUSH_TIMEOUT` seconds.
    """
    clock = time.time() if now is None else now
    succeeded = summary.exit_code == ExitCode.OK
    registry = build_registry(summary, job=None, last_success_unix=clock if succeeded else None, now=clock)
    push = push_to_gateway if succeeded else pushadd_to_gateway
    push(gateway, job=job, registry=registry, timeout=PUSH_TIMEOUT, handler=_auth_handler())


__all__ = [
    "LAST_SUCCESS",
    "PUSH_TIMEOUT",
    "build_registry",
    "check_pushgateway_url",
    "push_metrics",
    "read_last_success",
    "render_metrics",
    "write_metrics",
]

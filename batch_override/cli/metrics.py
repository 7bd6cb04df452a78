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
- A push is one request with a total deadline (:data:`PUSH_TIMEOUT`, from the first byte sent to
  the last byte read) and never follows a redirect: a 3xx is a failed push naming the status and
  the ``Location``'s host, so the Basic auth credentials never reach a second host.
- :class:`LiveMetrics` is the ``--progress-interval`` refresh while a run runs: in-progress
  gauges (``batch_override_run_*``) written beside what the textfile held, or POSTed to the
  group; :func:`build_registry` ends them (``run_in_progress`` 0) with the run's final values.

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

import asyncio
import base64
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote_plus, urlsplit

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Metric, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ..errors import EndReason, ExitCode, end_reason, first_line
from ..files import atomic_writer
from ..outcome import Outcome
from ..sending.client import env_proxy
from ..summary import ProgressSnapshot, Summary
from ..urls import where

_PREFIX = "batch_override_"
LAST_SUCCESS = _PREFIX + "last_success_timestamp_seconds"
RUN_IN_PROGRESS = _PREFIX + "run_in_progress"
#: Seconds a push may take before it is given up (with a warning).
PUSH_TIMEOUT = 10.0
USERNAME_VAR = "PUSHGATEWAY_USERNAME"
PASSWORD_VAR = "PUSHGATEWAY_PASSWORD"

log = logging.getLogger("batch_override")


_Setter = Callable[[str, str, float], None]


def _gauge_setter(registry: CollectorRegistry, base: dict[str, str]) -> _Setter:
    """``gauge(name, help, value)``: one gauge in ``registry``, labelled with ``base``."""

    def gauge(name: str, help_text: str, value: float) -> None:
        metric = Gauge(_PREFIX + name, help_text, list(base), registry=registry)
        (metric.labels(**base) if base else metric).set(value)

    return gauge


def _run_gauges(
    gauge: Callable[[str, str, float], None], *, in_progress: bool, done: int, total: int
) -> None:
    """The in-progress gauges, as a running job shows them or as a finished run leaves them."""
    gauge(
        RUN_IN_PROGRESS.removeprefix(_PREFIX),
        "1 while a run is in progress, 0 once it ended.",
        int(in_progress),
    )
    gauge(
        "run_rows_done",
        "Rows of the current (or last) run finished so far: given a ledger line, or counted without "
        "one (skipped, or rejected in an earlier run); rows never attempted are not done.",
        done,
    )
    gauge("run_input_rows", "Rows of the current (or last) run's input.", total)


def build_registry(
    summary: Summary,
    *,
    job: str | None,
    last_success_unix: float | None,
    now: float | None = None,
    reason: EndReason | None = None,
) -> CollectorRegistry:
    """The run's gauges in a fresh registry; a ``job`` label on each sample unless ``job`` is None.

    Every outcome is listed, zeros included, so a dashboard's series never vanish.
    ``batch_override_exit_reason`` is 1 with a ``reason`` label, why the run ended in a word
    (:class:`~..errors.EndReason`; default: the exit code's).  A gauge of its own, not a label
    of ``batch_override_exit_code``, so that series stays one per job as alerts and dashboards
    written for it expect.
    """
    registry = CollectorRegistry(auto_describe=True)
    base = {} if job is None else {"job": job}
    gauge = _gauge_setter(registry, base)

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
        "Rows finished (with a ledger line, or counted without one) per second of the last run.",
        finished_rows / summary.duration if summary.duration > 0 else 0.0,
    )
    gauge("exit_code", "Exit code of the last run (0 = every row succeeded).", summary.exit_code)
    gauge(
        "rows_not_attempted",
        "Rows of the last run never attempted (--limit, or not reached before a stop): no ledger line; "
        "the next run of the input sends them.",
        summary.not_attempted,
    )
    why = Gauge(
        _PREFIX + "exit_reason",
        "1, labelled with why the last run ended in a word (finished, usage, input, ...).",
        [*base, "reason"],
        registry=registry,
    )
    why.labels(**base, reason=(reason or end_reason(summary.exit_code)).value).set(1)
    gauge("mean_in_flight", "Requests in flight on average in the last run.",
          float(summary.concurrency.get("mean_in_flight", 0.0)))  # fmt: skip
    # The in-progress gauges as a finished run leaves them: not running, every row done.
    _run_gauges(gauge, in_progress=False, done=finished_rows, total=summary.rows)
    gauge("requests", "HTTP requests the last run sent (per run, not cumulative).", summary.requests)
    gauge(
        "throttled_requests",
        "Requests of the last run answered 429 (per run, not cumulative).",
        summary.throttled,
    )
    return registry


def render_metrics(
    summary: Summary,
    *,
    job: str,
    last_success_unix: float | None,
    now: float | None = None,
    reason: EndReason | None = None,
) -> str:
    """The exposition text :func:`write_metrics` writes."""
    registry = build_registry(summary, job=job, last_success_unix=last_success_unix, now=now, reason=reason)
    return generate_latest(registry).decode("utf-8")


def write_metrics(
    path: Path,
    summary: Summary,
    *,
    job: str,
    last_success_unix: float | None,
    now: float | None = None,
    reason: EndReason | None = None,
) -> None:
    """Write ``summary`` to ``path`` (``*.prom`` in node_exporter's textfile directory), atomically.

    ``last_success_unix`` is the Unix time of the last run that exited 0, or ``None`` when not
    known (the metric is then left out); ``now`` (default: the clock) is the last-run timestamp.
    """
    text = render_metrics(summary, job=job, last_success_unix=last_success_unix, now=now, reason=reason)
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


class PushFailed(Exception):
    """A push that did not succeed, with one line saying why (never the credentials)."""


def _auth_headers() -> dict[str, str]:
    """Basic auth from the environment (never a flag: flags show in ``ps``), else no auth."""
    username, password = os.environ.get(USERNAME_VAR), os.environ.get(PASSWORD_VAR)
    if not username and not password:
        return {}
    token = base64.b64encode(f"{username or ''}:{password or ''}".encode()).decode("ascii")
    return {"Authorization": "Basic " + token}


def push_url(gateway: str, job: str) -> str:
    """``GATEWAY/metrics/job/JOB``, escaped as the Pushgateway reads it (base64 for ``/``, space, "")."""
    base = (gateway if "://" in gateway else "http://" + gateway).rstrip("/")
    if job == "" or "/" in job or " " in job:
        return f"{base}/metrics/job@base64/{base64.urlsafe_b64encode(job.encode()).decode() or '='}"
    return f"{base}/metrics/job/{quote_plus(job)}"


async def push_registry_async(
    gateway: str, registry: CollectorRegistry, *, job: str, method: str, deadline: float = PUSH_TIMEOUT
) -> None:
    """Send ``registry`` to the group of ``job`` with ``method`` (PUT replaces the group, POST
    replaces only the names it carries).  One request, at most ``deadline`` seconds in all (a
    server that trickles its answer costs no more); a redirect is not followed.  Raises
    :class:`PushFailed` when the push does not succeed.
    """
    url = push_url(gateway, job)
    proxy, proxy_auth = env_proxy(url)
    timeout = aiohttp.ClientTimeout(total=deadline)
    try:
        # trust_env=False: no ~/.netrc credentials for this host; the proxy is resolved above.
        async with (
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
            session.request(
                method,
                url,
                data=generate_latest(registry),
                headers={"Content-Type": CONTENT_TYPE_LATEST, **_auth_headers()},
                allow_redirects=False,  # the credentials go to this host only
                proxy=proxy,
                proxy_auth=proxy_auth,
            ) as resp,
        ):
            await resp.read()  # within the deadline too: a trickled body is given up
            if 300 <= resp.status < 400:
                where = urlsplit(resp.headers.get("Location", "")).hostname or "no Location"
                raise PushFailed(f"it answered {resp.status}, a redirect to {where}; not followed")
            if resp.status >= 300:
                raise PushFailed(f"it answered {resp.status} {resp.reason or ''}".rstrip())
    except TimeoutError:
        raise PushFailed(f"no complete answer within {deadline:g} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise PushFailed(first_line(exc) or type(exc).__name__) from None


async def push_metrics_async(
    gateway: str,
    summary: Summary,
    *,
    job: str,
    now: float | None = None,
    deadline: float = PUSH_TIMEOUT,
    reason: EndReason | None = None,
) -> None:
    """Push ``summary`` to the Pushgateway at ``gateway``, in the group of ``job`` alone.

    Exit 0 replaces the group (PUT) with a fresh last-success timestamp; any other exit adds to
    it (POST) without one, so the previous success's timestamp survives.  Raises
    :class:`PushFailed` as :func:`push_registry_async` does.
    """
    clock = time.time() if now is None else now
    succeeded = summary.exit_code == ExitCode.OK
    registry = build_registry(
        summary, job=None, last_success_unix=clock if succeeded else None, now=clock, reason=reason
    )
    await push_registry_async(
        gateway, registry, job=job, method="PUT" if succeeded else "POST", deadline=deadline
    )


def push_metrics(
    gateway: str, summary: Summary, *, job: str, now: float | None = None, reason: EndReason | None = None
) -> None:
    """:func:`push_metrics_async` from synchronous code (after the run's event loop has ended)."""
    asyncio.run(push_metrics_async(gateway, summary, job=job, now=now, reason=reason))


def build_progress_registry(snap: ProgressSnapshot, *, job: str | None) -> CollectorRegistry:
    """The in-progress gauges (``batch_override_run_*``) of a running job at ``snap``.

    Names distinct from the last run's, so a refresh never changes what an alert on the last
    run's exit code or success time sees.
    """
    registry = CollectorRegistry(auto_describe=True)
    base = {} if job is None else {"job": job}
    gauge = _gauge_setter(registry, base)

    _run_gauges(gauge, in_progress=True, done=snap.rows_done, total=snap.rows_total)
    gauge(
        "run_last_progress_timestamp_seconds",
        "Unix time the running job's rows done last grew.",
        snap.last_progress,
    )
    gauge("run_rows_per_second", "Rows the running job finished per second, recently.", snap.rows_per_s)
    if snap.eta_s is not None:
        gauge("run_eta_seconds", "Seconds the running job needs at its recent rate.", snap.eta_s)
    gauge("run_requests", "HTTP requests the running job sent so far.", snap.requests)
    gauge("run_throttled_requests", "Requests of the running job answered 429 so far.", snap.throttled)
    gauge("run_in_flight", "Requests the running job has in flight.", snap.in_flight)
    return registry


class _Carried:
    """A collector that serves metric families read back from a previous textfile as they were."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


class LiveMetrics:
    """The ``--progress-interval`` refresh of ``--metrics-file`` and ``--pushgateway`` (a callback).

    The textfile is replaced atomically with the in-progress gauges plus every other sample the
    file held when the run started (the last run's exit code and success time stay visible to
    alerts while this one runs).  The Pushgateway gets the in-progress gauges by POST, which
    replaces only those names in the group: the last-success timestamp is never touched.  A
    failure is one warning per destination per run, never an exception.
    """

    def __init__(self, *, job: str, metrics_file: Path | None, gateway: str | None) -> None:
        self.job = job
        self.metrics_file = metrics_file
        self.gateway = gateway
        self._warned: set[str] = set()
        self._carried: list[Metric] = []
        if metrics_file is not None:
            try:
                text = metrics_file.read_text(encoding="utf-8")
                families = list(text_string_to_metric_families(text))
            except (OSError, UnicodeDecodeError, ValueError):
                families = []
            self._carried = [f for f in families if not f.name.startswith(_PREFIX + "run_")]

    def __call__(self, snap: ProgressSnapshot) -> None:
        if self.metrics_file is not None:
            try:
                registry = build_progress_registry(snap, job=self.job)
                registry.register(_Carried(self._carried))
                with atomic_writer(self.metrics_file) as fh:
                    fh.write(generate_latest(registry))
            except (OSError, ValueError) as exc:
                self._warn("file", f"cannot refresh --metrics-file {self.metrics_file}: {exc}")
        if self.gateway is not None:
            try:
                # Called in a worker thread (the ticker's), which has no running loop of its own.
                registry = build_progress_registry(snap, job=None)
                asyncio.run(push_registry_async(self.gateway, registry, job=self.job, method="POST"))
            except PushFailed as exc:
                self._warn("push", f"cannot push progress to --pushgateway {where(self.gateway)}: {exc}")

    def _warn(self, where: str, message: str) -> None:
        if where not in self._warned:
            self._warned.add(where)
            log.warning("%s (further failures not logged)", message)


__all__ = [
    "LAST_SUCCESS",
    "PUSH_TIMEOUT",
    "RUN_IN_PROGRESS",
    "LiveMetrics",
    "PushFailed",
    "build_progress_registry",
    "build_registry",
    "push_metrics",
    "push_metrics_async",
    "push_registry_async",
    "push_url",
    "read_last_success",
    "render_metrics",
    "write_metrics",
]

"""The ``run`` command's options: flags and job-file keys generated from :class:`RunConfig`'s fields.

Each field with a line in :data:`HELP` becomes a flag (``--`` plus the field name, unless the
line says otherwise) and a job-file key (the field name); its parser and its default come from
the field, so a help text names the default the run really uses (``{default}`` in the text).
What the command line does around the run (the key file, logs, summary, metrics) is one
:class:`OutputOptions` value, job-file keys too.

Precedence: built-in defaults < job file < flags.  A flag's default is ``SUPPRESS``, so only a
flag actually given overrides the job file.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..apikey import ENV_VAR
from ..config import Allowed, RunConfig, option_name, text_parser
from ..domain import MEDIA_COLUMN
from ..errors import UsageError
from ..outcome import SUCCESS_OUTCOMES, Outcome
from .jobfile import load_job


@dataclass(frozen=True, slots=True)
class Help:
    """A run option's help text (``{default}``: the field's default), metavar and flag."""

    text: str
    metavar: str | None = None
    flag: str | None = None  # else -- and the field name
    negate: bool = False  # a switch that turns a default-on field off (--no-preflight)


_OK = ",".join(o.value for o in Outcome if o in SUCCESS_OUTCOMES)
#: The fields of :class:`RunConfig` that are run options, with their help (in --help's order).
HELP: dict[str, Help] = {
    "api_url": Help("API base URL (default {default}); https only, http for loopback", "URL"),
    "media": Help("media of rows without a media column: video, image or audio (default {default})"),
    "hash_column": Help("name of the hash column (default {default})", "NAME"),
    "classification_column": Help("name of the classification column (default {default})", "NAME"),
    "encoding": Help(
        "text encoding of a CSV without a byte-order mark, e.g. cp1252 or latin-1 (default utf-8)", "NAME"
    ),
    "media_column": Help(
        f"name of the per-row media column; a name given must exist (default: {MEDIA_COLUMN}, when present)",
        "NAME",
    ),
    "concurrency": Help(
        "requests in flight: {default} (default) keeps what the pace needs at the latency observed, "
        "backing off when more only adds latency; or N, fixed",
        "N|auto",
    ),
    "max_concurrency": Help(
        "auto concurrency: requests in flight at most, also the connection pool (default {default})", "N"
    ),
    "rate": Help(
        "{default} (default): learn the server's limit from its X-RateLimit headers and pace to it less "
        "--headroom; or N/PERIOD such as 60/min, 5/s, 3600/h: never more than N in any PERIOD, evenly spaced"
    ),
    "headroom": Help("auto rate: share of the server's limit left unused (default {default})", "F"),
    "max_retries": Help("retries per row for transient answers (default {default})", "N"),
    "timeout": Help("seconds per request (default {default})", "S"),
    "limit": Help("send only the first N sendable rows (a canary); later rows wait for a later run", "N"),
    "max_outage": Help("seconds of server-wide trouble before exit 5 (default {default})", "S"),
    "max_wait": Help("longest Retry-After to wait for before exit 5 (default {default})", "S"),
    "max_failure_rate": Help(
        "abort (exit 3) when this share of the last --failure-window rows failed "
        "or was rejected (default {default})",
        "F",
    ),
    "failure_window": Help("rows the failure rate is measured over (default {default})", "N"),
    "grace": Help(
        "seconds in-flight requests get after SIGINT/SIGTERM/SIGHUP or a deadline (default {default})", "S"
    ),
    "max_duration": Help(
        "stop as on SIGTERM this long after the start, e.g. 7h30m, 90m, 3s (exit 7; the rerun resumes)",
        "DURATION",
    ),
    "stop_at": Help(
        "stop as on SIGTERM at the next such time of day, local unless a zone is given: 06:00, "
        "'06:00 UTC', '06:00 Europe/Rome' (exit 7; the rerun resumes)",
        "HH:MM[ ZONE]",
    ),
    "backoff_base": Help("first retry delay in seconds, doubling (default {default})", "S"),
    "ca_bundle": Help(
        "PEM file of certificate authorities added to the system's (SSL_CERT_FILE replaces those)", "PATH"
    ),
    "label_map": Help("other words for the classifications, e.g. ai=artificial,real=human", "MAP"),
    "ok_outcomes": Help(
        f"outcomes that count as success for the exit code (default {_OK}); e.g. add not_ready for cron",
        "LIST",
    ),
    "give_up_after_days": Help(
        "a row still not_ready this many days after it was first seen (the start of the first run that "
        "ledgered it) becomes rejected / gave_up",
        "DAYS",
        flag="--give-up-after",
    ),
    "progress_interval": Help(
        "every S seconds log one progress line (done/total, outcomes, rate, pace, in flight, ETA; JSON "
        "with --log-format json) and refresh --metrics-file / --pushgateway with in-progress gauges "
        "(default: off)",
        "S",
    ),
    "dry_run": Help(
        "validate, plan and estimate the duration; ledger lines say planned; send no override "
        "(with a key, one empty preflight reads the server's limit and checks the key and URL as the "
        "run does: exit 3 or 5 where the run would stop)"
    ),
    "retry_rejected": Help("send again rows an earlier run saw rejected"),
    "record_skipped": Help(
        "also write a ledger line for each row the run does not attempt (skipped: done in an earlier "
        "run; rejected previously_rejected/classification_locked: rejected in one; aborted: not "
        "reached before a stop), as earlier versions did; default: counted in the summary, run log "
        "and metrics, not written"
    ),
    "allow_empty": Help(
        "an input with a header but no data rows is 0 rows, exit 0 (an input of the day's new "
        "corrections on a quiet day); without it, exit 2 (a cumulative export with no rows is broken)"
    ),
    "preflight": Help(
        "skip the key and URL check before the first row: a wrong key or --api-url is then found "
        "by the rows themselves (a server that accepts anything gets them; a host that cannot be "
        "reached is retried without a warning until --max-outage, then exit 5)",
        flag="--no-preflight",
        negate=True,
    ),
    "neutralize_formulas": Help(
        "write cells starting with = + - @ as they are (for machine readers)", flag="--raw-cells", negate=True
    ),
    "s3_endpoint": Help(
        "s3:// inputs: the S3 service, e.g. https://minio.internal:9000 (default AWS; AWS_ENDPOINT_URL "
        "is not read); credentials come from AWS's usual chain (environment, profile, role)",
        "URL",
    ),
    "s3_region": Help("s3:// inputs: the bucket's region (default: asked of AWS, or us-east-1)", "NAME"),
    "gcs_endpoint": Help(
        "gs:// inputs: the Cloud Storage service (default Google's); credentials from Google's "
        "application default credentials",
        "URL",
    ),
    "anonymous": Help("read s3:// and gs:// inputs without credentials (public buckets)"),
}
#: The run options that say where an s3:// or gs:// input is and how to reach it.
OBJECT_STORE = ("s3_endpoint", "s3_region", "gcs_endpoint", "anonymous")


@dataclass(frozen=True, slots=True)
class OutputOptions:
    """What the command line does around a run: the key file, logging, the summary and metrics."""

    api_key_file: str | None = None
    log_format: str = "text"
    quiet: bool = False
    verbose: int = 0
    summary: str | None = None
    metrics_file: str | None = None
    metrics_job: str | None = None
    pushgateway: str | None = None
    ping_url: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> OutputOptions:
        """From a job file's or the flags' values, each checked (exit 2 naming the key).  The
        trap: taken by its truth, a job file's ``quiet = "no"`` meant yes."""
        checked = {k: _output_value(k, v) for k, v in values.items() if v is not None}
        return cls(**checked)


#: The output options checked as the run options are (:class:`~.config.Allowed`).
_OUTPUT_RANGES = {"quiet": Allowed(bool), "verbose": Allowed(int, 0)}


def _output_value(key: str, value: Any) -> Any:
    if key in _OUTPUT_RANGES:
        _OUTPUT_RANGES[key].check(key, value)
    elif key == "log_format":
        if value not in ("text", "json"):
            raise UsageError(f"{option_name(key)} must be text or json (got {value!r})")
    elif isinstance(value, os.PathLike):
        return os.fspath(value)
    elif not isinstance(value, str):
        raise UsageError(f"{option_name(key)} must be text (got {value!r})")
    return value


OUTPUT_KEYS = frozenset(f.name for f in dataclasses.fields(OutputOptions))
#: Every key a job file may hold: the run options, the input, the ledger and the output options.
JOB_KEYS = {*HELP, "input", "ledger", "give_up_after", "progress", *OUTPUT_KEYS}


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` for argparse: our one-line errors become its usage errors (exit 2, one line)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _shown(default: object) -> str:
    return f"{default:g}" if isinstance(default, float) else str(default)


def add_config_options(p: argparse.ArgumentParser, names: Collection[str] = HELP.keys()) -> None:
    """A flag for each run option of :data:`HELP` (or those of ``names``), in :class:`RunConfig`'s
    field order.  A flag not given leaves no attribute: the job file's value or the default applies."""
    for field in dataclasses.fields(RunConfig):
        about = HELP.get(field.name)
        if about is None or field.name not in names:
            continue
        flag = about.flag or "--" + field.name.replace("_", "-")
        text = about.text.format(default=_shown(field.default))
        parse = text_parser(field.name)
        if parse is None:
            kind: dict[str, Any] = {"action": "store_const", "const": not about.negate}
        else:
            kind = {"type": _argparse_type(parse), "metavar": about.metavar}
        p.add_argument(flag, dest=field.name, default=argparse.SUPPRESS, help=text, **kind)


_OUTPUT_FLAGS = (
    ("--summary", "PATH", "also write the summary as JSON"),
    (
        "--metrics-file",
        "PATH",
        "write Prometheus textfile-collector metrics here (atomically), for node_exporter",
    ),
    (
        "--metrics-job",
        "NAME",
        "the job label of those metrics, or their Pushgateway group (default: the ledger's file name)",
    ),
    (
        "--pushgateway",
        "URL",
        "push the metrics to this Prometheus Pushgateway, grouped by job (basic auth from "
        "$PUSHGATEWAY_USERNAME and $PUSHGATEWAY_PASSWORD)",
    ),
    (
        "--ping-url",
        "URL",
        "healthchecks-style dead man's switch: URL/start at the start, then URL on exit 0 or "
        "URL/CODE; 10 s each, never the API key, redirects not followed, a failure only warns "
        "(the final ping's even under --quiet)",
    ),
)


def add_job_option(p: argparse.ArgumentParser) -> None:
    """``--job TOML``: ``run``'s and ``validate``'s (which takes the options that say how to read)."""
    p.add_argument("--job", metavar="TOML", help="job file supplying any option below; flags override it")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options of ``run`` but its log options: the job file, the key file, RunConfig's, outputs."""
    add_job_option(p)
    p.add_argument("--api-key-file", metavar="PATH", help=f"file holding the API key (else ${ENV_VAR})")
    add_config_options(p)
    for flag, metavar, text in _OUTPUT_FLAGS:
        p.add_argument(flag, metavar=metavar, default=argparse.SUPPRESS, help=text)
    for flag, value, text in (
        ("--progress", True, "draw a progress bar even when stderr is not a terminal"),
        ("--no-progress", False, "never draw a progress bar (default: only on a terminal)"),
    ):
        p.add_argument(
            flag, dest="progress", action="store_const", const=value, default=argparse.SUPPRESS, help=text
        )


def given_values(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--job`` file's values with the flags actually given over them (flags win)."""
    values: dict[str, Any] = {}
    job = getattr(args, "job", None)
    if job:
        values.update(load_job(job, JOB_KEYS))
    flags = {k: v for k, v in vars(args).items() if k in JOB_KEYS and v is not None}
    if not flags.get("verbose"):
        flags.pop("verbose", None)  # -v counts from 0: only a given -v overrides the job file
    values.update(flags)
    return values


def config_from(args: argparse.Namespace) -> tuple[RunConfig, OutputOptions]:
    """The run's config and output options from ``run``'s parsed flags and its ``--job`` file."""
    values = given_values(args)
    output = OutputOptions.from_mapping({k: values.pop(k) for k in OUTPUT_KEYS if k in values})
    if output.quiet and "progress" not in values:
        values["progress"] = False
    if not values.get("input"):
        raise UsageError("missing INPUT (a corrections file, or - for standard input)")
    if not values.get("ledger"):
        raise UsageError("missing --ledger PATH: every run writes a ledger")
    values["input"] = str(values["input"])
    return RunConfig.from_mapping(values), output


__all__ = ["HELP", "JOB_KEYS", "OutputOptions", "add_run_options", "config_from"]

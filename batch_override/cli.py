"""The ``batch-override`` command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__, hashing, report, validate
from .apikey import ENV_VAR, load_api_key
from .config import DEFAULT_API_URL, Rate, RunConfig, parse_concurrency, parse_label_map, parse_outcomes
from .errors import BatchOverrideError, ExitCode, UsageError, first_line, report_internal_error
from .jobfile import load_job
from .logs import current_format, json_line, setup_logging
from .metrics import check_pushgateway_url, push_metrics, read_last_success, write_metrics
from .summary import Summary

log = logging.getLogger("batch_override")

EXIT_CODES = """\
exit codes:
  0    every row succeeded (submitted, already_submitted, duplicate, skipped, planned)
  1    the run finished but some rows did not (invalid, conflict, rejected, not_ready, failed)
  2    usage error (an option out of range), unreadable input, or an input changed before
       any row was handed out; nothing was sent
  3    aborted: key refused (401/403), wrong --api-url, --max-failure-rate exceeded, or the
       input changed while rows were being sent
  4    another run holds the ledger
  5    outage: the server stayed unavailable past --max-outage, or asked to wait past --max-wait
  6    the ledger could not be written (disk full, quota, I/O error); a rerun resumes
  70   internal error (a bug); -v shows the traceback
  130  interrupted (SIGINT)   143  terminated (SIGTERM)
  when several apply: 70, then 6, then the first reason the run stopped (3, 5, 130, 143: a signal
  after a 401 stop exits 3), then 1, then 0
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (cron mails and log shippers get one line)."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _rate(text: str) -> Rate | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return Rate.parse(text)
    except UsageError as exc:  # argparse turns this into its one-line usage error (exit 2)
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclasses.dataclass(frozen=True)
class _Opt:
    name: str  # RunConfig field
    type: Callable[[str], Any] | None
    help: str
    flag: str | None = None
    metavar: str | None = None
    negate: bool = False  # a boolean default-on field turned off by --no-...


_OPTS = (
    _Opt(
        "api_url",
        str,
        f"API base URL (default {DEFAULT_API_URL}); https only, http for loopback",
        metavar="URL",
    ),
    _Opt("media", str, "media of rows without a media column: video, image or audio (default video)"),
    _Opt("hash_column", str, "name of the hash column (default hash)", metavar="NAME"),
    _Opt(
        "classification_column",
        str,
        "name of the classification column (default classification)",
        metavar="NAME",
    ),
    _Opt(
        "encoding",
        str,
        "text encoding of a CSV without a byte-order mark, e.g. cp1252 or latin-1 (default utf-8)",
        metavar="NAME",
    ),
    _Opt(
        "media_column",
        str,
        "name of the per-row media column; a name given must exist (default: media, when present)",
        metavar="NAME",
    ),
    _Opt(
        "concurrency",
        parse_concurrency,
        "requests in flight: auto (default) keeps what the pace needs at the latency observed, "
        "backing off when more only adds latency; or N, fixed",
        metavar="N|auto",
    ),
    _Opt(
        "max_concurrency",
        int,
        "auto concurrency: requests in flight at most, also the connection pool (default 64)",
        metavar="N",
    ),
    _Opt(
        "rate",
        _rate,
        "auto (default): learn the server's limit from its X-RateLimit headers and pace to it less "
        "--headroom; or N/PERIOD such as 60/min, 5/s, 3600/h: never more than N in any PERIOD, evenly spaced",
    ),
    _Opt("headroom", float, "auto rate: share of the server's limit left unused (default 0.1)", metavar="F"),
    _Opt("max_retries", int, "retries per row for transient answers (default 5)", metavar="N"),
    _Opt("timeout", float, "seconds per request (default 30)", metavar="S"),
    _Opt(
        "limit",
        int,
        "send only the first N sendable rows (a canary); later rows wait for a later run",
        metavar="N",
    ),
    _Opt(
        "max_outage",
        float,
        "seconds of server-wide trouble before exit 5 (default 1800)",
        metavar="S",
    ),
    _Opt(
        "max_wait",
        float,
        "longest Retry-After to wait for before exit 5 (default 900)",
        metavar="S",
    ),
    _Opt(
        "max_failure_rate",
        float,
        "abort (exit 3) when this share of the last --failure-window rows failed "
        "or was rejected (default 0.5)",
        metavar="F",
    ),
    _Opt("failure_window", int, "rows the failure rate is measured over (default 200)", metavar="N"),
    _Opt(
        "grace",
        float,
        "seconds in-flight requests get after SIGINT/SIGTERM (default 10)",
        metavar="S",
    ),
    _Opt("backoff_base", float, "first retry delay in seconds, doubling (default 0.5)", metavar="S"),
    _Opt(
        "ca_bundle",
        str,
        "PEM file of certificate authorities added to the system's (SSL_CERT_FILE replaces those)",
        metavar="PATH",
    ),
    _Opt(
        "label_map",
        parse_label_map,
        "other words for the classifications, e.g. ai=artificial,real=human",
        metavar="MAP",
    ),
    _Opt(
        "ok_outcomes",
        parse_outcomes,
        "outcomes that count as success for the exit code (default "
        "submitted,already_submitted,duplicate,skipped,planned); e.g. add not_ready for cron",
        metavar="LIST",
    ),
    _Opt(
        "give_up_after_days",
        float,
        "a row still not_ready this many days after it was first seen (the start of the first run that "
        "ledgered it) becomes rejected / gave_up",
        flag="--give-up-after",
        metavar="DAYS",
    ),
    _Opt("dry_run", None, "validate and plan; ledger lines say planned; send nothing"),
    _Opt("retry_rejected", None, "send again rows an earlier run saw rejected"),
    _Opt("preflight", None, "skip the key check before the first row", flag="--no-preflight", negate=True),
    _Opt(
        "neutralize_formulas",
        None,
        "write cells starting with = + - @ as they are (for machine readers)",
        flag="--raw-cells",
        negate=True,
    ),
)
_EXTRA_KEYS = (
    "api_key_file", "log_format", "quiet", "verbose", "summary", "metrics_file", "metrics_job", "pushgateway",
)  # fmt: skip
_JOB_KEYS = {o.name for o in _OPTS} | {"input", "ledger", "give_up_after", "progress", *_EXTRA_KEYS}
#: Job-file values that arrive as text (or TOML lists/tables) and need the flag's parser.
_PARSERS: dict[str, Callable[[str], Any]] = {
    "rate": lambda text: "auto" if text.strip().lower() == "auto" else Rate.parse(text),
    "concurrency": parse_concurrency,
    "label_map": parse_label_map,
    "ok_outcomes": parse_outcomes,
}


def _argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` for argparse: our one-line errors become its usage errors (exit 2, one line)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", metavar="TOML", help="job file supplying any option below; flags override it")
    p.add_argument("--api-key-file", metavar="PATH", help=f"file holding the API key (else ${ENV_VAR})")
    for opt in _OPTS:
        flag = opt.flag or "--" + opt.name.replace("_", "-")
        if opt.type is None:
            p.add_argument(
                flag,
                dest=opt.name,
                action="store_const",
                const=not opt.negate,
                default=argparse.SUPPRESS,
                help=opt.help,
            )
        else:
            p.add_argument(
                flag,
                dest=opt.name,
                type=_argparse_type(opt.type),
                default=argparse.SUPPRESS,
                metavar=opt.metavar,
                help=opt.help,
            )
    p.add_argument(
        "--summary", metavar="PATH", default=argparse.SUPPRESS, help="also write the summary as JSON"
    )
    p.add_argument(
        "--metrics-file",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="write Prometheus textfile-collector metrics here (atomically), for node_exporter",
    )
    p.add_argument(
        "--metrics-job",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="the job label of those metrics, or their Pushgateway group (default: the ledger's file name)",
    )
    p.add_argument(
        "--pushgateway",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="push the metrics to this Prometheus Pushgateway, grouped by job (basic auth from "
        "$PUSHGATEWAY_USERNAME and $PUSHGATEWAY_PASSWORD)",
    )
    p.add_argument(
        "--progress",
        dest="progress",
        action="store_const",
        const=True,
        default=argparse.SUPPRESS,
        help="draw a progress bar even when stderr is not a terminal",
    )
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_const",
        const=False,
        default=argparse.SUPPRESS,
        help="never draw a progress bar (default: only on a terminal)",
    )
    _add_log_options(p)


def _add_log_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=argparse.SUPPRESS,
        help="stderr log format (default text)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_const",
        const=True,
        default=argparse.SUPPRESS,
        help="errors only, and the summary when the exit code is not 0 (for cron)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more detail")


def _add_error_options(p: argparse.ArgumentParser) -> None:
    """How an internal error is shown, for commands without the run's log options."""
    p.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="error line format (default text)"
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="show the traceback of an internal error"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="batch-override",
        description="Submit identifAI classification overrides in bulk: paced, idempotent, resumable, "
        "with one ledger line per input row.",
        epilog=EXIT_CODES + f"\nThe API key comes from ${ENV_VAR} or --api-key-file, never from a flag.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"batch-override {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="send the corrections of INPUT, writing the ledger",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "input",
        nargs="?",
        metavar="INPUT",
        help="corrections file: .csv, .csv.gz, .tsv, .parquet, or - for CSV on stdin",
    )
    run.add_argument(
        "--ledger",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="ledger CSV to append to (created if missing); required",
    )
    _add_run_options(run)
    validate.add_parser(sub, _add_log_options)
    report.add_parser(sub)
    hashing.add_parser(sub)
    for name in ("report", "hash"):
        _add_error_options(sub.choices[name])
    sub.add_parser(
        "emulator",
        help="serve the bundled API emulator (see: batch-override emulator --help)",
        add_help=False,
    )
    return parser


def _config_from(args: argparse.Namespace) -> tuple[RunConfig, dict[str, Any]]:
    values: dict[str, Any] = {}
    job = getattr(args, "job", None)
    if job:
        values.update(load_job(job, _JOB_KEYS))
    flags = {k: v for k, v in vars(args).items() if k in _JOB_KEYS and v is not None}
    if not flags.get("verbose"):
        flags.pop("verbose", None)  # -v counts from 0: only a given -v overrides the job file
    values.update(flags)
    if "give_up_after" in values:  # the job-file spelling of --give-up-after
        values["give_up_after_days"] = values.pop("give_up_after")
    if "progress" in vars(args):
        values["progress"] = args.progress
    extras: dict[str, Any] = {k: values.pop(k) for k in _EXTRA_KEYS if k in values}
    if extras.get("quiet") and "progress" not in values:
        values["progress"] = False
    if not values.get("input"):
        raise UsageError("missing INPUT (a corrections file, or - for standard input)")
    if not values.get("ledger"):
        raise UsageError("missing --ledger PATH: every run writes a ledger")
    for key, parse in _PARSERS.items():
        value = values.get(key)
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in value.items())
        if isinstance(value, str):
            values[key] = parse(value)
    values["ledger"] = Path(values["ledger"])
    values["input"] = str(values["input"])
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for key, value in list(values.items()):
        expected = fields[key].type
        if key != "rate" and expected in ("float", "int") and isinstance(value, int | float):
            values[key] = float(value) if expected == "float" else int(value)
    try:
        return RunConfig(**values), extras
    except TypeError as exc:
        raise UsageError(f"bad option value: {exc}") from None


def _run(args: argparse.Namespace) -> int:
    from .runner import run_job_async

    config, extras = _config_from(args)
    if extras.get("pushgateway"):  # a typo found now, not as a warning after the whole run
        check_pushgateway_url(str(extras["pushgateway"]))
    verbosity = max(args.verbose, int(extras.get("verbose") or 0))
    setup_logging(extras.get("log_format", "text"), verbosity, bool(extras.get("quiet")))
    api_key = (
        None if config.dry_run and not _key_available(extras) else load_api_key(extras.get("api_key_file"))
    )
    # Everything imported so far (pandas, pyarrow, aiohttp) lives for the whole run: keep the
    # cyclic garbage collector from walking it again and again while rows are sent (~8% CPU).
    gc.collect()
    gc.freeze()
    summary = asyncio.run(run_job_async(config, api_key))
    if not extras.get("quiet") or summary.exit_code != ExitCode.OK:
        if current_format() == "json":
            level = "info" if summary.exit_code == ExitCode.OK else "error"
            text = json_line(level, "summary", summary=summary.to_dict())
        else:
            text = summary.render()
        print(text, file=sys.stderr if extras.get("quiet") else sys.stdout)
    if extras.get("summary"):
        Path(extras["summary"]).write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    job = extras.get("metrics_job") or config.ledger
    name = job.stem if isinstance(job, Path) else str(job)
    if extras.get("metrics_file"):
        _write_metrics(Path(extras["metrics_file"]), summary, name)
    if extras.get("pushgateway"):
        try:
            push_metrics(str(extras["pushgateway"]), summary, job=name)
        except (OSError, ValueError) as exc:  # metrics must never change the run's exit code
            log.warning("cannot push metrics to --pushgateway %s: %s", extras["pushgateway"], first_line(exc))
    return summary.exit_code


def _write_metrics(path: Path, summary: Summary, name: str) -> None:
    # A failed run keeps the last success time, so a "no success for 2 days" alert still fires.
    last_success = time.time() if summary.exit_code == ExitCode.OK else read_last_success(path, job=name)
    try:
        write_metrics(path, summary, job=name, last_success_unix=last_success)
    except OSError as exc:
        log.error("cannot write --metrics-file %s: %s", path, exc.strerror or exc)


def _key_available(extras: dict[str, Any]) -> bool:
    import os

    return bool(extras.get("api_key_file") or os.environ.get(ENV_VAR))


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        from .emulator.cli import main as emulator_main

        return emulator_main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "validate":
            return validate.main_validate(args)
        handler = getattr(args, "handler", None)
        if handler is not None:
            return int(handler(args))
        parser.print_help()
        return ExitCode.USAGE
    except BatchOverrideError as exc:
        message = f"batch-override: error: {exc}"
        if current_format() == "json" or getattr(args, "log_format", None) == "json":
            message = json_line("error", message, exit_code=exc.exit_code)
        print(message, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("batch-override: interrupted", file=sys.stderr)
        return ExitCode.SIGINT
    except Exception as exc:  # a bug: one line, the traceback only when asked for
        json_format = current_format() == "json" or getattr(args, "log_format", None) == "json"
        # run's -v may come from its job file: the log level set up for this command says.
        set_up = args.command in ("run", "validate") and log.isEnabledFor(logging.DEBUG)
        verbose = bool(getattr(args, "verbose", 0)) or set_up
        return report_internal_error(exc, json_format=json_format, verbose=verbose)


if __name__ == "__main__":
    sys.exit(main())

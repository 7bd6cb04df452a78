"""The ``batch-override`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from .. import urls
from .._version import __version__
from ..apikey import ENV_VAR, load_api_key
from ..config import RunConfig
from ..errors import (
    BatchOverrideError,
    EndReason,
    ExitCode,
    LedgerLocked,
    UsageError,
    end_reason,
    first_line,
)
from ..summary import Summary
from ..urls import PING_URL, PUSHGATEWAY, check_url
from .logs import current_format, json_line, queued_stderr, setup_logging
from .options import OutputOptions, add_run_options, config_from

# The subcommands' modules (aiohttp, pyarrow, numpy, prometheus_client) are imported when one
# runs, never at start-up: --version and --help stay quick (a test lists what they import).

log = logging.getLogger("batch_override")

EXIT_CODES = """\
exit codes:
  0    every row succeeded (submitted, already_submitted, duplicate, skipped, planned)
  1    the run finished but some rows did not (invalid, conflict, rejected, not_ready, failed)
  2    usage error (an option out of range), unreadable input, a header with no rows (unless
       --allow-empty), a ledger or run log that is not UTF-8 (the line named) or not a regular
       file, or an input changed before any row was handed out; nothing was sent
  3    aborted: key refused (401/403), wrong --api-url (a name that does not exist, a redirect,
       404/405, a 2xx to the preflight), --max-failure-rate exceeded, or the input changed while
       rows were being sent
  4    another run holds the ledger
  5    outage: the server stayed unavailable past --max-outage (also a port that refuses or a
       resolver that is down, warned of at once), or asked to wait past --max-wait
  6    the ledger or a file beside it could not be written (disk full, quota, I/O error,
       permissions, a read-only place); a rerun resumes
  7    deadline: --max-duration or --stop-at reached; the rows not reached are counted
       not_attempted (no ledger line) and the next run of the input sends them
  70   internal error (a bug); -v shows the traceback
  129  hung up (SIGHUP, handled as SIGTERM)   130  interrupted (SIGINT)   143  terminated (SIGTERM);
       as at a deadline, the rows not reached are counted not_attempted and the next run sends them
  when several apply: 70, then 6, then the first reason the run stopped (3, 5, 7, 129, 130, 143: a
  signal after a 401 stop exits 3), then 1, then 0
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (cron mails and log shippers get one line)."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Subcommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Subcommands of which some are defined only once chosen: their modules import numpy and
    pyarrow, which ``--version`` and the top-level ``--help`` must not wait for.

    :meth:`later` adds a name and its ``--help`` line now, and ``define(self)`` (the module's
    ``add_parser``, which passes no ``help=``: the line is already there) when the name is parsed.
    ``prepare`` is called before a later command's modules are imported (their module-level
    ``pa.array`` calls are pyarrow's first: see :mod:`.nopandas`).
    The trap: until then ``choices[name]`` is an empty placeholder parser.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._later: dict[str, Callable[[argparse._SubParsersAction], None]] = {}  # type: ignore[type-arg]
        self.prepare: Callable[[], object] | None = None

    def later(self, name: str, help: str, define: Callable[[argparse._SubParsersAction], None]) -> None:  # type: ignore[type-arg]
        self.add_parser(name, help=help)
        self._later[name] = define

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        define = self._later.pop(values[0], None)
        if define is not None:
            if self.prepare is not None:
                self.prepare()
            del self._name_parser_map[values[0]]
            define(self)
        super().__call__(parser, namespace, values, option_string)


def _validate_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from . import validate_command

    validate_command.add_parser(sub, _add_log_options)


def _report_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ..report import run_report

    run_report.add_parser(sub)
    _add_error_options(sub.choices["report"])


def _hash_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from . import hash_command

    hash_command.add_parser(sub)
    _add_error_options(sub.choices["hash"])


def _add_run_options(p: argparse.ArgumentParser) -> None:
    add_run_options(p)
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


def build_parser(prepare: Callable[[], object] | None = None) -> argparse.ArgumentParser:
    """The command line's parser; ``prepare`` as :func:`main` says."""
    parser = _Parser(
        prog="batch-override",
        description="Submit identifAI classification overrides in bulk: paced, idempotent, resumable, "
        "with one ledger line per input row.",
        epilog=EXIT_CODES + f"\nThe API key comes from ${ENV_VAR} or --api-key-file, never from a flag.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"batch-override {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, action=_Subcommands)
    assert isinstance(sub, _Subcommands)
    sub.prepare = prepare
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
        help="corrections file: .csv, .csv.gz, .tsv, .parquet, or - for CSV on stdin; or an "
        "s3://BUCKET/KEY or gs://BUCKET/KEY object of one of those (copied once to a private temp file)",
    )
    run.add_argument(
        "--ledger",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="ledger CSV to append to (created if missing); required",
    )
    _add_run_options(run)
    sub.later(
        "validate",
        "check INPUT as run reads it and report problems; send nothing "
        "(exit 0 clean, 1 problems, 2 unreadable)",
        _validate_parser,
    )
    sub.later(
        "report",
        "summarise a run from its ledger; write the rows worth retrying as a new input",
        _report_parser,
    )
    sub.later(
        "hash", "compute the SHA-256 of the media files INPUT lists, writing a corrections file", _hash_parser
    )
    sub.add_parser(
        "emulator",
        help="serve the bundled API emulator (see: batch-override emulator --help)",
        add_help=False,
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    """``run``: the job with its outputs.  Once the options are known, every exit writes the
    metrics (a run that raised gets a summary of 0 rows with its exit code and reason), except
    exit 4: another run holds the ledger, and its metrics (in progress) stay."""
    config, output = config_from(args)
    _check_outputs(output)
    started = time.monotonic()
    try:
        return _run_checked(args, config, output)
    except LedgerLocked:
        raise
    except BatchOverrideError as exc:
        _failure_metrics(config, output, exc.exit_code, end_reason(exc.exit_code, exc), started, str(exc))
        raise
    except Exception as exc:  # a bug: exit 70, and the metrics say so
        _failure_metrics(config, output, ExitCode.INTERNAL, EndReason.INTERNAL, started, first_line(exc))
        raise


def _check_outputs(output: OutputOptions) -> None:
    """Exit 2 for an output the run could not use: a typo found now, not a warning after the run."""
    for rule, url in ((PUSHGATEWAY, output.pushgateway), (PING_URL, output.ping_url)):
        if url:  # a typo found now, not as a warning after the whole run
            check_url(rule, url)
    for flag, where in (("--summary", output.summary), ("--metrics-file", output.metrics_file)):
        if where and not Path(where).parent.is_dir():
            raise UsageError(f"{flag} {where}: the directory {Path(where).parent} does not exist")


def _run_checked(args: argparse.Namespace, config: RunConfig, output: OutputOptions) -> int:
    setup_logging(output.log_format, max(args.verbose, output.verbose), output.quiet)
    if not output.ping_url:
        return _run_job(config, output).exit_code
    from .ping import Pinger

    pinger = Pinger(output.ping_url)
    pinger.start()
    code: int = ExitCode.INTERNAL
    body = ""
    try:
        summary = _run_job(config, output)
        code, body = summary.exit_code, summary.render()
        return code
    except BatchOverrideError as exc:
        code, body = exc.exit_code, str(exc)
        raise
    except KeyboardInterrupt:
        code = ExitCode.SIGINT
        raise
    finally:
        pinger.finish(code, body)


def _run_job(config: RunConfig, output: OutputOptions) -> Summary:
    from ..job.runner import run_job_async
    from .metrics import LiveMetrics

    api_key = None if config.dry_run and not _key_available(output) else load_api_key(output.api_key_file)
    name = _metrics_job(output, config.ledger)
    live = None
    if config.progress_interval is not None and (output.metrics_file or output.pushgateway):
        metrics_file = Path(output.metrics_file) if output.metrics_file else None
        live = LiveMetrics(job=name, metrics_file=metrics_file, gateway=output.pushgateway)
    with _frozen():
        summary = asyncio.run(run_job_async(config, api_key, handle_signals=True, on_tick=live))
    # The outputs after the run cannot change its outcome: each failure is one warning, the exit
    # code stays the run's, and every other output is still written.
    if not output.quiet or summary.exit_code != ExitCode.OK:
        _print_summary(summary, sys.stderr if output.quiet else sys.stdout)
    if output.summary:
        try:
            Path(output.summary).write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            log.warning("cannot write --summary %s: %s", output.summary, exc.strerror or exc)
    _send_metrics(output, summary, name, end_reason(summary.exit_code))
    return summary


@contextlib.contextmanager
def _frozen() -> Iterator[None]:
    """Everything imported so far (pyarrow, aiohttp) lives for the whole run: keep the cyclic
    garbage collector from walking it again and again while rows are sent (CPU spent for nothing:
    those objects never become garbage).  Unfrozen after, so a host that runs the command in its
    own process (a test) is left as it was; one that had frozen objects itself keeps them frozen."""
    gc.collect()
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()


def _send_metrics(output: OutputOptions, summary: Summary, name: str, reason: EndReason) -> None:
    """Write ``--metrics-file`` and push to ``--pushgateway``; a failure is one warning each."""
    if output.metrics_file:
        _write_metrics(Path(output.metrics_file), summary, name, reason)
    if output.pushgateway:
        from .metrics import PushFailed, push_metrics

        try:
            push_metrics(output.pushgateway, summary, job=name, reason=reason)
        except PushFailed as exc:  # metrics must never change the run's exit code
            log.warning("cannot push metrics to --pushgateway %s: %s", urls.where(output.pushgateway), exc)


def _failure_metrics(
    config: RunConfig, output: OutputOptions, code: int, reason: EndReason, started: float, why: str
) -> None:
    """The metrics of a run that raised instead of returning a summary (exit 2 before the first
    row, a bug), written only while no other run holds the ledger: a run that holds it owns
    the metrics too.  Never raises (the run's own error is the one to report)."""
    if not (output.metrics_file or output.pushgateway):
        return
    summary = Summary(
        run_id="-",
        ledger=str(config.ledger) if config.ledger else None,
        api_url=config.api_url,
        exit_code=code,
        stop_reason=why,
        duration=time.monotonic() - started,
    )
    try:
        with _ledger_not_held(config.ledger) as free:
            if free:
                _send_metrics(output, summary, _metrics_job(output, config.ledger), reason)
    except Exception as exc:  # whatever it is, the run's error is the one reported, not this
        log.warning("cannot write the metrics of exit %d: %s", code, first_line(exc))


@contextlib.contextmanager
def _ledger_not_held(ledger: Path | None) -> Iterator[bool]:
    """Hold ``ledger``'s lock for the block when it is free (yields True); False when another
    run holds it.  A lock that cannot be taken at all (the ledger's directory is missing, the
    path is refused) yields True: no run can hold that ledger either."""
    if ledger is None:
        yield True
        return
    from ..ledger.writer import LedgerLock

    lock = LedgerLock(ledger)
    try:
        lock.acquire({"pid": os.getpid(), "writing": "the metrics of a run that could not start"})
    except LedgerLocked:
        yield False
        return
    except (BatchOverrideError, OSError, ValueError):
        yield True
        return
    try:
        yield True
    finally:
        lock.release()


def _metrics_job(output: OutputOptions, ledger: Path | None) -> str:
    """The metrics' job label: ``--metrics-job``, else the ledger's file name without its extension."""
    job = output.metrics_job or ledger
    return job.stem if isinstance(job, Path) else str(job)


def _print_summary(summary: Summary, stream: TextIO | None) -> None:
    name = "stderr" if stream is sys.stderr else "stdout"
    if stream is None:  # started with the descriptor closed (`>&-`): Python has no stream for it
        log.warning("cannot write the summary to %s: it is closed", name)
        return
    if current_format() == "json":
        level = "info" if summary.exit_code == ExitCode.OK else "error"
        text = json_line(level, "summary", summary=summary.to_dict())
    else:
        text = summary.render()
    try:
        print(text, file=stream)
        stream.flush()
    except (OSError, ValueError) as exc:  # a closed pipe (`| head -1`), a closed stream
        log.warning("cannot write the summary to %s: %s", name, getattr(exc, "strerror", None) or exc)
        with contextlib.suppress(OSError, ValueError):
            # What is still buffered would fail again at exit (and make it 120): drop it.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)


def _write_metrics(path: Path, summary: Summary, name: str, reason: EndReason) -> None:
    from .metrics import read_last_success, write_metrics

    # A failed run keeps the last success time, so a "no success for 2 days" alert still fires.
    last_success = time.time() if summary.exit_code == ExitCode.OK else read_last_success(path, job=name)
    try:
        write_metrics(path, summary, job=name, last_success_unix=last_success, reason=reason)
    except OSError as exc:
        log.warning("cannot write --metrics-file %s: %s", path, exc.strerror or exc)


def _key_available(output: OutputOptions) -> bool:
    import os

    return bool(output.api_key_file or os.environ.get(ENV_VAR))


def main(argv: Sequence[str] | None = None, *, prepare: Callable[[], object] | None = None) -> int:
    """The command line (``argv`` defaults to ``sys.argv[1:]``); returns the exit code, except that
    ``--help``, ``--version`` and a usage error raise :class:`SystemExit` as argparse does.
    ``prepare`` is called once a command is chosen, before its modules load: the console script keeps
    pandas out of pyarrow there (:mod:`.nopandas`), which a host running this in its own process
    (a test) must not have done to it.  The command's signal handlers are installed only on the
    main thread; run elsewhere, it leaves the host's as they are."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        from ..emulator.cli import main as emulator_main

        return emulator_main(args_list[1:])
    with queued_stderr():  # nothing the command does waits for a stalled stderr
        return _main(args_list, prepare)


def _main(args_list: list[str], prepare: Callable[[], object] | None = None) -> int:
    once = functools.cache(prepare) if prepare is not None else None
    parser = build_parser(once)
    args = parser.parse_args(args_list)
    if once is not None:
        once()  # `run`, defined up front, after its --help
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "validate":
            from .validate_command import main_validate

            return main_validate(args)
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


def report_internal_error(exc: BaseException, *, json_format: bool, verbose: bool) -> int:
    """Report a bug as one line on stderr and return 70 (EX_SOFTWARE).

    The traceback goes to stderr only with ``verbose``, and into the JSON line with ``json_format``
    (log shippers keep it; a person at a terminal or cron mail gets one line).
    """
    line = (
        f"batch-override: internal error: {type(exc).__name__}: {first_line(exc)}; rerun with -v for details"
    )
    trace = "".join(traceback.format_exception(exc))
    if json_format:
        print(json_line("error", line, exit_code=ExitCode.INTERNAL, traceback=trace), file=sys.stderr)
        return ExitCode.INTERNAL
    if verbose:
        print(trace, end="", file=sys.stderr)
    print(line, file=sys.stderr)
    return ExitCode.INTERNAL

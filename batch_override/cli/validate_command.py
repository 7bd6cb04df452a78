"""``batch-override validate INPUT``: check a corrections file (or an s3:// or gs:// object) the
way ``run`` would, send nothing.

Contract: every problem line names the line a text editor shows (the header is line 1; quoted
cells that span lines and blank lines counted), at most ``--max-problems`` of them, then one
count line.  Exit 0 clean, 1 invalid or conflicting rows, 2 unreadable input.

Trap: the lines are recounted only for the problems printed, by a second read of the file up to
the last of them, so a clean file, however large, is read once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..errors import ExitCode
from ..input.batch import Batch, InputOptions
from ..input.file_input import CorrectionsFile
from .logs import setup_logging
from .options import OBJECT_STORE, add_config_options

#: The run options that say how to read the input: ``validate`` takes them as ``run`` does.
_READING = (
    "hash_column", "classification_column", "media_column", "media", "encoding", "allow_empty", *OBJECT_STORE
)  # fmt: skip


def add_parser(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    add_log_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``validate INPUT [--hash-column ...] [--encoding NAME] [--max-problems N]``."""
    p = sub.add_parser(
        "validate",
        help="check INPUT and report problems; send nothing (exit 0 clean, 1 problems, 2 unreadable)",
    )
    p.add_argument("input", metavar="INPUT")
    add_config_options(p, _READING)
    p.add_argument("--max-problems", type=int, default=20, help="problem lines to print (default 20)")
    add_log_options(p)


def main_validate(args: argparse.Namespace) -> int:
    """Run ``validate`` with parsed ``args``; returns the exit code."""
    from ..job.plan import Plan, index_input

    setup_logging(getattr(args, "log_format", "text"), args.verbose, bool(getattr(args, "quiet", False)))
    source = CorrectionsFile(args.input, InputOptions(**{k: getattr(args, k) for k in _READING if k in args}))
    problems: list[tuple[int, str]] = []

    def collect(batch: Batch) -> Batch:
        if len(problems) < args.max_problems:
            for i, reason in batch.reasons().items():
                if len(problems) < args.max_problems:
                    problems.append((batch.start + i, reason))
        return batch

    try:
        index = index_input(collect(b) for b in source.batches())
        lines = source.physical_lines([row for row, _ in problems])
    finally:
        source.close()
    for row, reason in problems:
        print(f"{source.display}: line {lines.get(row, row + 2)}: {reason}")
    sendable = int((index.status == Plan.SEND).sum())
    print(
        f"{source.display}: {index.rows} rows: {sendable} to send, {index.invalid} invalid, "
        f"{index.duplicates} duplicate, {index.conflicts} conflict"
    )
    return ExitCode.OK if index.invalid == 0 and index.conflicts == 0 else ExitCode.SOME_ROWS_FAILED


__all__ = ["add_parser", "main_validate"]

"""``batch-override validate INPUT``: check a corrections file (or an s3:// or gs:// object) the
way ``run`` would, send nothing.

Contract: it reads as ``run`` reads: the same ``--job`` file and flags for the columns, the media,
the encoding, the label map and the object store (a job file's other options are ignored), through
the same :class:`~..config.RunConfig` checks.  Every problem line names the line a text editor
shows (the header is line 1; quoted cells that span lines and blank lines counted): invalid rows,
duplicates and conflicts, in file order, at most ``--max-problems`` of them, then one count line.
Exit 0 clean (duplicates are sent once: not a problem for the exit code), 1 invalid or conflicting
rows, 2 unreadable input or a bad option.

Traps: the lines are recounted only for the problems printed, by a second read of the file up to
the last of them, so a clean file, however large, is read once.  A duplicate or conflict is found
only once the whole file is read: its row is found again from one bit per row kept meanwhile.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ..config import RunConfig
from ..errors import ExitCode, UsageError
from ..input.batch import Batch, InputOptions
from ..input.file_input import CorrectionsFile
from .logs import setup_logging
from .options import OBJECT_STORE, add_config_options, add_job_option, given_values

#: The run options that say how to read the input: ``validate`` takes them as ``run`` does.
_READING = (
    "hash_column",
    "classification_column",
    "media_column",
    "media",
    "encoding",
    "label_map",
    "allow_empty",
    *OBJECT_STORE,
)
#: What a duplicate or a conflict line says (the row is valid; the plan holds it back).
_DUPLICATE = "duplicate: repeats an earlier row of this input (sent once)"
_CONFLICT = "conflict: this (media, hash) appears with both classifications in the input; none is sent"


def add_parser(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    add_log_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``validate INPUT [--job TOML] [--hash-column ...] [--label-map MAP] [--max-problems N]``
    (its line in the top-level ``--help`` is :mod:`.main`'s: that one must not import this)."""
    p = sub.add_parser("validate")
    p.add_argument("input", metavar="INPUT", nargs="?", help="corrections file (else the job file's input)")
    add_job_option(p)
    add_config_options(p, _READING)
    p.add_argument(
        "--max-problems",
        type=int,
        default=20,
        help="problem lines to print: invalid rows, duplicates, conflicts (default 20)",
    )
    add_log_options(p)


def main_validate(args: argparse.Namespace) -> int:
    """Run ``validate`` with parsed ``args``; returns the exit code."""
    from ..job.plan import Plan, index_input  # numpy-heavy: imported when validate runs

    values = given_values(args)
    setup_logging(values.get("log_format", "text"), values.get("verbose", 0), bool(values.get("quiet")))
    if not values.get("input"):
        raise UsageError("missing INPUT (a corrections file, or - for standard input)")
    reading = {k: v for k, v in values.items() if k in _READING}
    config = RunConfig.from_mapping({**reading, "input": str(values["input"])})
    source = CorrectionsFile(str(config.input), InputOptions.of(config))
    problems: list[tuple[int, str]] = []
    valid = _ValidRows()

    def collect(batch: Batch) -> Batch:
        valid.add(batch)
        if len(problems) < args.max_problems:
            for i, reason in batch.reasons().items():
                if len(problems) < args.max_problems:
                    problems.append((batch.start + i, reason))
        return batch

    try:
        index = index_input(collect(b) for b in source.batches())
        held = np.flatnonzero(index.status >= Plan.DUPLICATE)[: max(args.max_problems, 0)]
        said = [_CONFLICT if s == Plan.CONFLICT else _DUPLICATE for s in index.status[held].tolist()]
        problems = sorted([*problems, *zip(valid.rows(held), said, strict=True)])[: max(args.max_problems, 0)]
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


class _ValidRows:
    """Which rows of the input are valid, one bit each: the row of the n-th valid row."""

    def __init__(self) -> None:
        self._bits: list[npt.NDArray[np.uint8]] = []
        self._starts: list[int] = []
        self._before: list[int] = []  # valid rows in the batches before each
        self._count = 0

    def add(self, batch: Batch) -> None:
        self._bits.append(np.packbits(batch.valid))
        self._starts.append(batch.start)
        self._before.append(self._count)
        self._count += int(np.count_nonzero(batch.valid))

    def rows(self, ordinals: npt.NDArray[np.intp]) -> list[int]:
        """The 0-based input row of each valid row's ordinal (as :class:`InputIndex` counts them)."""
        out = []
        for ordinal in ordinals.tolist():
            b = int(np.searchsorted(self._before, ordinal, side="right")) - 1
            at = np.flatnonzero(np.unpackbits(self._bits[b]))[ordinal - self._before[b]]
            out.append(self._starts[b] + int(at))
        return out


__all__ = ["add_parser", "main_validate"]

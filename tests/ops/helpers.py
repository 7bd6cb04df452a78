"""Helpers for the ops commands' tests: hand-written ledgers and run logs, and one subcommand run
in-process through a parser holding only it (no subprocess; the whole command line, in a
subprocess against the emulator, is :func:`tests.support.run_cli` and :func:`~tests.support.run_against`)."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from batch_override.ledger.format import COLUMNS
from tests.support import sha


def parse(add_parser: Callable[[Any], None], *argv: str) -> argparse.Namespace:
    """``argv`` parsed by a parser that has only the subcommand ``add_parser`` adds."""
    parser = argparse.ArgumentParser(prog="batch-override")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def run_command(add_parser: Callable[[Any], None], *argv: str) -> int:
    args = parse(add_parser, *argv)
    code: int = args.handler(args)
    return code


def line(
    row: int,
    outcome: str,
    run_id: str,
    *,
    h: str | None = None,
    media: str = "video",
    classification: str = "human",
    error_code: str = "",
    http_status: int | str = "",
    attempts: int = 1,
    message: str = "",
    at: str = "2026-01-01T00:00:00.000Z",
    carried: Sequence[str] = (),
) -> list[object]:
    """One ledger line; the hash defaults to the row's test hash."""
    return [
        row, media, sha(row) if h is None else h, classification, outcome, error_code, http_status,
        attempts, message, run_id, at, *carried,
    ]  # fmt: skip


def write_ledger(path: Path, lines: Iterable[Sequence[object]], carried: Sequence[str] = ()) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([*COLUMNS, *carried])
        writer.writerows(lines)
    return path


def write_runlog(ledger: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    path = ledger.with_name(ledger.name + ".runs.jsonl")
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    return path

"""Input edges that once ended a run wrongly (issue 9): an input that changes while the run reads
it, Mac line endings, a simultaneous label map, formula-like header names, oversized cells,
non-UTF-8 binary values, a missing --media-column, and the stdin copy of ``run -``."""

from __future__ import annotations

import asyncio
import csv
import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_override.apikey import ApiKey
from batch_override.config import Rate, RunConfig
from batch_override.domain import parse_label_map
from batch_override.emulator import DEMO_API_KEY, Emulator
from batch_override.errors import InputError, UsageError
from batch_override.input.batch import InputOptions
from batch_override.input.file_input import CorrectionsFile
from batch_override.job.plan import index_input
from batch_override.job.runner import run_job_async
from batch_override.report.run_report import build_report, write_retry_file
from batch_override.summary import Summary
from tests.support import accounted_rows, cli_env, read_ledger, run_cli, sha, write_csv

MIB = 1 << 20


async def run(path: Path, emulator: Emulator, **config: Any) -> Summary:
    settings: dict[str, Any] = {"rate": Rate(1000, 1.0), "backoff_base": 0.01, "concurrency": 1}
    settings.update(config)
    ledger = settings.pop("ledger", path.with_name("ledger.csv"))
    run_config = RunConfig(input=str(path), ledger=ledger, api_url=emulator.url, **settings)
    return await asyncio.wait_for(run_job_async(run_config, ApiKey(DEMO_API_KEY)), 30)


def received(emulator: Emulator) -> list[tuple[str, str]]:
    return sorted((o["hash"], o["classification"]) for o in emulator.overrides())


# -- the input is the input the run planned --------------------------------------------------------


class _BetweenPasses(logging.Handler):
    """Calls ``change`` once, when the run logs its plan: after pass one, before pass two."""

    def __init__(self, change: Callable[[], object]) -> None:
        super().__init__(logging.INFO)
        self.change: Callable[[], object] | None = change

    def emit(self, record: logging.LogRecord) -> None:
        if self.change is not None and str(record.msg).startswith("run %s:"):
            change, self.change = self.change, None
            change()


@contextmanager
def changed_between_passes(change: Callable[[], object]) -> Iterator[None]:
    logger = logging.getLogger("batch_override")
    handler, level = _BetweenPasses(change), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
        assert handler.change is None, "the run never logged its plan"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def run_changed(
    tmp_path: Path, emulator: Emulator, rows: int, changed: list[tuple[str, str]], batch_rows: int
) -> Summary:
    """Run on ``rows`` rows of ``sha(i), human`` that become ``changed`` between the two passes."""
    path = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(rows)])
    with changed_between_passes(lambda: write_csv(path, changed)):
        return await run(path, emulator, batch_rows=batch_rows)


async def test_an_input_changed_before_its_first_batch_is_sent_stops_with_exit_2_sending_nothing(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    changed = [(sha(0), "artificial"), *((sha(i), "human") for i in range(1, 6))]
    summary = await run_changed(tmp_path, emulator, 6, changed, batch_rows=3)
    assert summary.exit_code == 2
    assert "input changed while the run read it" in summary.stop_reason
    assert emulator.stats()["requests"] == 0
    assert len(read_ledger(tmp_path / "ledger.csv")) == 0


async def test_a_row_changed_into_a_conflict_after_sending_began_is_never_sent_and_the_run_exits_3(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    # Row 6 now says the opposite of row 0: planned by position, it would be sent both ways.
    changed = [(sha(i), "artificial" if i == 6 else "human") for i in range(8)]
    changed[6] = (sha(0), "artificial")
    summary = await run_changed(tmp_path, emulator, 8, changed, batch_rows=4)
    assert summary.exit_code == 3
    assert "input changed" in summary.stop_reason
    assert (sha(0), "artificial") not in received(emulator)
    # Only the first batch may have lines (sent, or aborted in flight); the rows never reached,
    # that batch's unsent ones included, have none and are counted not_attempted.
    accounted_rows(tmp_path / "ledger.csv", 8)
    assert set(read_ledger(tmp_path / "ledger.csv")["row"]) <= {0, 1, 2, 3}


async def test_an_input_that_grew_between_the_passes_stops_cleanly_without_a_traceback(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    grown = [(sha(i), "human") for i in range(10)]
    summary = await run_changed(tmp_path, emulator, 8, grown, batch_rows=4)
    assert summary.exit_code == 3
    assert "input changed" in summary.stop_reason
    assert {h for h, _ in received(emulator)} <= {sha(i) for i in range(8)}


def test_a_batch_read_again_after_a_change_no_longer_matches_its_plan(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(4)])
    source = CorrectionsFile(str(path), InputOptions(batch_rows=2))
    index = index_input(source.batches())
    assert all(index.planned(n, b) for n, b in enumerate(source.batches()))
    write_csv(path, [(sha(i), "human") for i in range(3)] + [(sha(3), "artificial")])
    assert [index.planned(n, b) for n, b in enumerate(source.batches())] == [True, False]


# -- reading ---------------------------------------------------------------------------------------------


async def test_csv_with_mac_cr_line_endings_is_read_as_rows(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = tmp_path / "mac.csv"
    path.write_bytes(b"hash,classification\r" + b"".join(f"{sha(i)},human\r".encode() for i in range(3)))
    summary = await run(path, emulator)
    assert summary.exit_code == 0
    assert received(emulator) == sorted((sha(i), "human") for i in range(3))
    result = await run_cli("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "3 rows: 3 to send" in result.stdout


async def test_a_label_map_is_one_simultaneous_mapping_so_a_swap_swaps(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = write_csv(tmp_path / "c.csv", [(sha(0), "human"), (sha(1), "artificial"), (sha(2), "ai")])
    swap = (("human", "artificial"), ("artificial", "human"), ("ai", "human"))
    summary = await run(path, emulator, label_map=swap)
    assert summary.exit_code == 0
    assert received(emulator) == sorted([(sha(0), "artificial"), (sha(1), "human"), (sha(2), "human")])


def test_a_label_map_giving_one_word_both_classifications_is_refused() -> None:
    with pytest.raises(UsageError, match="'ai' is mapped to both"):
        parse_label_map("ai=human, AI=artificial")
    assert parse_label_map("ai=human,ai=human") == (("ai", "human"), ("ai", "human"))


async def test_the_label_map_and_the_cells_share_one_case_folding(tmp_path: Path, emulator_factory) -> None:
    """Turkish dotted I, Greek final sigma, German sharp s: each word matches itself in any case."""
    emulator = await emulator_factory(unknown="classified")
    cells = ["ΑΝΘΡΩΠΟΣ", "ανθρωποσ", "İNSAN", "İnsan", "Mensch", "GROẞ", "groß"]
    path = write_csv(tmp_path / "c.csv", [(sha(i), cell) for i, cell in enumerate(cells)])
    words = "ΑΝΘΡΩΠΟΣ=human,İNSAN=human,MENSCH=human,GROẞ=artificial"
    summary = await run(path, emulator, label_map=parse_label_map(words))
    assert summary.exit_code == 0, summary.outcomes
    assert received(emulator) == sorted(
        [(sha(i), "human") for i in range(5)] + [(sha(5), "artificial"), (sha(6), "artificial")]
    )
    # The Python API's own pairs are folded the same way.
    summary = await run(path, emulator, label_map=(("ΑΝΘΡΩΠΟΣ", "human"),), ledger=tmp_path / "two.csv")
    assert summary.outcomes["already_submitted"] + summary.outcomes["submitted"] == 2


async def test_a_media_column_named_but_missing_exits_2_while_the_default_one_is_optional(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = write_csv(tmp_path / "c.csv", [(sha(0), "human")])
    result = await run_cli(
        "run", str(path), "--ledger", str(tmp_path / "l.csv"), "--api-url", emulator.url,
        "--media-column", "kind", env=cli_env(),
    )  # fmt: skip
    assert result.returncode == 2
    (message,) = result.stderr.strip().splitlines()
    assert "'kind'" in message and "--media-column" in message and "c.csv" in message
    assert emulator.stats()["requests"] == 0
    assert (await run(path, emulator)).exit_code == 0  # no media column, none named: --media


async def test_the_stdin_copy_of_run_dash_is_removed_when_its_header_is_bad(tmp_path: Path) -> None:
    spool = tmp_path / "tmp"
    spool.mkdir()
    result = await run_cli(
        "run", "-", "--ledger", str(tmp_path / "l.csv"), "--api-url", "http://127.0.0.1:9",
        stdin=b"id,label\n1,human\n", env=cli_env(extra={"TMPDIR": str(spool)}),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "missing required column" in result.stderr
    assert list(spool.iterdir()) == []


def test_the_stdin_copy_is_removed_whatever_fails_while_opening_it(
    spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for data in (b"", b"\x00\xff\xfe binary\n", b"id,label\n1,human\n"):
        monkeypatch.setattr("sys.stdin", _Stdin(data))
        with pytest.raises(InputError):
            CorrectionsFile("-")
    assert list(spool.iterdir()) == []


def test_the_stdin_copy_is_removed_even_if_nobody_closes_the_reader(
    spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel or Ctrl-C can drop the reader before the run closes it: the copy goes anyway."""
    monkeypatch.setattr("sys.stdin", _Stdin(f"hash,classification\n{sha(0)},human\n".encode()))
    source = CorrectionsFile("-")
    assert len(list(source.batches())) == 1 and list(spool.iterdir())
    del source
    gc.collect()
    assert list(spool.iterdir()) == []


class _Stdin:
    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)


# -- cells -----------------------------------------------------------------------------------------------


def _parquet(path: Path, notes: pa.Array, n: int) -> Path:
    table = pa.table({"hash": [sha(i) for i in range(n)], "classification": ["human"] * n, "note": notes})
    pq.write_table(table, path)
    return path


async def test_a_carried_cell_over_1_mib_makes_its_row_invalid_and_stays_out_of_the_ledger(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = _parquet(tmp_path / "c.parquet", pa.array(["a" * (20 * MIB), "b" * MIB, "c"]), 3)
    summary = await run(path, emulator)
    assert summary.exit_code == 1
    assert received(emulator) == sorted([(sha(1), "human"), (sha(2), "human")])  # 1 MiB itself is allowed
    ledger = read_ledger(tmp_path / "ledger.csv").sort_values("row")
    first = ledger.iloc[0]
    assert first["outcome"] == "invalid"
    assert "'note'" in first["message"] and "20.0 MiB" in first["message"]
    assert len(first["note"]) < 100
    assert (tmp_path / "ledger.csv").stat().st_size < 2 * MIB
    # The next run resumes from that ledger, and the report reads it.
    again = await run(path, emulator)
    assert again.exit_code == 1 and again.outcomes["skipped"] == 2
    assert build_report(tmp_path / "ledger.csv").summary.rows == 3


def _big_cell_csv(path: Path, mib: int) -> Path:
    rows = [(sha(i), "human", "x" * (mib * MIB) if i == 1 else "ok") for i in range(3)]
    return write_csv(path, rows, ("hash", "classification", "note"))


async def test_a_csv_cell_over_1_mib_is_an_invalid_row_that_validate_names_by_its_line(
    tmp_path: Path,
) -> None:
    result = await run_cli("validate", str(_big_cell_csv(tmp_path / "c.csv", 3)))
    assert result.returncode == 1, result.stderr
    assert "c.csv: line 3: column 'note' holds a 3.0 MiB cell" in result.stdout
    assert "Traceback" not in result.stderr


async def test_a_csv_row_longer_than_the_readers_blocks_exits_2_in_one_line(tmp_path: Path) -> None:
    result = await run_cli("validate", str(_big_cell_csv(tmp_path / "c.csv", 20)))
    assert result.returncode == 2
    (message,) = result.stderr.strip().splitlines()
    assert "c.csv" in message and "cells that large are not supported" in message


def _csv_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def _append_rows(path: Path, rows: list[list[object]]) -> None:
    with open(path, "a", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def _ledger_line(row: int, run_id: str, cell: str) -> list[object]:
    return [
        row,
        "video",
        sha(f"bulk-{row}"),
        "human",
        "submitted",
        "",
        201,
        1,
        "",
        run_id,
        "2026-11-28T00:00:00.000Z",
        cell,
    ]


@pytest.mark.parametrize("cell_mib", [9, 20])
async def test_resume_and_report_read_a_ledger_whatever_its_cell_sizes(
    tmp_path: Path, emulator_factory, cell_mib: int
) -> None:
    """A ledger written before cells were limited, with a line far longer than a read block."""
    emulator = await emulator_factory(unknown="classified")
    path = write_csv(
        tmp_path / "c.csv", [(sha(i), "human", "x") for i in range(3)], ("hash", "classification", "note")
    )
    first = await run(path, emulator, limit=2)
    assert first.exit_code == 0
    ledger = tmp_path / "ledger.csv"
    header, *lines = _csv_rows(ledger)
    run_id = lines[0][header.index("run_id")]
    bulky = [
        *[_ledger_line(i, run_id, "y") for i in range(5000)],
        _ledger_line(0, run_id, "z" * (cell_mib * MIB)),
    ]
    _append_rows(ledger, bulky)
    report = build_report(ledger, run_id)
    assert report.summary.outcomes["submitted"] == 2 + len(bulky)
    again = await run(path, emulator)
    assert again.exit_code == 0
    assert again.outcomes["skipped"] == 2 and again.outcomes["submitted"] == 1


async def test_one_non_utf8_binary_value_is_escaped_alone_and_the_column_stays_text(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    notes = pa.array([b"ok", b"caf\xc3\xa9", b"bad \xff byte"], pa.binary())
    path = _parquet(tmp_path / "c.parquet", notes, 3)
    assert (await run(path, emulator, dry_run=True)).exit_code == 0
    ledger = read_ledger(tmp_path / "ledger.csv").sort_values("row")
    assert list(ledger["note"]) == ["ok", "café", "bad \\xff byte"]


async def test_formula_like_header_names_are_neutralised_in_the_ledger_and_the_retry_file(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    name = '=HYPERLINK("http://x.example","open")'
    path = write_csv(tmp_path / "c.csv", [(sha(0), "human", "=1+1")], ("hash", "classification", name))
    assert (await run(path, emulator, dry_run=True)).exit_code == 0
    ledger = tmp_path / "ledger.csv"
    assert _csv_rows(ledger)[0][-1] == "'" + name
    retry = tmp_path / "retry.csv"
    assert write_retry_file(ledger, np.array([0]), retry) == 1
    assert _csv_rows(retry)[0][-1] == "'" + name
    raw = await run(path, emulator, dry_run=True, neutralize_formulas=False, ledger=tmp_path / "raw.csv")
    assert raw.exit_code == 0
    assert _csv_rows(tmp_path / "raw.csv")[0][-1] == name  # --raw-cells: names as they are, like cells

"""The ledger as a user reads it: pandas.read_csv with no options, one line per input row, fixed
columns then the input's own, appended run after run, formula-looking cells neutralised."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from batch_override.emulator import Emulator
from batch_override.summary import Summary
from tests.support import cli_env, read_ledger, run_cli, run_fast, sha, write_csv

#: The spec's column order, written out rather than imported: the test is the contract.
FIXED = [
    "row", "media", "hash", "classification", "outcome", "error_code",
    "http_status", "attempts", "message", "run_id", "finished_at",
]  # fmt: skip

FORMULAS = ["=1+1", "+41", "-7", "@SUM(A1:A9)", '=HYPERLINK("http://x","y")']


async def run_file(path: Path, emulator: Emulator, ledger: Path, **config: Any) -> Summary:
    return await run_fast(path, ledger, emulator.url, **config)


def mixed_rows() -> list[tuple[str, str, str, str]]:
    """(hash, classification, ticket, note): submitted, not_ready, invalid, duplicate and conflict rows."""
    return [
        (sha(0), "human", "T-0", "plain"),
        (sha(1), "artificial", "T-1", 'a "quoted", comma'),
        ("not-a-hash", "human", "T-2", "line\nbreak inside"),
        (sha(0), "human", "T-3", ""),
        (sha(4), "human", "T-4", "crlf\r\ninside"),
        (sha(4), "artificial", "T-5", "  spaced  "),
        (sha(6), "human", "T-6", "ünïcödé ✓"),
        (sha(7), "Human", "T-7", "last"),
    ]


async def test_ledger_reads_with_plain_pandas_one_line_per_input_row_in_spec_column_order(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified", states={("video", sha(1)): "not_classified"})
    rows = mixed_rows()
    path = write_csv(tmp_path / "c.csv", rows, ("hash", "classification", "ticket", "note"))
    ledger = tmp_path / "ledger.csv"
    summary = await run_file(path, emulator, ledger)
    frame = pd.read_csv(ledger)
    assert list(frame.columns) == [*FIXED, "ticket", "note"]
    assert len(frame) == len(rows)
    assert sorted(frame["row"]) == list(range(len(rows)))  # 0-based positions among data rows
    assert frame["row"].dtype.kind == "i" and frame["attempts"].dtype.kind == "i"
    by_row = frame.set_index("row").sort_index()
    assert list(by_row["ticket"]) == [r[2] for r in rows]  # each line is its own input row
    assert list(by_row["outcome"]) == [
        "submitted", "not_ready", "invalid", "duplicate", "conflict", "conflict", "submitted", "submitted",
    ]  # fmt: skip
    assert list(by_row["note"].fillna("")) == [
        "plain", 'a "quoted", comma', "line break inside", "",
        "crlf inside", "  spaced  ", "ünïcödé ✓", "last",
    ]  # fmt: skip
    assert set(frame["run_id"]) == {summary.run_id}
    assert pd.to_datetime(frame["finished_at"]).notna().all()
    assert by_row.loc[0, "http_status"] == 201 and by_row["http_status"].isna()[2]
    # Physically one line per row too: no record spans lines.
    assert len(ledger.read_text(encoding="utf-8").splitlines()) == len(rows) + 1


async def test_parquet_columns_of_any_type_are_carried_as_readable_text(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = tmp_path / "c.parquet"
    pq.write_table(
        pa.table(
            {
                "id": pa.array([10, 11, None], pa.int64()),
                "hash": [sha(0), sha(1), "bad"],
                "score": pa.array([0.5, None, 2.25]),
                "flag": pa.array([True, False, None]),
                "classification": ["human", "artificial", "human"],
            }
        ),
        path,
    )
    ledger = tmp_path / "ledger.csv"
    await run_file(path, emulator, ledger)
    frame = read_ledger(ledger).sort_values("row")
    assert list(frame.columns) == [*FIXED, "id", "score", "flag"]
    assert list(frame["id"].fillna(-1)) == [10, 11, -1]
    assert list(frame["score"].fillna(-1)) == [0.5, -1, 2.25]
    assert [str(v).lower() for v in frame["flag"].fillna("")] == ["true", "false", ""]


async def test_a_second_run_appends_under_the_same_header(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    rows = mixed_rows()
    path = write_csv(tmp_path / "c.csv", rows, ("hash", "classification", "ticket", "note"))
    ledger = tmp_path / "ledger.csv"
    first = await run_file(path, emulator, ledger)
    second = await run_file(path, emulator, ledger)
    text = ledger.read_text(encoding="utf-8").splitlines()
    assert sum(1 for line in text if line.startswith("row,")) == 1
    frame = read_ledger(ledger)
    assert list(frame.columns) == [*FIXED, "ticket", "note"]
    assert frame["run_id"].value_counts()[first.run_id] == len(rows)
    again = frame[frame["run_id"] == second.run_id].set_index("row").sort_index()
    # The rows done in the first run are counted skipped, not written again.
    assert second.outcomes["skipped"] == 4 and not {0, 1, 6, 7} & set(again.index)
    assert len(text) == 1 + len(rows) + len(again) and "skipped" not in set(again["outcome"])


async def test_a_carried_column_named_like_a_ledger_column_keeps_both(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = write_csv(
        tmp_path / "c.csv", [(sha(0), "human", "from input")], ("hash", "classification", "message")
    )
    ledger = tmp_path / "ledger.csv"
    await run_file(path, emulator, ledger)
    frame = read_ledger(ledger)
    assert list(frame.columns)[: len(FIXED)] == FIXED
    assert len(set(frame.columns)) == len(frame.columns)
    (carried,) = frame.columns[len(FIXED) :]
    assert "message" in carried
    assert frame[carried].tolist() == ["from input"]


def _formula_input(tmp_path: Path) -> Path:
    rows: list[tuple[str, ...]] = [(sha(i), "human", f) for i, f in enumerate(FORMULAS)]
    rows.append(("=cmd|' /C calc'!A0", "human", "=2+2"))  # invalid: its raw hash is written back
    rows.append((sha(90), "@human", "-3"))  # invalid: its raw classification is written back
    rows.append(("+SUM(1)",))  # a ragged row (one field): its raw text is written back
    return write_csv(tmp_path / "c.csv", rows, ("hash", "classification", "note"))


def _raw_cells(ledger: Path) -> list[dict[str, str]]:
    with open(ledger, encoding="utf-8", newline="") as fh:
        return sorted(csv.DictReader(fh), key=lambda r: int(r["row"]))


async def test_formula_looking_cells_get_a_leading_apostrophe(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    ledger = tmp_path / "ledger.csv"
    await run_file(_formula_input(tmp_path), emulator, ledger)
    cells = _raw_cells(ledger)
    assert [c["note"] for c in cells] == [f"'{f}" for f in FORMULAS] + ["'=2+2", "'-3", ""]
    assert cells[-3]["hash"] == "'=cmd|' /C calc'!A0"
    assert cells[-2]["classification"] == "'@human"
    assert cells[-1]["hash"] == "'+SUM(1)"
    assert [c["outcome"] for c in cells] == ["submitted"] * len(FORMULAS) + ["invalid"] * 3
    assert read_ledger(ledger)["note"].tolist()  # and pandas still reads it


async def test_raw_cells_flag_writes_formula_looking_cells_as_they_are(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    ledger = tmp_path / "ledger.csv"
    result = await run_cli(
        "run", str(_formula_input(tmp_path)), "--ledger", str(ledger), "--api-url", emulator.url,
        "--rate", "1000/s", "--raw-cells", env=cli_env(),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    cells = _raw_cells(ledger)
    assert [c["note"] for c in cells] == [*FORMULAS, "=2+2", "-3", ""]
    assert cells[-3]["hash"] == "=cmd|' /C calc'!A0"
    assert cells[-2]["classification"] == "@human"
    assert cells[-1]["hash"] == "+SUM(1)"

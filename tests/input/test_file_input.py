"""Reading corrections: formats, delimiters, headers, media, normalisation, row faults, duplicates,
--limit and --dry-run, each observed in the ledger and in what the emulator received."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_override.emulator import Emulator
from batch_override.ledger.format import COLUMNS
from batch_override.summary import Summary
from tests.support import cli_env, read_ledger, run_cli, run_fast, sha, write_csv

NBSP = "\u00a0"


async def run_file(
    path: Path, emulator: Emulator, ledger: Path | None = None, **config: Any
) -> tuple[Summary, pd.DataFrame]:
    """The job in-process on ``path``; the summary and the ledger as pandas reads it."""
    ledger = ledger or path.with_name("ledger.csv")
    summary = await run_fast(path, ledger, emulator.url, **config)
    return summary, read_ledger(ledger)


def received(emulator: Emulator) -> set[tuple[str, str, str]]:
    """(media, hash, classification) of every override the emulator recorded."""
    return {(o["media"], o["hash"], o["classification"]) for o in emulator.overrides()}


def override_requests(emulator: Emulator) -> int:
    """Requests that reached the emulator, less the one empty-body preflight."""
    return int(emulator.stats()["requests"]) - 1


def column(ledger: pd.DataFrame, name: str) -> list[Any]:
    """One column in row order, empty cells as ''."""
    return ["" if pd.isna(v) else v for v in ledger.sort_values("row")[name]]


# -- formats and delimiters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delimiter", "suffix"), [(",", ".csv"), (";", ".csv"), ("\t", ".tsv"), ("\t", ".csv")],
    ids=["comma", "semicolon", "tab-tsv", "tab-csv"],
)  # fmt: skip
async def test_csv_delimiter_is_detected_from_the_header(
    tmp_path: Path, emulator_factory, delimiter: str, suffix: str
) -> None:
    emulator = await emulator_factory(unknown="classified")
    rows = [(sha(i), "human", f"note {i}, with; both\tseparators") for i in range(5)]
    path = write_csv(tmp_path / f"c{suffix}", rows, ("hash", "classification", "note"), delimiter=delimiter)
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 0
    assert column(ledger, "outcome") == ["submitted"] * 5
    assert column(ledger, "note") == [r[2] for r in rows]
    assert received(emulator) == {("video", r[0], "human") for r in rows}


async def test_utf8_bom_before_the_header_is_ignored(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = tmp_path / "bom.csv"
    path.write_bytes(
        ("\ufeffhash;classification\n" + "".join(f"{sha(i)};human\n" for i in range(3))).encode()
    )
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 0
    assert column(ledger, "outcome") == ["submitted"] * 3
    assert list(ledger.columns) == list(COLUMNS)


async def test_empty_header_names_from_a_spreadsheet_export_are_carried_by_position(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = tmp_path / "excel.csv"
    path.write_text("hash,classification,,\n" + "".join(f"{sha(i)},human,,x{i}\n" for i in range(3)))
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 0
    assert list(ledger.columns)[-2:] == ["column_3", "column_4"]
    assert column(ledger, "column_4") == ["x0", "x1", "x2"]


async def test_header_names_are_matched_case_insensitively_and_trimmed(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = write_csv(
        tmp_path / "c.csv",
        [(sha(i), "artificial", "image") for i in range(3)],
        (" HASH ", "Classification ", " Media"),
    )
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 0
    assert received(emulator) == {("image", sha(i), "artificial") for i in range(3)}
    assert list(ledger.columns) == list(COLUMNS)  # the media column is used, not carried


async def test_hash_and_classification_columns_can_be_mapped_by_flags(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = write_csv(
        tmp_path / "c.csv", [(f"T-{i}", sha(i), "human") for i in range(3)], ("ticket", "SHA256", "Label")
    )
    ledger = tmp_path / "ledger.csv"
    result = await run_cli(
        "run", str(path), "--ledger", str(ledger), "--api-url", emulator.url, "--rate", "1000/s",
        "--hash-column", "sha256", "--classification-column", "label", env=cli_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = read_ledger(ledger)
    assert list(lines.columns) == [*COLUMNS, "ticket"]
    assert column(lines, "ticket") == ["T-0", "T-1", "T-2"]
    assert received(emulator) == {("video", sha(i), "human") for i in range(3)}


async def test_media_column_overrides_the_default_media_per_row(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    rows = [
        (sha(0), "human", "image"),
        (sha(1), "human", " Audio "),
        (sha(2), "artificial", "VIDEO"),
        (sha(3), "human", ""),  # empty: the run's --media
        (sha(4), "human", "podcast"),  # not a media: invalid
    ]
    path = write_csv(tmp_path / "c.csv", rows, ("hash", "classification", "media"))
    summary, ledger = await run_file(path, emulator, media="audio")
    assert summary.exit_code == 1
    assert column(ledger, "media")[:4] == ["image", "audio", "video", "audio"]
    assert column(ledger, "outcome") == ["submitted"] * 4 + ["invalid"]
    assert "media" in column(ledger, "message")[4]
    assert received(emulator) == {
        ("image", sha(0), "human"),
        ("audio", sha(1), "human"),
        ("video", sha(2), "artificial"),
        ("audio", sha(3), "human"),
    }


async def test_media_column_can_be_mapped_by_name(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = write_csv(
        tmp_path / "c.csv",
        [(sha(0), "human", "Image"), (sha(1), "human", "audio")],
        ("hash", "classification", "type"),
    )
    summary, ledger = await run_file(path, emulator, media_column="TYPE")
    assert summary.exit_code == 0
    assert list(ledger.columns) == list(COLUMNS)
    assert received(emulator) == {("image", sha(0), "human"), ("audio", sha(1), "human")}


async def test_extra_columns_are_carried_into_the_ledger_after_the_fixed_columns(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    header = ("ticket", "hash", "note", "classification", "media", "owner")
    rows = [
        ("T-1", sha(1), 'first, quoted "note"', "human", "video", "ann"),
        ("T-2", "not-a-hash", "second", "human", "video", "bob"),  # invalid: carried all the same
        ("T-3", sha(3), "", "artificial", "image", "cy"),
    ]
    path = write_csv(tmp_path / "c.csv", rows, header)
    _summary, ledger = await run_file(path, emulator)
    assert list(ledger.columns) == [*COLUMNS, "ticket", "note", "owner"]
    assert column(ledger, "ticket") == ["T-1", "T-2", "T-3"]
    assert column(ledger, "note") == ['first, quoted "note"', "second", ""]
    assert column(ledger, "owner") == ["ann", "bob", "cy"]
    assert column(ledger, "outcome") == ["submitted", "invalid", "submitted"]


async def test_gzip_csv_is_read(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    plain = write_csv(tmp_path / "plain.csv", [(sha(i), "human") for i in range(50)])
    path = tmp_path / "c.csv.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 0
    assert sorted(ledger["row"]) == list(range(50))
    assert len(received(emulator)) == 50


async def test_parquet_with_text_hashes_is_read_and_other_columns_carried(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    table = pa.table(
        {
            "hash": [sha(i) for i in range(4)],
            "classification": ["human", "artificial", "human", "artificial"],
            "media": pa.array(["video", "image", "audio", "video"]).dictionary_encode(),
            "priority": pa.array([5, 4, 3, 2], pa.int64()),
        }
    )
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 0
    assert list(ledger.columns) == [*COLUMNS, "priority"]
    assert column(ledger, "priority") == [5, 4, 3, 2]
    assert received(emulator) == {
        ("video", sha(0), "human"),
        ("image", sha(1), "artificial"),
        ("audio", sha(2), "human"),
        ("video", sha(3), "artificial"),
    }


@pytest.mark.parametrize("hash_type", [pa.binary(32), pa.binary(), pa.large_binary()], ids=str)
async def test_parquet_32_byte_binary_hashes_are_sent_hex_encoded(
    tmp_path: Path, emulator_factory, hash_type: pa.DataType
) -> None:
    emulator = await emulator_factory(unknown="classified")
    digests = [bytes.fromhex(sha(i)) for i in range(3)]
    path = tmp_path / "c.parquet"
    pq.write_table(
        pa.table({"hash": pa.array(digests, hash_type), "classification": ["human", "artificial", "human"]}),
        path,
    )
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 0
    assert column(ledger, "hash") == [sha(i) for i in range(3)]
    assert received(emulator) == {
        ("video", sha(0), "human"),
        ("video", sha(1), "artificial"),
        ("video", sha(2), "human"),
    }


async def test_parquet_binary_hash_of_another_length_is_invalid_and_not_sent(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = tmp_path / "c.parquet"
    pq.write_table(
        pa.table(
            {
                "hash": pa.array([bytes.fromhex(sha(0)), b"\x01" * 31], pa.binary()),
                "classification": ["human"] * 2,
            }
        ),
        path,
    )
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 1
    assert column(ledger, "outcome") == ["submitted", "invalid"]
    assert received(emulator) == {("video", sha(0), "human")}
    assert override_requests(emulator) == 1


async def test_dash_reads_csv_from_standard_input(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    text = "hash,classification,ticket\n" + "".join(f"{sha(i)},human,T-{i}\n" for i in range(4))
    ledger = tmp_path / "ledger.csv"
    result = await run_cli(
        "run", "-", "--ledger", str(ledger), "--api-url", emulator.url, "--rate", "1000/s",
        env=cli_env(), stdin=text.encode(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = read_ledger(ledger)
    assert column(lines, "ticket") == [f"T-{i}" for i in range(4)]
    assert received(emulator) == {("video", sha(i), "human") for i in range(4)}


# -- normalisation and row faults ----------------------------------------------------------------------


async def test_cells_are_trimmed_and_lowercased_before_sending(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    rows = [
        (f"  {sha(0).upper()} ", "Human "),
        (f"{NBSP}{sha(1)}{NBSP}", f"{NBSP}ARTIFICIAL{NBSP}"),
        (f"\t{sha(2)[:32].upper()}{sha(2)[32:]}", " human"),
    ]
    path = write_csv(tmp_path / "c.csv", rows)
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 0
    assert column(ledger, "hash") == [sha(0), sha(1), sha(2)]
    assert column(ledger, "classification") == ["human", "artificial", "human"]
    assert received(emulator) == {
        ("video", sha(0), "human"),
        ("video", sha(1), "artificial"),
        ("video", sha(2), "human"),
    }


INVALID_ROWS = [
    # (hash, classification, words the reason must contain)
    ("", "human", ("hash", "empty")),
    (sha("e"), "", ("classification", "empty")),
    (sha("63")[:63], "human", ("63",)),
    (sha("65") + "a", "human", ("65",)),
    (sha("g")[:63] + "g", "human", ("hex",)),
    ("../../user", "human", ("hash",)),
    (("../" * 22)[:64], "human", ("hex",)),
    (sha("ai"), "AI", ("classification",)),
    (sha("humans"), "humans", ("classification",)),
    (f"{sha('sp')[:30]} {sha('sp')[31:]}", "human", ("hex",)),
]


async def test_faulty_rows_are_ledgered_invalid_with_a_reason_and_never_sent(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    rows: list[tuple[str, str]] = []
    for i, (h, c, _words) in enumerate(INVALID_ROWS):
        rows += [(sha(f"ok-{i}"), "human"), (h, c)]
    path = write_csv(tmp_path / "c.csv", rows)
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 1
    outcomes, messages = column(ledger, "outcome"), column(ledger, "message")
    assert outcomes == ["submitted", "invalid"] * len(INVALID_ROWS)
    assert column(ledger, "error_code")[1::2] == ["invalid_row"] * len(INVALID_ROWS)
    for (h, _c, words), message in zip(INVALID_ROWS, messages[1::2], strict=True):
        assert all(w in message for w in words), (h, message)
    assert column(ledger, "hash")[1::2] == [h for h, _c, _w in INVALID_ROWS]  # the raw cell, as written
    assert received(emulator) == {("video", sha(f"ok-{i}"), "human") for i in range(len(INVALID_ROWS))}
    assert override_requests(emulator) == len(INVALID_ROWS)


async def test_crlf_line_endings_are_read_like_lf(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = tmp_path / "crlf.csv"
    lines = ["hash,classification,ticket"] + [f"{sha(i)},human,T-{i}" for i in range(3)] + ["xyz,human,T-x"]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 1
    assert column(ledger, "outcome") == ["submitted"] * 3 + ["invalid"]
    assert column(ledger, "ticket") == ["T-0", "T-1", "T-2", "T-x"]
    assert column(ledger, "classification")[:3] == ["human"] * 3
    assert received(emulator) == {("video", sha(i), "human") for i in range(3)}


async def test_row_with_a_missing_or_extra_cell_is_invalid_while_the_other_rows_go(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = tmp_path / "ragged.csv"
    lines = [f"{sha(0)},human", sha(1), f"{sha(2)},human", f"{sha(3)},human,extra", f"{sha(4)},human"]
    path.write_text("hash,classification\n" + "\n".join(lines) + "\n", encoding="utf-8")
    summary, ledger = await run_file(path, emulator)
    assert column(ledger, "outcome") == ["submitted", "invalid", "submitted", "invalid", "submitted"]
    assert all(column(ledger, "message")[i] for i in (1, 3))  # with a reason
    assert summary.exit_code == 1
    assert received(emulator) == {("video", sha(i), "human") for i in (0, 2, 4)}
    assert override_requests(emulator) == 3


async def test_input_with_only_invalid_rows_sends_nothing_and_exits_1(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = write_csv(tmp_path / "c.csv", [("x", "human"), (sha(1), "AI")])
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 1
    assert column(ledger, "outcome") == ["invalid", "invalid"]
    assert emulator.stats()["requests"] == 0


# -- duplicates and conflicts ---------------------------------------------------------------------------


async def test_repeated_rows_are_sent_once_and_conflicting_rows_are_never_sent(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    a, b, c = sha("a"), sha("b"), sha("c")
    rows = [
        (a, "human", "video"),
        (a, "human", "video"),  # duplicate
        (a.upper(), " HUMAN", "Video"),  # duplicate once normalised
        (a, "human", "image"),  # another media: another item, sent
        (b, "human", "video"),  # conflict
        (b, "artificial", "video"),  # conflict
        (c, "artificial", "video"),  # conflict (a duplicate inside a conflicting group)
        (c, "artificial", "video"),  # conflict
        (c, "human", "video"),  # conflict
        (b, "human", "audio"),  # the conflict is per media: sent
    ]
    path = write_csv(tmp_path / "c.csv", rows, ("hash", "classification", "media"))
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 1
    assert column(ledger, "outcome") == [
        "submitted", "duplicate", "duplicate", "submitted",
        "conflict", "conflict", "conflict", "conflict", "conflict", "submitted",
    ]  # fmt: skip
    assert received(emulator) == {("video", a, "human"), ("image", a, "human"), ("audio", b, "human")}
    assert override_requests(emulator) == 3


async def test_duplicates_alone_still_exit_0(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = write_csv(tmp_path / "c.csv", [(sha(0), "human")] * 3 + [(sha(1), "artificial")])
    summary, ledger = await run_file(path, emulator)
    assert summary.exit_code == 0
    assert column(ledger, "outcome") == ["submitted", "duplicate", "duplicate", "submitted"]


# -- --limit and --dry-run --------------------------------------------------------------------------------


async def test_limit_sends_only_the_first_n_sendable_rows_and_a_rerun_continues(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    v = [sha(f"v{i}") for i in range(5)]
    hashes = [v[0], "bad", v[1], v[0], v[2], v[3], v[4]]
    rows = [(h, "human") for h in hashes]
    path = write_csv(tmp_path / "c.csv", rows)
    ledger = tmp_path / "ledger.csv"
    _first, lines = await run_file(path, emulator, ledger, limit=2)
    assert received(emulator) == {("video", v[0], "human"), ("video", v[1], "human")}
    sent_rows = set(lines[lines["outcome"] == "submitted"]["row"])
    assert sent_rows == {0, 2}
    assert not {4, 5, 6} & set(lines["row"])  # rows past the limit wait for a later run
    second, lines = await run_file(path, emulator, ledger, limit=2)
    assert received(emulator) == {("video", h, "human") for h in v[:4]}
    latest = lines[lines["run_id"] == second.run_id]
    assert set(latest[latest["outcome"] == "submitted"]["row"]) == {4, 5}
    assert 6 not in set(lines["row"])


async def test_dry_run_writes_planned_lines_and_sends_nothing(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = write_csv(tmp_path / "c.csv", [(sha(0), "human"), (sha(1), "artificial"), (sha(1), "artificial")])
    ledger = tmp_path / "ledger.csv"
    result = await run_cli(
        "run",
        str(path),
        "--ledger",
        str(ledger),
        "--api-url",
        emulator.url,
        "--dry-run",
        env=cli_env(key=None),
    )
    assert result.returncode == 0, result.stderr
    assert column(read_ledger(ledger), "outcome") == ["planned", "planned", "duplicate"]
    assert emulator.stats()["requests"] == 0


async def test_dry_run_with_invalid_rows_exits_1_and_still_sends_nothing(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = write_csv(tmp_path / "c.csv", [(sha(0), "human"), ("nope", "human")])
    summary, ledger = await run_file(path, emulator, dry_run=True)
    assert summary.exit_code == 1
    assert column(ledger, "outcome") == ["planned", "invalid"]
    # With a key, one empty preflight reads the advertised limit for the estimate; no override.
    assert (emulator.stats()["requests"], emulator.stats()["overrides"]) == (1, 0)

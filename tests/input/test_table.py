"""Opening a table file, asked directly: its kind, delimiter and columns, the one-line problems,
and the lines a text editor shows (which pyarrow's record numbers are not)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from batch_override.errors import InputError, UsageError
from batch_override.input.table import check_encoding, kind_of, open_table


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.csv", "csv"),
        ("A.TSV", "csv"),
        ("a.txt", "csv"),
        ("a.csv.gz", "csv.gz"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("a.xlsx", None),
        ("a.gz", None),
    ],
)
def test_the_kind_comes_from_the_name(name: str, kind: str | None) -> None:
    assert kind_of(Path(name)) == kind


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("hash,classification", ","),
        ("hash;classification", ";"),
        ("hash\tclassification", "\t"),
        ("hash", ","),
    ],
)
def test_the_delimiter_is_the_one_the_header_uses_most(tmp_path: Path, header: str, delimiter: str) -> None:
    path = tmp_path / "c.csv"
    path.write_text(f"{header}\nx\n", encoding="utf-8")
    assert open_table(path).delimiter == delimiter


def test_empty_header_names_are_named_by_position_so_they_are_carried(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("hash,classification,,\n", encoding="utf-8")
    assert open_table(path).names == ["hash", "classification", "column_3", "column_4"]


def test_a_gzipped_csv_is_read_through_gzip(tmp_path: Path) -> None:
    path = tmp_path / "c.csv.gz"
    path.write_bytes(gzip.compress(b"hash;classification\n"))
    table = open_table(path)
    assert (table.kind, table.names) == ("csv.gz", ["hash", "classification"])


def test_each_unreadable_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "blank.csv").write_bytes(b"  \n")
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip")
    (tmp_path / "binary.csv").write_bytes(b"\x00\x01\x02\xff\xfe\n")
    expected = {
        "missing.csv": "no such file",
        "dir.csv": "is a directory",
        "c.xlsx": "unknown extension; expected .csv",
        "empty.csv": "file is empty",
        "blank.csv": "file is empty (no header line)",
        "bad.parquet": "not a readable Parquet file",
        "bad.csv.gz": "cannot read",
        "binary.csv": "header line is not UTF-8 text",
    }
    (tmp_path / "c.xlsx").write_bytes(b"x")
    for name, problem in expected.items():
        with pytest.raises(InputError) as raised:
            open_table(tmp_path / name, display=name)
        message = str(raised.value)
        assert message.startswith(f"{name}: {problem}") and "\n" not in message


def test_an_unknown_or_non_text_encoding_is_a_usage_error() -> None:
    assert check_encoding("CP1252") == "cp1252"
    with pytest.raises(UsageError, match="unknown encoding"):
        check_encoding("klingon")
    with pytest.raises(UsageError, match="not a text encoding"):
        check_encoding("base64")


def test_physical_lines_count_quoted_line_breaks_and_blank_lines_as_an_editor_does(tmp_path: Path) -> None:
    # The trap: pyarrow numbers records; a person is told about the line their editor shows.
    path = tmp_path / "c.csv"
    path.write_text('hash,note\na,"two\nlines"\n\nb,x\nc,y\n', encoding="utf-8")
    table = open_table(path)
    assert table.physical_lines([2, 0, 1, 0]) == {0: 2, 1: 5, 2: 6}
    assert table.physical_lines([]) == {}


def test_the_undecodable_line_is_the_one_holding_the_first_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"hash,note\na,ok\nb,caf\xe9\nc,\xff\n")
    table = open_table(path)
    assert table.undecodable_line() == 3
    assert str(table.decode_error()).startswith(f"{path}: line 3 is not UTF-8 text")
    assert open_table(path, encoding="latin-1").undecodable_line() is None  # latin-1 decodes anything

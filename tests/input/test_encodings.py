"""Files as Windows and Excel write them: byte-order marks, UTF-16, cp1252, and the lines an editor shows."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import pytest

from batch_override.input.table import open_table, sniff_encoding
from tests.support import FAST, Result, cli_env, read_ledger, run_cli, sha

NOTES = ["Café crème", "Ünïcödé – naïve", "Señor €5", "Ø plain"]


def _text(delimiter: str, newline: str = "\r\n") -> str:
    lines = [delimiter.join(("hash", "classification", "note"))]
    lines += [delimiter.join((sha(i), "human", note)) for i, note in enumerate(NOTES)]
    return newline.join(lines) + newline


def _excel_unicode_text(path: Path, bom: bytes = codecs.BOM_UTF16_LE, codec: str = "utf-16-le") -> Path:
    """What Excel's "Unicode Text" export writes: UTF-16 LE with a BOM, tab-separated, CRLF."""
    path.write_bytes(bom + _text("\t").encode(codec))
    return path


async def _run(emulator: Any, path: Path, ledger: Path, *extra: str) -> Result:
    return await run_cli(
        "run", str(path), "--ledger", str(ledger), "--api-url", emulator.url, *FAST, *extra,
        env=cli_env(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("bom", "codec"),
    [
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF32_LE, "utf-32-le"),
    ],
    ids=["utf-16-le", "utf-16-be", "utf-8-bom", "utf-32-le"],
)
async def test_a_file_with_a_byte_order_mark_keeps_its_accented_values_in_the_ledger(
    tmp_path: Path, emulator_factory, bom: bytes, codec: str
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = _excel_unicode_text(tmp_path / "export.txt", bom, codec)
    ledger = tmp_path / "l.csv"
    result = await _run(emulator, path, ledger)
    assert result.returncode == 0, result.stderr
    lines = read_ledger(ledger).sort_values("row")  # lines come in answer order
    assert list(lines["note"]) == NOTES
    assert list(lines["outcome"]) == ["submitted"] * 4


async def test_a_cp1252_file_is_read_with_encoding_and_refused_without_naming_the_line(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = tmp_path / "windows.csv"
    path.write_bytes(_text(",").encode("cp1252"))
    refused = await _run(emulator, path, tmp_path / "refused.csv")
    assert refused.returncode == 2
    message = refused.stderr.strip()
    assert "windows.csv: line 2 is not UTF-8 text" in message and "--encoding" in message, message
    assert emulator.stats()["requests"] == 0

    ledger = tmp_path / "l.csv"
    result = await _run(emulator, path, ledger, "--encoding", "cp1252")
    assert result.returncode == 0, result.stderr
    assert list(read_ledger(ledger).sort_values("row")["note"]) == NOTES  # lines come in answer order


async def test_an_undecodable_byte_names_its_line_even_in_a_named_encoding(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    good = "".join(f"{sha(i)},human,x\n" for i in range(6))
    path.write_bytes(b"hash,classification,note\n" + good.encode() + f"{sha(9)},human,".encode() + b"\x81\n")
    result = await run_cli("validate", str(path), "--encoding", "cp1252", env=cli_env(key=None))
    assert result.returncode == 2
    assert result.stderr.strip().endswith("bad.csv: line 8 is not cp1252 text; name the file's encoding "
                                          "with --encoding (such as cp1252 or latin-1)")  # fmt: skip


async def test_an_unknown_encoding_is_a_usage_error_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(_text(","), encoding="utf-8")
    result = await run_cli("validate", str(path), "--encoding", "klingon", env=cli_env(key=None))
    assert result.returncode == 2
    assert result.stderr.strip() == "batch-override: error: --encoding 'klingon': unknown encoding " \
        "(such as utf-8, utf-16, cp1252)"  # fmt: skip


async def test_a_job_file_names_the_encoding(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    path = tmp_path / "windows.csv"
    path.write_bytes(_text(";").encode("cp1252"))
    job = tmp_path / "job.toml"
    job.write_text(f'[run]\ninput = "{path}"\nledger = "{tmp_path / "l.csv"}"\nencoding = "cp1252"\n')
    result = await run_cli("run", "--job", str(job), "--api-url", emulator.url, *FAST, env=cli_env())
    assert result.returncode == 0, result.stderr
    assert list(read_ledger(tmp_path / "l.csv").sort_values("row")["note"]) == NOTES


def test_a_byte_order_mark_wins_over_the_named_encoding_and_none_means_utf8() -> None:
    assert sniff_encoding(codecs.BOM_UTF16_LE + b"h\x00", "cp1252") == "utf-16"
    assert sniff_encoding(codecs.BOM_UTF32_LE + b"h\x00\x00\x00") == "utf-32"
    assert sniff_encoding(b"hash,", "latin-1") == "iso8859-1"
    assert sniff_encoding(b"hash,") == "utf-8"


def test_the_header_of_a_utf16_export_is_split_on_tabs(tmp_path: Path) -> None:
    table = open_table(_excel_unicode_text(tmp_path / "export.txt"))
    assert (table.names, table.delimiter, table.encoding) == (
        ["hash", "classification", "note"],
        "\t",
        "utf-16",
    )


async def test_validate_names_the_line_an_editor_shows_after_multiline_cells_and_blank_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "hash,classification,note\n"  # line 1
        f'{sha(1)},human,"a note\nover three\nlines"\n'  # lines 2-4
        "\n"  # line 5: blank, not a row
        f"{sha(2)},humn,x\n"  # line 6
        "\n\n"  # lines 7-8
        f'not-a-hash,human,"two\r\nlines"\n'  # lines 9-10
        f"{sha(3)},human,ok\n",  # line 11
        encoding="utf-8",
    )
    result = await run_cli("validate", str(path), env=cli_env(key=None))
    assert result.returncode == 1
    problems = [line.split(": ")[1] for line in result.stdout.splitlines() if ": line " in line]
    assert problems == ["line 6", "line 9"]


async def test_validate_counts_lines_the_same_in_utf16(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    text = f'hash\tclassification\n{sha(1)}\thuman\n\n"multi\nline"\thuman\n'
    path.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    result = await run_cli("validate", str(path), env=cli_env(key=None))
    assert result.returncode == 1
    assert "export.txt: line 4: hash has" in result.stdout

"""``batch-override hash``: from a list of media files to a corrections file a person can review and run."""

from __future__ import annotations

import codecs
import hashlib
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_override.cli.hash_command import add_parser, hash_corrections, sha256_file
from batch_override.input.file_input import CorrectionsFile
from tests.support import cli_env, run_cli, run_command, write_csv


def _media(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_relative_paths_resolve_against_the_inputs_folder_and_columns_keep_their_order(
    tmp_path: Path, capsys
) -> None:
    batch = tmp_path / "batch"
    _media(batch / "clips", "a.mp4", b"first clip")
    elsewhere = _media(tmp_path / "other", "b.mp4", b"second clip")
    listing = write_csv(
        batch / "list.csv",
        [("human", "clips/a.mp4", "T-1"), ("artificial", str(elsewhere), "T-2")],
        header=("classification", "path", "ticket"),
    )
    out = tmp_path / "corrections.csv"
    assert run_command(add_parser, "hash", str(listing), "-o", str(out)) == 0  # cwd is not batch/
    assert "hashed 2 files" in capsys.readouterr().out
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["hash", "classification", "path", "ticket", "error"]
    assert list(table["hash"]) == [_digest(b"first clip"), _digest(b"second clip")]
    assert list(table["path"]) == ["clips/a.mp4", str(elsewhere)]
    assert list(table["error"]) == ["", ""]


def test_a_missing_file_gets_an_empty_hash_a_reason_and_exit_1(tmp_path: Path, capsys) -> None:
    _media(tmp_path, "ok.mp4", b"ok")
    (tmp_path / "folder.mp4").mkdir()
    listing = write_csv(
        tmp_path / "list.csv",
        [("human", "ok.mp4"), ("human", "gone.mp4"), ("human", "folder.mp4"), ("human", "  ")],
        header=("classification", "path"),
    )
    out = tmp_path / "c.csv"
    assert run_command(add_parser, "hash", str(listing), "-o", str(out)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 of 4 files could not be hashed" in err
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table["hash"]) == [_digest(b"ok"), "", "", ""]
    assert "no such file" in table["error"][1]
    assert "is a directory" in table["error"][2]
    assert table["error"][3] == "path is empty"


async def test_the_output_runs_and_its_unreadable_rows_are_marked_invalid(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    _media(tmp_path, "a.jpg", b"picture")
    listing = write_csv(
        tmp_path / "list.csv",
        [("human", "image", "a.jpg"), ("artificial", "image", "missing.jpg")],
        header=("classification", "media", "path"),
    )
    out = tmp_path / "c.csv"
    hash_corrections(listing, out)
    ledger = tmp_path / "ledger.csv"
    result = await run_cli("run", str(out), "--ledger", str(ledger), "--api-url", emulator.url,
                           "--rate", "1000/s", env=cli_env())  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert emulator.overrides() == [
        {"media": "image", "hash": _digest(b"picture"), "classification": "human"}
    ]
    lines = pd.read_csv(ledger).set_index("row")
    assert lines.loc[1, "outcome"] == "invalid"
    assert "no such file" in str(lines.loc[1, "error"])


def test_parquet_input_and_a_named_path_column(tmp_path: Path) -> None:
    _media(tmp_path, "x.wav", b"sound")
    listing = tmp_path / "list.parquet"
    pq.write_table(
        pa.table({"File": ["x.wav"], "classification": ["human"], "rank": pa.array([3], pa.int64())}), listing
    )
    out = tmp_path / "c.csv"
    assert hash_corrections(listing, out, path_column="file") == (1, 0)
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["hash", "File", "classification", "rank", "error"]
    assert table["hash"][0] == _digest(b"sound") and table["rank"][0] == 3


def test_many_rows_in_small_chunks_keep_the_inputs_order(tmp_path: Path) -> None:
    data = {f"m{i}.bin": f"media {i}".encode() for i in range(200)}
    for name, content in data.items():
        _media(tmp_path / "m", name, content)
    names = list(data)[::-1]
    listing = write_csv(
        tmp_path / "list.csv", [(f"m/{n}", "human") for n in names], header=("path", "classification")
    )
    out = tmp_path / "c.csv"
    assert hash_corrections(listing, out, workers=3, chunk_rows=7) == (200, 0)
    assert list(pd.read_csv(out)["hash"]) == [_digest(data[n]) for n in names]
    CorrectionsFile(str(out))  # the job accepts the file as it is


def test_files_bigger_than_one_read_hash_like_hashlib(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 12345)
    assert sha256_file(_media(tmp_path, "big.bin", data)) == (_digest(data), "")


def test_an_existing_hash_column_is_replaced_with_a_note(tmp_path: Path, capsys) -> None:
    _media(tmp_path, "a", b"a")
    listing = write_csv(
        tmp_path / "l.csv", [("stale", "a", "human")], header=("Hash", "path", "classification")
    )
    out = tmp_path / "c.csv"
    assert run_command(add_parser, "hash", str(listing), "-o", str(out)) == 0
    assert "'Hash' column is replaced" in capsys.readouterr().err
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["hash", "path", "classification", "error"]
    assert table["hash"][0] == _digest(b"a")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("l.csv", "hash,classification\nx,human\n", "no 'path' column"),
        ("l.csv", "path,classification\n", "has a header but no data rows"),
        ("l.csv", "", "file is empty"),
        ("l.xlsx", "path\nx\n", "unknown extension"),
        ("l.parquet", "not parquet", "not a readable Parquet file"),
        ("missing.csv", None, "no such file"),
    ],
)
def test_an_unusable_input_exits_2_and_writes_nothing(
    tmp_path: Path, capsys, name, content, expected
) -> None:
    listing = tmp_path / name
    if content is not None:
        listing.write_text(content)
    out = tmp_path / "c.csv"
    assert run_command(add_parser, "hash", str(listing), "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_output_may_not_overwrite_the_input(tmp_path: Path, capsys) -> None:
    listing = write_csv(tmp_path / "l.csv", [("a", "human")], header=("path", "classification"))
    assert run_command(add_parser, "hash", str(listing), "-o", str(listing)) == 2
    assert "would overwrite INPUT" in capsys.readouterr().err


# -- hash -: paths from standard input ----------------------------------------------------------------
def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, shell=True, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=120, check=False
    )


def test_find_print0_piped_into_hash_gives_a_corrections_file_the_job_accepts(tmp_path: Path) -> None:
    media = tmp_path / "media"
    names = {"a.mp4": b"a", "with space.mp4": b"b", "new\nline.mp4": b"c", "sub/d.mp4": b"d"}
    for name, data in names.items():
        _media(media, name, data)
    cli = f"{shlex.quote(sys.executable)} -m batch_override"
    result = _shell(
        f"find media -type f -print0 | {cli} hash - -0 --classification human -o corrections.csv", tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hashed 4 files into corrections.csv\n"
    table = pd.read_csv(tmp_path / "corrections.csv", keep_default_na=False)
    assert list(table.columns) == ["hash", "path", "classification", "error"]
    by_path = dict(zip(table["path"], table["hash"], strict=True))
    assert by_path == {f"media/{name}": _digest(data) for name, data in names.items()}
    assert set(table["classification"]) == {"human"} and set(table["error"]) == {""}
    CorrectionsFile(str(tmp_path / "corrections.csv"))  # the job accepts the file as it is


def test_paths_one_per_line_resolve_against_the_working_directory_with_media_filled(tmp_path: Path) -> None:
    _media(tmp_path / "pics", "x.jpg", b"x")
    result = _shell(
        f"printf 'pics/x.jpg\\r\\n\\npics/missing.jpg\\n' | {shlex.quote(sys.executable)} -m batch_override "
        "hash - --classification artificial --media image -o out.csv",
        tmp_path,
    )
    assert result.returncode == 1, result.stderr
    table = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(table.columns) == ["hash", "path", "classification", "media", "error"]
    assert list(table["path"]) == ["pics/x.jpg", "pics/missing.jpg"]
    assert list(table["hash"]) == [_digest(b"x"), ""]
    assert list(table["media"]) == ["image", "image"]
    assert "no such file" in table["error"][1]


def test_a_progress_bar_counts_files_and_failures(tmp_path: Path) -> None:
    for i in range(3):
        _media(tmp_path, f"{i}.bin", bytes([i]))
    result = _shell(
        f"printf '0.bin\\n1.bin\\n2.bin\\nnope.bin\\n' | {shlex.quote(sys.executable)} -m batch_override "
        "hash - --progress -o out.csv",
        tmp_path,
    )
    assert result.returncode == 1
    final = result.stderr.split("\r")[-1]
    assert "4file" in final.replace(" ", "") and "ok=3, failed=1" in final, result.stderr


def test_no_bar_off_a_terminal_by_default(tmp_path: Path) -> None:
    _media(tmp_path, "0.bin", b"0")
    result = _shell(
        f"echo 0.bin | {shlex.quote(sys.executable)} -m batch_override hash - -o out.csv", tmp_path
    )
    assert result.returncode == 0 and result.stderr == ""


def test_a_listing_that_already_has_the_filled_column_is_refused(tmp_path: Path, capsys) -> None:
    listing = write_csv(tmp_path / "l.csv", [("a", "human")], header=("path", "Classification"))
    assert run_command(add_parser, "hash", str(listing), "--classification", "human", "-o", "o.csv") == 2
    assert "already has a 'classification' column" in capsys.readouterr().err


def test_dash_zero_without_standard_input_is_a_usage_error(tmp_path: Path, capsys) -> None:
    listing = write_csv(tmp_path / "l.csv", [("a",)], header=("path",))
    assert run_command(add_parser, "hash", str(listing), "-0", "-o", str(tmp_path / "o.csv")) == 2
    assert "use it with INPUT -" in capsys.readouterr().err


def test_an_excel_unicode_text_listing_is_read(tmp_path: Path) -> None:
    _media(tmp_path, "é.mp4", b"e")
    listing = tmp_path / "list.txt"
    listing.write_bytes(codecs.BOM_UTF16_LE + "path\tnote\r\né.mp4\tcafé\r\n".encode("utf-16-le"))
    out = tmp_path / "c.csv"
    assert hash_corrections(listing, out) == (1, 0)
    table = pd.read_csv(out, keep_default_na=False)
    assert (table["hash"][0], table["note"][0]) == (_digest(b"e"), "café")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_hashing_removes_the_temporary_file(tmp_path: Path, signum: signal.Signals) -> None:
    _media(tmp_path, "a.mp4", b"a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "batch_override", "hash", "-", "-o", "out.csv"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=cli_env(),
    )  # fmt: skip
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"a.mp4\n")  # then standard input stays open: the command waits for more
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob(".out.csv.*.tmp")):  # the temporary output exists
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child, by PID
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]
    assert err.decode().strip() == f"batch-override: {signum.name}: stopped; out.csv was not written"


def test_formula_like_file_names_are_neutralised_as_the_ledger_does_unless_raw_cells(tmp_path: Path) -> None:
    _media(tmp_path, "=1+2.mp4", b"clip")
    listing = write_csv(tmp_path / "list.csv", [("=1+2.mp4", "@note")], header=("path", "@ticket"))
    out = tmp_path / "corrections.csv"
    assert run_command(add_parser, "hash", str(listing), "-o", str(out)) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ["hash", "path", "'@ticket", "error"]
    assert (table["path"][0], table["'@ticket"][0], table["hash"][0]) == (
        "'=1+2.mp4",
        "'@note",
        _digest(b"clip"),
    )
    assert run_command(add_parser, "hash", str(listing), "-o", str(out), "--raw-cells") == 0
    raw = pd.read_csv(out, keep_default_na=False)
    assert list(raw.columns) == ["hash", "path", "@ticket", "error"]
    assert (raw["path"][0], raw["@ticket"][0]) == ("=1+2.mp4", "@note")

"""Inputs and settings the job refuses before sending anything: exit 2, one line on stderr naming the
file and the problem, no traceback, and the emulator never hears from it."""

from __future__ import annotations

import functools
import gzip
import random
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_override.cli import main as cli
from batch_override.config import RunConfig
from batch_override.emulator import Emulator
from batch_override.errors import UsageError
from tests.support import Result, cli_env, run_cli, sha, write_csv


def rows(n: int) -> list[tuple[str, str]]:
    return [(sha(i), "human" if i % 2 else "artificial") for i in range(n)]


def _missing(tmp: Path) -> Path:
    return tmp / "missing.csv"


def _directory(tmp: Path) -> Path:
    (tmp / "folder.csv").mkdir()
    return tmp / "folder.csv"


def _empty(tmp: Path) -> Path:
    (tmp / "empty.csv").write_bytes(b"")
    return tmp / "empty.csv"


def _header_only(tmp: Path) -> Path:
    return write_csv(tmp / "header.csv", [])


def _missing_columns(tmp: Path) -> Path:
    return write_csv(tmp / "columns.csv", rows(3), ("sha", "label"))


def _unknown_extension(tmp: Path) -> Path:
    return write_csv(tmp / "corrections.xlsx", rows(3))


def _binary(tmp: Path) -> Path:
    (tmp / "binary.csv").write_bytes(random.Random(0).randbytes(4096))
    return tmp / "binary.csv"


def _png_named_csv(tmp: Path) -> Path:
    (tmp / "picture.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(2048))
    return tmp / "picture.csv"


def _latin1_row(tmp: Path) -> Path:
    path = write_csv(tmp / "latin1.csv", [(*r, "ok") for r in rows(5)], ("hash", "classification", "note"))
    with open(path, "ab") as fh:
        fh.write(f"{sha(99)},human,caf\xe9\n".encode("latin-1"))
    return path


def _utf16_without_bom(tmp: Path) -> Path:
    """UTF-16 with a BOM is read (tests/input/test_encodings.py); without one it cannot be told apart."""
    (tmp / "utf16.csv").write_bytes(("hash,classification\n" + f"{sha(0)},human\n").encode("utf-16-le"))
    return tmp / "utf16.csv"


def _truncated_gzip(tmp: Path) -> Path:
    text = write_csv(tmp / "whole.csv", rows(6000)).read_bytes()
    data = gzip.compress(text)
    (tmp / "truncated.csv.gz").write_bytes(data[: len(data) // 2])
    return tmp / "truncated.csv.gz"


def _not_gzip(tmp: Path) -> Path:
    (tmp / "plain.csv.gz").write_bytes(write_csv(tmp / "whole.csv", rows(3)).read_bytes())
    return tmp / "plain.csv.gz"


def _good_parquet(tmp: Path, n: int = 2000) -> bytes:
    path = tmp / "whole.parquet"
    pq.write_table(
        pa.table({"hash": [h for h, _c in rows(n)], "classification": [c for _h, c in rows(n)]}), path
    )
    return path.read_bytes()


def _garbage_parquet(tmp: Path) -> Path:
    (tmp / "garbage.parquet").write_bytes(b"this is not parquet at all\n" * 20)
    return tmp / "garbage.parquet"


def _truncated_parquet(tmp: Path) -> Path:
    data = _good_parquet(tmp)
    (tmp / "truncated.parquet").write_bytes(data[: len(data) // 2])
    return tmp / "truncated.parquet"


def _damaged_parquet(tmp: Path) -> Path:
    """The footer intact, the data pages scrambled: the file opens, its rows cannot be read."""
    data = bytearray(_good_parquet(tmp))
    for i in range(200, 2000):
        data[i] ^= 0x5A
    (tmp / "damaged.parquet").write_bytes(bytes(data))
    return tmp / "damaged.parquet"


def _int_hash_parquet(tmp: Path) -> Path:
    path = tmp / "numbers.parquet"
    pq.write_table(pa.table({"hash": pa.array([1, 2, 3], pa.int64()), "classification": ["human"] * 3}), path)
    return path


BAD_FILES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    # name: (builder, words one of which the message must contain, case-insensitively)
    "missing-file": (_missing, ("no such file", "not found", "does not exist")),
    "directory": (_directory, ("directory",)),
    "empty-file": (_empty, ("empty",)),
    "header-only": (_header_only, ("no data rows", "no rows")),
    "missing-columns": (_missing_columns, ("missing required column",)),
    "unknown-extension": (_unknown_extension, ("extension",)),
    "binary-bytes": (_binary, ("utf-8", "binary")),
    "png-named-csv": (_png_named_csv, ("utf-8", "binary")),
    "latin1-data-row": (_latin1_row, ("utf-8",)),
    "utf16-without-bom": (_utf16_without_bom, ("utf-8",)),
    "truncated-gzip": (_truncated_gzip, ("truncated", "gzip", "corrupt")),
    "not-gzip": (_not_gzip, ("gzip",)),
    "garbage-parquet": (_garbage_parquet, ("parquet",)),
    "truncated-parquet": (_truncated_parquet, ("parquet",)),
    "damaged-parquet": (_damaged_parquet, ("parquet", "cannot read", "corrupt")),
    "int64-hash-parquet": (_int_hash_parquet, ("int64",)),
}


def assert_refused(result: Result, emulator: Emulator, *words: str) -> str:
    """Exit 2, exactly one stderr line holding one of ``words``, no traceback, nothing sent."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert any(w.lower() in lines[0].lower() for w in words), lines[0]
    assert emulator.stats()["requests"] == 0
    return lines[0]


async def run(tmp_path: Path, emulator: Emulator, *args: str, key: str | None = "default") -> Result:
    env = cli_env() if key == "default" else cli_env(key)
    return await run_cli("run", *args, "--api-url", emulator.url, "--rate", "1000/s", env=env)


@pytest.mark.parametrize("name", list(BAD_FILES))
async def test_unreadable_input_exits_2_with_one_line_naming_file_and_problem(
    tmp_path: Path, emulator_factory, name: str
) -> None:
    emulator = await emulator_factory(unknown="classified")
    build, words = BAD_FILES[name]
    path = build(tmp_path)
    ledger = tmp_path / "ledger.csv"
    result = await run(tmp_path, emulator, str(path), "--ledger", str(ledger))
    message = assert_refused(result, emulator, *words)
    assert path.name in message
    assert not ledger.exists()


@pytest.mark.parametrize("name", ["missing-file", "latin1-data-row", "truncated-gzip", "int64-hash-parquet"])
async def test_validate_refuses_unreadable_input_the_same_way(
    tmp_path: Path, emulator_factory, name: str
) -> None:
    emulator = await emulator_factory()
    build, words = BAD_FILES[name]
    path = build(tmp_path)
    result = await run_cli("validate", str(path))
    message = assert_refused(result, emulator, *words)
    assert path.name in message


async def test_missing_api_key_exits_2_with_one_line(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    ledger = tmp_path / "ledger.csv"
    result = await run(
        tmp_path, emulator, str(write_csv(tmp_path / "c.csv", rows(3))), "--ledger", str(ledger), key=None
    )
    assert_refused(result, emulator, "IDENTIFAI_API_KEY", "API key")
    assert not ledger.exists()


async def test_blank_api_key_exits_2_with_one_line(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    result = await run(
        tmp_path,
        emulator,
        str(write_csv(tmp_path / "c.csv", rows(3))),
        "--ledger",
        str(tmp_path / "l.csv"),
        key="  ",
    )
    assert_refused(result, emulator, "API key")


async def test_plain_http_to_a_non_loopback_host_exits_2(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    result = await run_cli(
        "run", str(write_csv(tmp_path / "c.csv", rows(3))), "--ledger", str(tmp_path / "ledger.csv"),
        "--api-url", "http://example.com", env=cli_env(),
    )  # fmt: skip
    assert_refused(result, emulator, "http")
    assert "example.com" in result.stderr
    assert not (tmp_path / "ledger.csv").exists()


async def test_ledger_with_other_columns_than_this_input_writes_exits_2_untouched(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    first = write_csv(
        tmp_path / "first.csv", [(*r, "T-1") for r in rows(3)], ("hash", "classification", "ticket")
    )
    ledger = tmp_path / "ledger.csv"
    done = await run(tmp_path, emulator, str(first), "--ledger", str(ledger))
    assert done.returncode == 0, done.stderr
    before = ledger.read_bytes()
    requests = emulator.stats()["requests"]
    other = write_csv(tmp_path / "other.csv", rows(3))  # no ticket column: another ledger shape
    result = await run(tmp_path, emulator, str(other), "--ledger", str(ledger))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (message,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "ledger.csv" in message
    assert "column" in message
    assert ledger.read_bytes() == before
    assert emulator.stats()["requests"] == requests


@pytest.mark.parametrize(
    "options",
    [
        ["--concurrency", "0"],
        ["--concurrency", "lots"],
        ["--max-concurrency", "0"],
        ["--max-concurrency", "100000"],
        ["--media", "gif"],
        ["--timeout", "0"],
    ],
    ids=" ".join,
)
async def test_bad_option_values_exit_2_with_one_line(
    tmp_path: Path, emulator_factory, options: list[str]
) -> None:
    emulator = await emulator_factory(unknown="classified")
    result = await run(
        tmp_path,
        emulator,
        str(write_csv(tmp_path / "c.csv", rows(3))),
        "--ledger",
        str(tmp_path / "l.csv"),
        *options,
    )
    assert_refused(result, emulator, options[0])


async def test_unparsable_rate_exits_2_with_one_line(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    result = await run(
        tmp_path, emulator, str(write_csv(tmp_path / "c.csv", rows(3))), "--ledger", str(tmp_path / "l.csv"),
        "--rate", "fast",
    )  # fmt: skip
    assert_refused(result, emulator, "rate")


async def test_ledger_in_a_missing_directory_exits_2_with_one_line(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    ledger = tmp_path / "no-such-dir" / "ledger.csv"
    result = await run(
        tmp_path, emulator, str(write_csv(tmp_path / "c.csv", rows(3))), "--ledger", str(ledger)
    )
    assert "no-such-dir" in assert_refused(result, emulator, "ledger", "directory", "no such")


async def test_ledger_that_is_a_directory_exits_2_with_one_line(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    (tmp_path / "ledger-dir").mkdir()
    result = await run(
        tmp_path,
        emulator,
        str(write_csv(tmp_path / "c.csv", rows(3))),
        "--ledger",
        str(tmp_path / "ledger-dir"),
    )
    assert_refused(result, emulator, "directory", "ledger")


# -- every option is range-checked, in one place ----------------------------------------------------------

OUT_OF_RANGE = [
    ("--failure-window", "0", ">= 1"),
    ("--failure-window", "-1", ">= 1"),
    ("--grace", "-1", ">= 0"),
    ("--grace", "nan", ">= 0"),
    ("--backoff-base", "0", "> 0"),
    ("--timeout", "inf", "> 0"),
    ("--timeout", "0", "> 0"),
    ("--concurrency", "0", ">= 1"),
    ("--concurrency", "100000", "<= 1024"),
    ("--max-retries", "-1", ">= 0"),
    ("--max-wait", "-5", ">= 0"),
    ("--max-outage", "0", "> 0"),
    ("--max-failure-rate", "0", "> 0"),
    ("--max-failure-rate", "1.5", "<= 1"),
    ("--headroom", "1", "< 1"),
    ("--limit", "-1", ">= 0"),
    ("--give-up-after", "0", "> 0"),
    ("--rate", "99999999999/s", "<= 1000000"),
    ("--rate", "1/100000h", "period"),
]


@pytest.mark.parametrize(("flag", "value", "allowed"), OUT_OF_RANGE, ids=lambda v: str(v))
def test_an_option_out_of_its_range_exits_2_with_one_line_naming_it_and_the_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, allowed: str
) -> None:
    corrections = write_csv(tmp_path / "c.csv", rows(3))
    try:
        code = cli.main(
            ["run", str(corrections), "--ledger", str(tmp_path / "l.csv"), "--dry-run", flag, value]
        )
    except SystemExit as exc:  # a value the flag's own parser refuses: argparse's one-line usage error
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2, err
    (message,) = err.strip().splitlines()
    assert flag in message and allowed in message
    assert not (tmp_path / "l.csv").exists()


@pytest.mark.parametrize(
    ("setting", "flag"),
    [("failure_window = 0", "--failure-window"), ("grace = -0.5", "--grace"),
     ("concurrency = \"eight\"", "--concurrency"), ("dry_run = \"yes\"", "--dry-run")],
)  # fmt: skip
def test_a_job_file_value_out_of_range_is_refused_the_same_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, flag: str
) -> None:
    corrections = write_csv(tmp_path / "c.csv", rows(3))
    job = tmp_path / "job.toml"
    job.write_text(f'[run]\nledger = "{tmp_path / "l.csv"}"\n{setting}\n', encoding="utf-8")
    code = cli.main(["run", str(corrections), "--job", str(job)])
    (message,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and flag in message


def test_the_python_api_checks_the_same_ranges() -> None:
    checks = [
        functools.partial(RunConfig, input="c.csv", failure_window=0),
        functools.partial(RunConfig, input="c.csv", grace=-1.0),
        functools.partial(RunConfig, input="c.csv", batch_rows=0),
        functools.partial(RunConfig, input="c.csv", backoff_cap=0.0),
        functools.partial(RunConfig, input="c.csv", fsync_interval=0),
    ]
    for check in checks:
        with pytest.raises(UsageError, match="must be"):
            check()


async def test_an_api_url_with_credentials_exits_2_and_never_shows_them(tmp_path: Path) -> None:
    ledger = tmp_path / "l.csv"
    result = await run_cli(
        "run", str(write_csv(tmp_path / "c.csv", rows(3))), "--ledger", str(ledger),
        "--api-url", "https://ops:s3cr3t-pass@127.0.0.1:9", env=cli_env(),
    )  # fmt: skip
    assert result.returncode == 2
    (message,) = result.stderr.strip().splitlines()
    assert "credentials" in message
    assert "s3cr3t" not in result.stdout + result.stderr
    assert not ledger.exists() and not (tmp_path / "l.csv.runs.jsonl").exists()

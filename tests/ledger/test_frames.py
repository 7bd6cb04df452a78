"""pandas at the Python edge: a DataFrame in (the same run as a file of the same rows), the ledger
out as a typed DataFrame, and a command line that never imports pandas."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from batch_override import read_ledger
from batch_override.apikey import ApiKey
from batch_override.config import Rate, RunConfig
from batch_override.emulator import DEMO_API_KEY, Emulator
from batch_override.errors import InputError
from batch_override.input.frame_input import content_sha256
from batch_override.job.runner import run_job_async
from batch_override.summary import Summary
from tests.support import REPO, cli_env, line, sha, write_csv, write_ledger, write_runlog

NOT_READY = {("video", sha(1)): "not_classified"}
HEADER = ("hash", "classification", "ticket", "count", "score", "seen")


def frame() -> pd.DataFrame:
    """Submitted, not_ready, invalid, duplicate and conflicting rows, with carried values that are
    not text; the index is not a column (and is not carried)."""
    return pd.DataFrame(
        {
            "hash": [sha(0), sha(1), "not-a-hash", sha(0), sha(4), sha(4), sha(6)],
            "classification": ["human", "artificial", "human", "human", "human", "artificial", "Human"],
            "ticket": ["T-0", "=1+1", None, "T-3", "T-4", "T-5", "ünï ✓"],
            "count": pd.array([1, None, 3, 4, 5, 6, 7], dtype="Int64"),
            "score": [0.5, np.nan, 2.0, 0.1, 1e20, -1.25, 3.0],
            "seen": pd.to_datetime(
                pd.Index(  # the stubs take no None in a plain list; pandas does (NaT)
                    [
                        "2026-11-28T09:15:49.5Z",
                        None,
                        "2026-11-28T10:00:00Z",
                        "2026-11-28T10:00:00.123Z",
                        "2026-01-01T00:00:00Z",
                        "2026-01-01T00:00:01Z",
                        "2026-01-01T00:00:02Z",
                    ]
                ),
                utc=True,
                format="ISO8601",
            ),
        },
        index=pd.Index([10, 11, 12, 13, 14, 15, 16], name="idx"),
    )


#: The same rows as a corrections file: the carried values as the documented rule writes them.
FILE_ROWS = [
    (sha(0), "human", "T-0", "1", "0.5", "2026-11-28T09:15:49.5Z"),
    (sha(1), "artificial", "=1+1", "", "", ""),
    ("not-a-hash", "human", "", "3", "2", "2026-11-28T10:00:00Z"),
    (sha(0), "human", "T-3", "4", "0.1", "2026-11-28T10:00:00.123Z"),
    (sha(4), "human", "T-4", "5", "1e+20", "2026-01-01T00:00:00Z"),
    (sha(4), "artificial", "T-5", "6", "-1.25", "2026-01-01T00:00:01Z"),
    (sha(6), "Human", "ünï ✓", "7", "3", "2026-01-01T00:00:02Z"),
]


async def run(data: Any, emulator: Emulator, ledger: Path, **config: Any) -> Summary:
    settings: dict[str, Any] = {"rate": Rate(1000, 1.0), "backoff_base": 0.01}
    settings.update(config)
    run_config = RunConfig(input=data, ledger=ledger, api_url=emulator.url, **settings)
    return await asyncio.wait_for(run_job_async(run_config, ApiKey(DEMO_API_KEY)), 30)


def lines_without_run(ledger: Path) -> pd.DataFrame:
    """The ledger's text, minus what differs between two runs (run id, time), in row order."""
    text = pd.read_csv(ledger, dtype=str, keep_default_na=False)
    return text.drop(columns=["run_id", "finished_at"]).sort_values("row").reset_index(drop=True)


def runlog(ledger: Path) -> list[dict[str, Any]]:
    path = ledger.with_name(ledger.name + ".runs.jsonl")
    return [json.loads(text) for text in path.read_text(encoding="utf-8").splitlines()]


async def test_a_dataframe_run_and_a_file_run_of_the_same_rows_write_the_same_ledger_lines(
    tmp_path: Path, emulator_factory
) -> None:
    from_frame, from_file = tmp_path / "frame.ledger.csv", tmp_path / "file.ledger.csv"
    first = await run(frame(), await emulator_factory(unknown="classified", states=NOT_READY), from_frame)
    path = write_csv(tmp_path / "c.csv", FILE_ROWS, HEADER)
    second = await run(str(path), await emulator_factory(unknown="classified", states=NOT_READY), from_file)
    assert first.outcomes == second.outcomes
    assert set(first.outcomes) == {"submitted", "not_ready", "invalid", "duplicate", "conflict"}
    left, right = lines_without_run(from_frame), lines_without_run(from_file)
    assert list(left.columns) == [*left.columns[:9], "ticket", "count", "score", "seen"]
    pd.testing.assert_frame_equal(left, right)
    assert list(left["ticket"]) == ["T-0", "'=1+1", "", "T-3", "T-4", "T-5", "ünï ✓"]  # neutralised too


async def test_resume_works_across_dataframe_and_file_runs_into_one_ledger(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified", states=NOT_READY)
    ledger = tmp_path / "ledger.csv"
    await run(frame(), emulator, ledger)
    sent = emulator.stats()["requests"]
    again = await run(str(write_csv(tmp_path / "c.csv", FILE_ROWS, HEADER)), emulator, ledger)
    assert again.outcomes["skipped"] == 2  # sha(0) and sha(6): accepted by the DataFrame run
    assert emulator.stats()["requests"] - sent == 2  # the preflight and the not_ready row
    third = await run(frame(), emulator, ledger)
    assert (third.outcomes["skipped"], third.outcomes["not_ready"]) == (2, 1)


async def test_the_run_log_records_a_dataframe_input_by_its_row_count_and_content_hash(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    ledger = tmp_path / "ledger.csv"
    data = frame()
    await run(data, emulator, ledger, dry_run=True)
    started = runlog(ledger)[0]
    assert (started["input"], started["input_rows"]) == ("<DataFrame>", 7)
    assert started["input_sha256"] == content_sha256(pa.Table.from_pandas(data, preserve_index=False))
    # The hash is the content's: not the index, not the chunking; one changed value changes it.
    assert (
        content_sha256(pa.Table.from_pandas(data.reset_index(drop=True), preserve_index=False))
        == (started["input_sha256"])
    )
    changed = data.assign(ticket=data["ticket"].replace("T-0", "T-00"))
    assert content_sha256(pa.Table.from_pandas(changed, preserve_index=False)) != started["input_sha256"]
    assert started["columns"] == {"hash": "hash", "classification": "classification", "media": "media"}


async def test_a_pyarrow_table_is_an_input_too(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    table = pa.table({"sha256": [sha(0), sha(1)], "label": ["human", "artificial"], "n": [1.5, float("nan")]})
    summary = await run(
        table, emulator, tmp_path / "l.csv", hash_column="SHA256", classification_column="label"
    )
    assert dict(summary.outcomes) == {"submitted": 2}
    assert list(read_ledger(tmp_path / "l.csv")["n"]) == ["1.5", ""]
    assert runlog(tmp_path / "l.csv")[0]["input"] == "<pyarrow.Table>"


async def test_a_dataframe_that_cannot_be_read_is_one_input_error(tmp_path: Path) -> None:
    config = RunConfig(input=pd.DataFrame({"sha": [sha(0)]}), ledger=tmp_path / "l.csv", dry_run=True)
    with pytest.raises(
        InputError, match=r"^<DataFrame>: missing required column 'hash' and 'classification'"
    ):
        await run_job_async(config, None)
    mixed = pd.DataFrame({"hash": [sha(0), sha(1)], "classification": "human", "n": pd.Series([1, "x"])})
    with pytest.raises(InputError, match=r"^<DataFrame>: column 'n' holds values of mixed types \("):
        await run_job_async(RunConfig(input=mixed, ledger=tmp_path / "n.csv", dry_run=True), None)
    with pytest.raises(InputError, match="not list"):
        await run_job_async(RunConfig(input=[1, 2], ledger=tmp_path / "m.csv", dry_run=True), None)


async def test_a_dataframe_gets_a_files_column_checks_in_the_same_words(tmp_path: Path) -> None:
    rows = [[sha(0), "human", "a", "b"]]
    repeated = pd.DataFrame(rows, columns=["hash", "classification", "t", "t"])
    with pytest.raises(InputError, match=r"^<DataFrame>: column 't' appears twice in the header$"):
        await run_job_async(RunConfig(input=repeated, ledger=tmp_path / "r.csv", dry_run=True), None)
    folded = pd.DataFrame(rows, columns=["hash", "classification", "Note", "note "])
    with pytest.raises(InputError, match=r"^<DataFrame>: column 'note' appears twice in the header$"):
        await run_job_async(RunConfig(input=folded, ledger=tmp_path / "f.csv", dry_run=True), None)
    unnamed = pd.DataFrame(rows, columns=["hash", "classification", 0, 1])
    with pytest.raises(InputError, match=r"^<DataFrame>: column 0 has a name of type int, not a string; "):
        await run_job_async(RunConfig(input=unnamed, ledger=tmp_path / "u.csv", dry_run=True), None)


def test_run_config_leaves_its_input_out_of_equality_and_hashing() -> None:
    by_frame, by_path = RunConfig(input=frame()), RunConfig(input="corrections.csv")
    assert by_frame == by_path
    assert hash(by_frame) == hash(by_path)
    assert RunConfig(input=frame(), concurrency=2) != by_frame


async def test_read_ledger_types_the_columns(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified", states=NOT_READY)
    ledger = tmp_path / "ledger.csv"
    await run(frame(), emulator, ledger)
    ledger_frame = read_ledger(ledger)
    dtypes = ledger_frame.dtypes
    assert str(dtypes["finished_at"]) == "datetime64[ms, UTC]"
    assert (str(dtypes["http_status"]), str(dtypes["attempts"]), str(dtypes["row"])) == (
        "Int64",
        "Int64",
        "int64",
    )
    assert isinstance(dtypes["outcome"], pd.CategoricalDtype)
    assert isinstance(dtypes["error_code"], pd.CategoricalDtype)
    for name in ("media", "hash", "classification", "message", "run_id", "ticket", "count", "score", "seen"):
        assert pd.api.types.is_string_dtype(dtypes[name]), name
    by_row = ledger_frame.set_index("row").sort_index()
    assert by_row.loc[0, "http_status"] == 201
    assert by_row.loc[2, "http_status"] is pd.NA  # invalid: nothing sent
    assert by_row.loc[1, "count"] == ""
    assert ledger_frame["finished_at"].notna().all()


def test_read_ledger_latest_keeps_each_overrides_latest_line_that_resume_trusts(tmp_path: Path) -> None:
    ledger = write_ledger(
        tmp_path / "l.csv",
        [
            line(0, "submitted", "a"), line(1, "failed", "a"), line(2, "not_ready", "a"),
            line(0, "failed", "rehearsal"), line(3, "submitted", "rehearsal"),
            line(0, "duplicate", "c"), line(1, "submitted", "c"), line(4, "invalid", "c"),
            line(5, "rejected", "c", classification="artificial"), line(2, "aborted", "c"),
        ],
    )  # fmt: skip
    prod, emulator = "https://backend.identifai.net", "http://127.0.0.1:8080"
    write_runlog(
        ledger,
        [
            {"run_id": "a", "event": "started", "api_url": prod, "key_fingerprint": "k"},
            {"run_id": "rehearsal", "event": "started", "api_url": emulator, "key_fingerprint": "k"},
            {"run_id": "c", "event": "started", "api_url": prod, "key_fingerprint": "k"},
        ],
    )
    state = read_ledger(ledger, latest=True)
    got = {(h, o, r) for h, o, r in zip(state["hash"], state["outcome"], state["run_id"], strict=True)}
    assert got == {
        (
            sha(0),
            "submitted",
            "a",
        ),  # c's duplicate line says nothing of the server; the rehearsal is not trusted
        (sha(1), "submitted", "c"),
        (sha(2), "aborted", "c"),
        (sha(5), "rejected", "c"),
    }
    assert len(state) == 4
    assert str(state.dtypes["attempts"]) == "Int64"


def test_read_ledger_latest_without_a_run_log_trusts_nothing(tmp_path: Path) -> None:
    ledger = write_ledger(tmp_path / "l.csv", [line(0, "submitted", "a")])
    assert len(read_ledger(ledger)) == 1
    empty = read_ledger(ledger, latest=True)
    assert len(empty) == 0
    assert str(empty.dtypes["finished_at"]) == "datetime64[ms, UTC]"


async def cli_imports_pandas(*argv: str) -> bool:
    """Run ``batch-override ARGV`` as the script does, in a process that tells whether pandas
    was imported; the command must exit 0."""
    probe = (
        f"import runpy, sys\nsys.argv = ['batch-override', *{list(argv)!r}]\n"
        "try:\n"
        "    runpy.run_module('batch_override', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code, 'pandas' in sys.modules)\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", probe,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=cli_env(key=None), cwd=str(REPO),
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    last = out.decode().splitlines()[-1]
    assert last.startswith("exit 0 "), out.decode() + err.decode()
    return last == "exit 0 True"


async def test_the_command_line_never_imports_pandas(tmp_path: Path) -> None:
    corrections = write_csv(tmp_path / "c.csv", [(sha(0), "human"), (sha(1), "artificial")])
    ledger = tmp_path / "l.csv"
    assert not await cli_imports_pandas("run", str(corrections), "--ledger", str(ledger), "--dry-run")
    assert not await cli_imports_pandas("report", str(ledger), "--retry-file", str(tmp_path / "r.csv"))


async def test_bytes_hashes_are_read_as_text_or_digests_and_a_bad_one_is_named_by_its_bytes(
    tmp_path: Path,
) -> None:
    hashes = [
        sha(0).encode(),
        bytes.fromhex(sha(1)),
        b"\x01" * 20,
        "é".encode() * 32,
        sha(4).upper().encode(),
    ]
    data = pd.DataFrame({"hash": hashes, "classification": "human"})
    ledger = tmp_path / "l.csv"
    summary = await run_job_async(RunConfig(input=data, ledger=ledger, dry_run=True), None)
    assert summary.outcomes == {"planned": 3, "invalid": 2}
    lines = read_ledger(ledger).sort_values("row")
    assert list(lines["hash"])[:2] == [sha(0), sha(1)]
    assert list(lines["hash"])[4] == sha(4)
    assert list(lines["message"])[2:4] == [
        "hash is a 20-byte binary value, expected 32 bytes or 64 hex characters (SHA-256)",
        "hash is a 64-byte binary value, expected 32 bytes or 64 hex characters (SHA-256)",
    ]


async def test_period_and_interval_cells_are_carried_as_the_text_pandas_shows(tmp_path: Path) -> None:
    data = pd.DataFrame(
        {
            "hash": [sha(0), sha(1)],
            "classification": "human",
            "month": pd.PeriodIndex(["2024-01", None], freq="M"),
            "bucket": pd.IntervalIndex.from_tuples([(0, 1), (1, 2)]),
        }
    )
    ledger = tmp_path / "l.csv"
    await run_job_async(RunConfig(input=data, ledger=ledger, dry_run=True), None)
    lines = read_ledger(ledger).sort_values("row")
    assert list(lines["month"]) == ["2024-01", ""]
    assert list(lines["bucket"]) == ["(0, 1]", "(1, 2]"]

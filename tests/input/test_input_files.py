"""Input files as the field names them: names that are not UTF-8, codecs that are not for files,
a FIFO (named pipe) or a character device instead of a regular file."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_override.apikey import ApiKey
from batch_override.config import Rate, RunConfig
from batch_override.emulator import DEMO_API_KEY, Emulator
from batch_override.errors import UsageError
from batch_override.input.stdin_copy import is_stream
from batch_override.input.table import check_encoding
from batch_override.job.runner import run_job_async
from batch_override.summary import Summary
from tests.support import read_ledger, run_cli, sha

ROWS = [(sha(i), "human", f"caf\u00e9 {i}") for i in range(3)]


async def _run(source: str, emulator: Emulator, ledger: Path, **config: Any) -> Summary:
    run_config = RunConfig(
        input=source, ledger=ledger, api_url=emulator.url, rate=Rate(1000, 1.0), backoff_base=0.01, **config
    )
    return await asyncio.wait_for(run_job_async(run_config, ApiKey(DEMO_API_KEY)), 30)


def _csv(encoding: str) -> bytes:
    return ("hash,classification,note\n" + "".join(f"{h},{c},{n}\n" for h, c, n in ROWS)).encode(encoding)


@pytest.mark.parametrize("kind", ["csv", "csv.gz", "parquet"])
async def test_a_file_name_that_is_not_utf8_is_opened_and_read(
    tmp_path: Path, emulator_factory: Any, kind: str
) -> None:
    emulator = await emulator_factory(unknown="classified")
    name = os.fsdecode(os.fsencode(tmp_path) + b"/corrections-\xe9t\xe9." + kind.encode())  # Latin-1 bytes
    if kind == "parquet":
        columns = list(zip(*ROWS, strict=True))
        table = pa.table({"hash": columns[0], "classification": columns[1], "note": columns[2]})
        with open(name, "wb") as fh:  # noqa: ASYNC230 - pyarrow itself cannot name it
            pq.write_table(table, fh)
    else:
        data = _csv("latin-1")
        Path(name).write_bytes(gzip.compress(data) if kind == "csv.gz" else data)
    options = {} if kind == "parquet" else {"encoding": "latin-1"}
    summary = await _run(name, emulator, tmp_path / "l.csv", **options)
    assert (summary.exit_code, summary.outcomes["submitted"]) == (0, 3)
    ledger = read_ledger(tmp_path / "l.csv").sort_values("row", key=lambda r: r.astype(int))
    assert ledger["note"].tolist() == [n for _, _, n in ROWS]  # in flight together: any order


async def test_a_utf8_file_under_a_name_that_is_not_utf8_needs_no_encoding(
    tmp_path: Path, emulator_factory: Any
) -> None:
    emulator = await emulator_factory(unknown="classified")
    name = os.fsdecode(os.fsencode(tmp_path) + b"/\xff.csv")
    Path(name).write_bytes(_csv("utf-8"))
    summary = await _run(name, emulator, tmp_path / "l.csv")
    assert summary.exit_code == 0


@pytest.mark.parametrize("codec", ["punycode", "idna", "rot13", "base64"])
def test_a_codec_that_is_not_for_files_is_a_usage_error_naming_it(codec: str) -> None:
    with pytest.raises(UsageError, match=rf"^--encoding '{codec}': not a text encoding for files"):
        check_encoding(codec)


@pytest.mark.parametrize("codec", ["utf-8", "utf-16-le", "utf-32", "cp1252", "latin-1", "shift_jis", "cp037"])
def test_the_text_codecs_of_files_are_accepted(codec: str) -> None:
    assert check_encoding(codec)


async def test_encoding_punycode_on_the_command_line_is_exit_2_in_one_line(tmp_path: Path) -> None:
    corrections = tmp_path / "c.csv"
    corrections.write_bytes(_csv("utf-8"))
    result = await run_cli(
        "run", str(corrections), "--ledger", str(tmp_path / "l.csv"), "--encoding", "punycode"
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith(
        "batch-override: error: --encoding 'punycode': not a text encoding"
    )
    assert not (tmp_path / "l.csv").exists()


async def test_a_fifo_as_the_input_is_read_as_a_stream(tmp_path: Path, emulator_factory: Any) -> None:
    emulator = await emulator_factory(unknown="classified")
    fifo = tmp_path / "corrections.csv"
    os.mkfifo(fifo)
    assert is_stream(fifo) and is_stream(Path("/dev/null")) and not is_stream(tmp_path)

    def feed() -> None:
        with open(fifo, "wb") as fh:  # blocks until the run opens it for reading
            fh.write(_csv("utf-8"))

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        summary = await _run(str(fifo), emulator, tmp_path / "l.csv")
    finally:
        if writer.is_alive():  # the run never opened it: release the writer
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(5)
    assert (summary.exit_code, summary.outcomes["submitted"]) == (0, 3)
    assert summary.rows == 3

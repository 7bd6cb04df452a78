"""A quiet day: an input with a header and no data rows is a run of 0 rows with ``allow_empty``
(flag ``--allow-empty``, job-file key ``allow_empty``), exit 0; without it, still exit 2 (for a
cumulative export, no rows means the export broke).  ``validate`` and ``hash`` follow the same rule.

In-process (``cli.main``) against an emulator in a thread: the property is the command's exit
code and output, not the process's own.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_override.cli import main as cli
from batch_override.emulator import Emulator
from tests.api_support import emulator_in_thread
from tests.support import write_csv


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with emulator_in_thread(unknown="classified") as running:
        yield running


def _run(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    finally:
        gc.unfreeze()  # `run` freezes the collector for the process it expects to end


def _header_only(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "today.csv", [])


def test_a_header_only_input_with_allow_empty_is_a_run_of_0_rows_exit_0(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str], api_key: str
) -> None:
    ledger = tmp_path / "l.csv"
    code = _run(["run", str(_header_only(tmp_path)), "--ledger", str(ledger), "--api-url", emulator.url,
                 "--allow-empty", "--no-progress"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert ": 0 rows in " in out and "-> exit 0" in out
    assert emulator.stats()["overrides"] == 0


def test_the_job_file_key_allow_empty_does_the_same(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str], api_key: str
) -> None:
    job = tmp_path / "job.toml"
    job.write_text(f'[run]\nledger = "{tmp_path / "l.csv"}"\nallow_empty = true\n', encoding="utf-8")
    code = _run(["run", str(_header_only(tmp_path)), "--job", str(job), "--api-url", emulator.url, "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == "" and err == ""  # --quiet: nothing to mail on a quiet day


def test_without_allow_empty_a_header_only_input_stays_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], api_key: str
) -> None:
    ledger = tmp_path / "l.csv"
    code = _run(
        ["run", str(_header_only(tmp_path)), "--ledger", str(ledger), "--api-url", "http://127.0.0.1:9"]
    )
    (message,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "has a header but no data rows" in message and "--allow-empty" in message
    assert not ledger.exists()


@pytest.mark.parametrize(("flags", "code"), [((), 2), (("--allow-empty",), 0)])
def test_validate_follows_the_same_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], code: int
) -> None:
    assert _run(["validate", str(_header_only(tmp_path)), *flags]) == code
    out, err = capsys.readouterr()
    if code == 0:
        assert out.strip().endswith("today.csv: 0 rows: 0 to send, 0 invalid, 0 duplicate, 0 conflict")
    else:
        assert "has a header but no data rows" in err


@pytest.mark.parametrize(("flags", "code"), [((), 2), (("--allow-empty",), 0)])
def test_hash_follows_the_same_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], code: int
) -> None:
    listing = tmp_path / "listing.csv"
    listing.write_text("path,classification\n", encoding="utf-8")
    out_file = tmp_path / "c.csv"
    assert _run(["hash", str(listing), "-o", str(out_file), *flags]) == code
    out, err = capsys.readouterr()
    if code == 0:
        assert "hashed 0 files" in out
        assert out_file.read_text(encoding="utf-8").splitlines() == ['"hash","path","classification","error"']
    else:
        assert "has a header but no data rows" in err and not out_file.exists()

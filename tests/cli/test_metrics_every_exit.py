"""Every exit of ``run`` writes its metrics once the options are read (exit 2 and a bug's 70
included), with why it ended in a word; exit 4 writes nothing, so the holder's metrics stay.

In-process (``cli.main``; in a worker thread where the test's own loop serves a Pushgateway):
what is checked is the files and pushes the command leaves, not the process's own properties.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from batch_override.cli import main as cli
from batch_override.cli.metrics import write_metrics
from batch_override.errors import EndReason, end_reason
from batch_override.ledger.writer import LedgerLock
from tests.cli.support import metric_key, scrape_pushgateway, summary_of_a_run
from tests.support import sha, write_csv

LAST_SUCCESS = 1_700_000_000.0


def _run(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    finally:
        gc.unfreeze()  # `run` freezes the collector for the process it expects to end


def _samples(path: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = path.read_text(encoding="utf-8")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _metrics(prom: Path) -> list[str]:
    return ["--metrics-file", str(prom), "--metrics-job", "nightly"]


@pytest.fixture
def last_night(tmp_path: Path) -> Path:
    """The metrics file a successful night left."""
    prom = tmp_path / "batch_override.prom"
    write_metrics(prom, summary_of_a_run(exit_code=0), job="nightly", last_success_unix=LAST_SUCCESS)
    return prom


def _header_only(tmp_path: Path) -> str:
    return str(write_csv(tmp_path / "today.csv", []))


def _missing(tmp_path: Path) -> str:
    return str(tmp_path / "not-exported-tonight.csv")


@pytest.mark.parametrize("input_file", [_missing, _header_only], ids=["missing", "header-only"])
def test_an_input_that_cannot_be_run_writes_exit_2_and_keeps_the_last_success(
    tmp_path: Path, last_night: Path, api_key: str, capsys: pytest.CaptureFixture[str], input_file
) -> None:
    argv = ["run", input_file(tmp_path), "--ledger", str(tmp_path / "nightly.csv"),
            "--api-url", "http://127.0.0.1:9", *_metrics(last_night)]  # fmt: skip
    assert _run(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1  # still one line
    samples = _samples(last_night)
    job = frozenset({("job", "nightly")})
    assert samples[("batch_override_exit_code", job)] == 2
    assert samples[("batch_override_exit_reason", job | {("reason", "input")})] == 1
    assert samples[("batch_override_last_success_timestamp_seconds", job)] == LAST_SUCCESS
    assert samples[("batch_override_run_in_progress", job)] == 0


def test_a_missing_key_writes_exit_2_with_reason_usage(
    tmp_path: Path, last_night: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IDENTIFAI_API_KEY", raising=False)
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    argv = ["run", str(corrections), "--ledger", str(tmp_path / "nightly.csv"),
            "--api-url", "http://127.0.0.1:9", *_metrics(last_night)]  # fmt: skip
    assert _run(argv) == 2
    samples = _samples(last_night)
    assert samples[("batch_override_exit_reason", frozenset({("job", "nightly"), ("reason", "usage")}))] == 1


def test_a_bug_writes_exit_70_with_reason_internal(
    tmp_path: Path, last_night: Path, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr("batch_override.job.runner.run_job_async", boom)
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    argv = ["run", str(corrections), "--ledger", str(tmp_path / "nightly.csv"),
            "--api-url", "http://127.0.0.1:9", *_metrics(last_night)]  # fmt: skip
    assert _run(argv) == 70
    samples = _samples(last_night)
    job = frozenset({("job", "nightly")})
    assert samples[("batch_override_exit_code", job)] == 70
    assert samples[("batch_override_exit_reason", job | {("reason", "internal")})] == 1


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Path]:
    """A ledger another run holds."""
    ledger = tmp_path / "nightly.csv"
    lock = LedgerLock(ledger)
    lock.acquire({"pid": 1, "host": "elsewhere", "run_id": "holder", "started_at": "2026-01-01T00:00:00Z"})
    try:
        yield ledger
    finally:
        lock.release()


def test_exit_4_writes_nothing_so_the_holders_metrics_stay(
    tmp_path: Path, last_night: Path, held: Path, api_key: str
) -> None:
    before = last_night.read_bytes()  # stands for the holder's in-progress metrics
    for input_file in (write_csv(tmp_path / "c.csv", [(sha(1), "human")]), tmp_path / "missing.csv"):
        argv = ["run", str(input_file), "--ledger", str(held), "--api-url", "http://127.0.0.1:9",
                *_metrics(last_night)]  # fmt: skip
        assert _run(argv) == 4
        assert last_night.read_bytes() == before


def test_a_run_that_cannot_start_writes_nothing_while_another_run_holds_the_ledger(
    tmp_path: Path, last_night: Path, held: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The key is missing (exit 2, found before the ledger is locked): the holder's metrics stay.
    monkeypatch.delenv("IDENTIFAI_API_KEY", raising=False)
    before = last_night.read_bytes()
    argv = ["run", str(write_csv(tmp_path / "c.csv", [(sha(1), "human")])), "--ledger", str(held),
            "--api-url", "http://127.0.0.1:9", "--metrics-file", str(last_night)]  # fmt: skip
    assert _run(argv) == 2
    assert last_night.read_bytes() == before


async def test_exit_2_is_pushed_and_the_last_success_stays_in_the_group(
    tmp_path: Path, pushgateway: str, api_key: str
) -> None:
    from batch_override.cli.metrics import push_metrics_async

    await push_metrics_async(pushgateway, summary_of_a_run(exit_code=0), job="nightly", now=LAST_SUCCESS)
    argv = ["run", _missing(tmp_path), "--ledger", str(tmp_path / "nightly.csv"),
            "--api-url", "http://127.0.0.1:9", "--pushgateway", pushgateway,
            "--metrics-job=nightly"]  # fmt: skip
    assert await asyncio.to_thread(_run, argv) == 2
    seen = scrape_pushgateway(pushgateway)
    assert seen[metric_key("exit_code", job="nightly")] == 2
    assert seen[metric_key("exit_reason", job="nightly", reason="input")] == 1
    assert seen[metric_key("last_success_timestamp_seconds", job="nightly")] == LAST_SUCCESS


def test_every_exit_code_but_4_has_one_reason_from_the_fixed_set() -> None:
    from batch_override.errors import ExitCode, InputError, LedgerError, UsageError

    assert {end_reason(int(code)) for code in ExitCode if code != ExitCode.LOCKED} == set(EndReason) - {
        EndReason.USAGE
    }
    assert end_reason(2, UsageError("x")) is EndReason.USAGE
    assert end_reason(2, InputError("x")) is EndReason.INPUT
    assert end_reason(2, LedgerError("x")) is EndReason.LEDGER
    assert end_reason(2, ValueError("x")) is EndReason.INTERNAL

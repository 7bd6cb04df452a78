"""Re-running with the same ledger: what is done is skipped, what can succeed later is sent again."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch_override.emulator import DEMO_API_KEY
from batch_override.ledger.writer import LedgerLock
from tests.support import FAST, cli_env, latest, read_ledger, run_cli, sha, write_csv


@contextlib.contextmanager
def held_lock(ledger: Path) -> Iterator[None]:
    """The ledger's lock, held as another run on cron-1 would hold it."""
    lock = LedgerLock(ledger)
    lock.acquire({"pid": 4242, "host": "ops@cron-1", "run_id": "R1", "started_at": "2026-11-28T00:00:00Z"})
    try:
        yield
    finally:
        lock.release()


async def test_a_rerun_skips_accepted_rows_and_resends_only_the_not_ready(
    tmp_path: Path, emulator_factory
) -> None:
    states = {("video", sha(i)): "not_classified" for i in range(5)}
    emulator = await emulator_factory(unknown="classified", states=states)
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(20)])
    ledger = tmp_path / "l.csv"
    args = ("run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST)

    first = await run_cli(*args)
    assert first.returncode == 1, first.stderr  # five rows are not ready yet
    requests_after_first = emulator.stats()["requests"]
    second = await run_cli(*args)

    assert second.returncode == 1
    lines = read_ledger(ledger)
    rerun = lines[lines["run_id"] == lines["run_id"].iloc[-1]].set_index("row").sort_index()
    assert list(rerun.index) == [0, 1, 2, 3, 4]  # the done rows are counted skipped, not written
    assert (rerun["outcome"] == "not_ready").all()
    assert "skipped=15" in second.stderr or "skipped" in second.stdout + second.stderr
    # Only the five not-ready rows (and the preflight) went to the server again.
    assert emulator.stats()["requests"] - requests_after_first == 5 + 1


async def test_rejected_rows_repeat_without_a_request_unless_retry_rejected(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="no_request")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(3)])
    ledger = tmp_path / "l.csv"
    args = ("run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST)
    await run_cli(*args)
    before = emulator.stats()["requests"]

    again = await run_cli(*args)
    assert again.returncode == 1
    assert emulator.stats()["requests"] == before  # nothing sent, not even the preflight
    assert "previously_rejected=3" in again.stdout + again.stderr  # counted, not written again
    assert set(latest(read_ledger(ledger))["error_code"]) == {"no_request"}

    await run_cli(*args, "--retry-rejected")
    assert emulator.stats()["requests"] == before + 1 + 3
    assert set(latest(read_ledger(ledger))["error_code"]) == {"no_request"}


async def test_a_rehearsal_against_the_emulator_never_makes_production_skip_rows(
    tmp_path: Path, emulator_factory
) -> None:
    rehearsal = await emulator_factory(unknown="classified")
    production = await emulator_factory(unknown="classified", api_keys=("prod-key-1", DEMO_API_KEY))
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(4)])
    ledger = tmp_path / "l.csv"
    await run_cli("run", str(corrections), "--ledger", str(ledger), "--api-url", rehearsal.url, *FAST)

    # Another URL: nothing trusted, every row sent.
    await run_cli("run", str(corrections), "--ledger", str(ledger), "--api-url", production.url, *FAST)
    assert len(production.overrides()) == 4
    # Same URL, another key: nothing trusted either.
    other_key = await run_cli(
        "run", str(corrections), "--ledger", str(ledger), "--api-url", production.url, *FAST,
        env=cli_env("prod-key-1"),
    )  # fmt: skip
    assert other_key.returncode == 0
    assert production.stats()["requests"] == 2 * (1 + 4)


async def test_the_other_classification_of_an_accepted_override_is_rejected_unsent(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    ledger = tmp_path / "l.csv"
    first = write_csv(tmp_path / "a.csv", [(sha(1), "human")])
    second = write_csv(tmp_path / "b.csv", [(sha(1), "artificial")])
    await run_cli("run", str(first), "--ledger", str(ledger), "--api-url", emulator.url, *FAST)
    before = emulator.stats()["requests"]

    result = await run_cli("run", str(second), "--ledger", str(ledger), "--api-url", emulator.url, *FAST)

    assert result.returncode == 1
    last = read_ledger(ledger).iloc[-1]
    assert (last["outcome"], last["error_code"]) == ("rejected", "classification_locked")
    assert emulator.stats()["requests"] == before


async def test_a_second_run_on_a_held_ledger_exits_4_naming_the_holder(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    ledger = tmp_path / "l.csv"
    with held_lock(ledger):
        result = await run_cli(
            "run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST
        )
    assert result.returncode == 4
    assert result.stderr.strip().count("\n") == 0
    assert "pid 4242 on ops@cron-1" in result.stderr
    assert emulator.stats()["requests"] == 0


async def test_a_ledger_reached_through_a_symlink_shares_its_targets_lock_and_run_log(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    target = tmp_path / "real" / "l.csv"
    target.parent.mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    with held_lock(target):
        held = await run_cli("run", str(corrections), "--ledger", str(link), "--api-url", emulator.url, *FAST)
    assert held.returncode == 4, held.stderr
    assert emulator.stats()["requests"] == 0
    done = await run_cli("run", str(corrections), "--ledger", str(link), "--api-url", emulator.url, *FAST)
    assert done.returncode == 0, done.stderr
    assert (target.parent / "l.csv.runs.jsonl").exists()
    assert not (tmp_path / "link.csv.runs.jsonl").exists() and not (tmp_path / "link.csv.lock").exists()


async def test_a_lock_file_left_by_a_dead_run_does_not_block(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    ledger = tmp_path / "l.csv"
    (tmp_path / "l.csv.lock").write_text('{"pid": 1, "host": "gone", "run_id": "old"}\n')
    result = await run_cli("run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST)
    assert result.returncode == 0, result.stderr


async def test_a_torn_last_line_is_cut_off_and_the_row_resent(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(3)])
    ledger = tmp_path / "l.csv"
    args = ("run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST)
    await run_cli(*args)
    text = ledger.read_text()
    lines = text.splitlines(keepends=True)
    ledger.write_text("".join(lines[:-1]) + lines[-1][:25])  # a kill mid-write

    result = await run_cli(*args)

    assert result.returncode == 0, result.stderr
    assert "torn last line" in result.stderr
    final = latest(read_ledger(ledger))
    assert list(final["row"]) == [0, 1, 2]
    assert set(final["outcome"]) <= {"submitted", "already_submitted"}
    assert list(final["row"][final["outcome"] == "already_submitted"]) == [2]  # only the cut row resent


@pytest.mark.parametrize("outcome", ["failed", "aborted", "not_ready"])
async def test_rows_whose_latest_line_did_not_succeed_are_sent_again(
    tmp_path: Path, emulator_factory, outcome: str
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(1), "human")])
    ledger = tmp_path / "l.csv"
    args = ("run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST)
    await run_cli(*args)
    # Rewrite history: the run's only line says the row did not succeed.
    text = ledger.read_text().replace('"submitted"', f'"{outcome}"')
    ledger.write_text(text)
    await run_cli(*args)
    assert latest(read_ledger(ledger))["outcome"].tolist() == ["already_submitted"]


async def test_a_held_ledger_is_refused_before_the_input_is_even_read(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    broken = tmp_path / "big.csv.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")  # reading it would fail with exit 2
    ledger = tmp_path / "l.csv"
    lock = LedgerLock(ledger)
    lock.acquire({"pid": 99, "host": "cron-1", "run_id": "R0", "started_at": "2026-11-28T00:00:00Z"})
    try:
        result = await run_cli("run", str(broken), "--ledger", str(ledger), "--api-url", emulator.url, *FAST)
    finally:
        lock.release()
    assert result.returncode == 4, result.stderr

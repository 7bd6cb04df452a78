"""The job end to end through the CLI, against the emulator: what a first-time user sees."""

from __future__ import annotations

from pathlib import Path

from tests.support import cli_env, read_ledger, run_cli, sha, write_csv


async def test_a_run_submits_every_row_and_ledgers_each_once(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(
        tmp_path / "c.csv", [(sha(i), "human" if i % 2 else "artificial") for i in range(20)]
    )
    ledger = tmp_path / "ledger.csv"
    result = await run_cli("run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url,
                           "--rate", "100/s", env=cli_env())  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = read_ledger(ledger)
    assert sorted(lines["row"]) == list(range(20))
    assert set(lines["outcome"]) == {"submitted"}
    assert len(emulator.overrides()) == 20

"""The same corrections give the same ledger whatever the file format or the internal batch size."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from batch_override.apikey import ApiKey
from batch_override.config import Rate, RunConfig
from batch_override.emulator import DEMO_API_KEY, Emulator, EmulatorConfig
from batch_override.job.runner import run_job_async
from tests.support import cli_env, read_ledger, run_cli

ROWS = 10_000
MEDIA = ("video", "image", "audio")


def h(i: int) -> str:
    return hashlib.sha256(f"equivalence-{i}".encode()).hexdigest()


def corrections(n: int = ROWS) -> tuple[pd.DataFrame, dict[tuple[str, str], str]]:
    """Deterministic rows with invalid rows, duplicates, conflicts, per-row media, and the emulator's
    states for some of them (not_classified, no_completed_request, expired)."""
    hashes: list[str] = []
    classes: list[str] = []
    media: list[str] = []
    tickets: list[str] = []
    for i in range(n):
        cls = "human" if i % 3 else "artificial"
        row_hash, row_media = h(i), MEDIA[i % 3]
        if i % 97 == 5:  # a repeat of the previous row: duplicate
            row_hash, cls, row_media = hashes[-1], classes[-1], media[-1]
        elif i % 211 == 7:  # the previous row's item with the other classification: both conflict
            row_hash, row_media = hashes[-1], media[-1]
            cls = "artificial" if classes[-1].strip().lower() == "human" else "human"
        elif i % 53 == 11:
            row_hash = ["", row_hash[:63], row_hash + "0", "../../user", row_hash[:63] + "z"][i % 5]
        elif i % 61 == 13:
            cls = ["AI", "", "maybe"][i % 3]
        elif i % 17 == 0:
            row_hash, cls = f" {row_hash.upper()}\u00a0", cls.title() + " "  # normalised, then valid
        if i % 29 == 3:
            row_media = ""  # the run's default media
        hashes.append(row_hash)
        classes.append(cls)
        media.append(row_media)
        tickets.append(f"T-{i}" if i % 41 else f"=T-{i}")
    kinds = {1: "not_classified", 2: "no_completed_request", 4: "expired"}
    states: dict[tuple[str, str], str] = {}
    for i in range(n):
        if i % 37 in kinds:
            m = MEDIA[i % 3] if i % 29 != 3 else "video"
            states[(m, h(i))] = kinds[i % 37]
    frame = pd.DataFrame({"ticket": tickets, "hash": hashes, "classification": classes, "media": media})
    return frame, states


def comparable(ledger: pd.DataFrame) -> pd.DataFrame:
    return ledger.drop(columns=["run_id", "finished_at"]).sort_values("row").reset_index(drop=True)


async def test_csv_and_parquet_of_the_same_rows_give_the_same_ledger(tmp_path: Path) -> None:
    frame, states = corrections()
    csv_path, parquet_path = tmp_path / "c.csv", tmp_path / "c.parquet"
    frame.to_csv(csv_path, index=False)
    frame.to_parquet(parquet_path, index=False, engine="pyarrow")
    config = EmulatorConfig(unknown="classified", states=states)

    async def run(path: Path, emulator: Emulator) -> tuple[int, pd.DataFrame, list[dict[str, str]]]:
        ledger = tmp_path / f"{path.suffix[1:]}.ledger.csv"
        result = await run_cli(
            "run", str(path), "--ledger", str(ledger), "--api-url", emulator.url,
            "--rate", "5000/s", "--concurrency", "16", "--backoff-base", "0.01", env=cli_env(), wait_s=60,
        )  # fmt: skip
        assert result.returncode in (0, 1), result.stderr[-2000:]
        return result.returncode, read_ledger(ledger), emulator.overrides()

    async with Emulator(config) as csv_emulator, Emulator(config) as parquet_emulator:
        (csv_exit, csv_ledger, csv_sent), (pq_exit, pq_ledger, pq_sent) = await asyncio.gather(
            run(csv_path, csv_emulator), run(parquet_path, parquet_emulator)
        )
    assert sorted(csv_ledger["row"]) == list(range(ROWS))
    assert sorted(pq_ledger["row"]) == list(range(ROWS))
    pd.testing.assert_frame_equal(comparable(csv_ledger), comparable(pq_ledger))
    assert csv_exit == pq_exit == 1
    key = lambda o: (o["media"], o["hash"], o["classification"])  # noqa: E731
    assert sorted(map(key, csv_sent)) == sorted(map(key, pq_sent))
    # The mix the rows were built to have is really there.
    outcomes = set(csv_ledger["outcome"])
    assert {"submitted", "duplicate", "conflict", "invalid", "not_ready", "rejected"} <= outcomes
    assert {"not_classified", "no_completed_request", "no_longer_possible"} <= set(csv_ledger["error_code"])


@pytest.mark.parametrize("batch_rows", [1, 3, 7, 64])
async def test_ledger_does_not_depend_on_the_batch_size(
    tmp_path: Path, emulator_factory, batch_rows: int
) -> None:
    frame, states = corrections(300)
    path = tmp_path / "c.parquet"
    frame.to_parquet(path, index=False, engine="pyarrow")

    async def run(name: str, **config: Any) -> tuple[pd.DataFrame, list[tuple[str, str, str]]]:
        emulator = await emulator_factory(unknown="classified", states=states)
        ledger = tmp_path / f"{name}.csv"
        run_config = RunConfig(
            input=str(path), ledger=ledger, api_url=emulator.url, rate=Rate(5000, 1.0), concurrency=8,
            backoff_base=0.01, **config,
        )  # fmt: skip
        await asyncio.wait_for(run_job_async(run_config, ApiKey(DEMO_API_KEY)), 30)
        sent = sorted((o["media"], o["hash"], o["classification"]) for o in emulator.overrides())
        return comparable(read_ledger(ledger)), sent

    whole, whole_sent = await run("whole")
    small, small_sent = await run("small", batch_rows=batch_rows)
    pd.testing.assert_frame_equal(whole, small)
    assert whole_sent == small_sent
    limited, limited_sent = await run("limited", limit=40)
    limited_small, limited_small_sent = await run("limited-small", limit=40, batch_rows=batch_rows)
    pd.testing.assert_frame_equal(limited, limited_small)
    assert limited_sent == limited_small_sent
    assert (limited["attempts"] > 0).sum() == 40  # exactly the first 40 sendable rows went out

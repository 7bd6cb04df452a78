"""Chaos: SIGKILL at seeded moments against a faulty server, then rerun until done.

The promise under test: no row is lost, the server ends up with exactly the overrides the ledger
says succeeded, and the only repeated POSTs are the ones in flight at a kill plus responses the
server dropped after recording.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Callable
from pathlib import Path

from tests.support import latest, read_ledger, start_cli, write_csv
from tests.support import sha as make_hash

ROWS = 300
CONCURRENCY = 4
KILLS = 10
SUCCESS = {"submitted", "already_submitted", "skipped"}


async def _until(count: Callable[[], int], target: int, proc: asyncio.subprocess.Process) -> bool:
    """Wait until ``count()`` reaches ``target`` (True) or the process has exited (False)."""
    while count() < target:
        if proc.returncode is not None:
            return False
        await asyncio.sleep(0.005)
    return True


async def test_kill_9_at_random_moments_loses_no_row_and_repeats_only_what_was_in_flight(
    tmp_path: Path, emulator_factory
) -> None:
    """A subprocess: ``kill -9`` ends a process, with whatever it had not written."""
    emulator = await emulator_factory(
        unknown="classified",
        fail_rate=0.05,
        drop_rate=0.05,
        drop_after_record_rate=0.05,
        latency_ms=10,
        seed=11,
    )
    rng = random.Random(20261128)
    rows = [(make_hash(i), rng.choice(["human", "artificial"]), rng.choice(["video", "image", "audio"]))
            for i in range(ROWS)]  # fmt: skip
    corrections = write_csv(tmp_path / "c.csv", rows, header=("hash", "classification", "media"))
    ledger = tmp_path / "l.csv"
    args = (
        "run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, "--rate", "2000/s",
        "--concurrency", str(CONCURRENCY), "--backoff-base", "0.01", "--max-retries", "3", "--no-preflight",
    )  # fmt: skip

    kills = 0
    while kills < KILLS:
        start = emulator.stats()["requests"]
        target = start + rng.randint(1, 60)
        proc = await start_cli(*args)
        if await _until(lambda: emulator.stats()["requests"], target, proc):
            proc.send_signal(signal.SIGKILL)
            kills += 1
        await proc.communicate()
        assert proc.returncode in (0, 1, -signal.SIGKILL), proc.returncode

    for _ in range(10):
        proc = await start_cli(*args)
        _, err = await proc.communicate()
        assert proc.returncode in (0, 1), err.decode()
        final = latest(read_ledger(ledger))
        if not final["outcome"].isin(["failed", "aborted"]).any():
            break

    final = latest(read_ledger(ledger))
    assert list(final["row"]) == list(range(ROWS))  # no row lost
    assert set(final["outcome"]) <= SUCCESS, final["outcome"].value_counts()
    accepted = {(o["media"], o["hash"], o["classification"]) for o in emulator.overrides()}
    assert accepted == {(m, h, c) for h, c, m in rows}
    stats = emulator.stats()["responses_by_status"]
    repeats = stats.get("400", 0)  # every hash is classified: a 400 is "already submitted"
    print("chaos:", kills, "kills;", stats, read_ledger(ledger)["run_id"].nunique(), "runs")
    assert repeats <= kills * CONCURRENCY + stats.get("dropped_after_record", 0), stats

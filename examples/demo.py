"""``make demo``: the main job on sample_data/ against the bundled emulator, started in-process.

The emulator knows the sample hashes (sample_data/emulator_state.csv); a few were already
corrected in the "web app" before the run (sample_data/earlier_overrides.csv), so the ledger shows
every kind of outcome.  The ledger is written fresh to out/demo.ledger.csv.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import sys
from pathlib import Path

import aiohttp

from batch_override.apikey import ApiKey
from batch_override.cli.jobfile import load_job
from batch_override.cli.logs import setup_logging
from batch_override.domain import ENDPOINTS
from batch_override.emulator import DEMO_API_KEY, Emulator, EmulatorConfig, load_state_csv
from batch_override.job.runner import run_job_async
from batch_override.ledger.runlog import runlog_path
from batch_override.sending.client import BODIES

ROOT = Path.cwd()


async def _preload(url: str, path: Path) -> int:
    """Record the "earlier" overrides the way the web app would: by the same API."""
    async with aiohttp.ClientSession(headers={"X-Api-Key": DEMO_API_KEY}) as session:
        rows = list(csv.DictReader(path.open(encoding="utf-8")))
        for row in rows:
            endpoint = f"{url}/api/{ENDPOINTS[row['media']]}/{row['hash']}/override"
            async with session.post(
                endpoint, data=BODIES[row["classification"]], headers={"Content-Type": "application/json"}
            ) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"preloading the demo emulator failed: HTTP {resp.status}")
        return len(rows)


async def main_async() -> int:
    import argparse

    from batch_override.cli.options import (  # the job file is read exactly as `run --job` reads it
        JOB_KEYS,
        config_from,
    )

    job = load_job(ROOT / "jobs" / "demo.toml", JOB_KEYS)
    ledger = ROOT / job["ledger"]
    ledger.parent.mkdir(parents=True, exist_ok=True)
    for stale in (ledger, runlog_path(ledger)):
        stale.unlink(missing_ok=True)
    states = load_state_csv(ROOT / "sample_data" / "emulator_state.csv")
    emulator_config = EmulatorConfig(states=states, rate_limit=(50, 1.0))
    async with Emulator(emulator_config) as emulator:
        preloaded = await _preload(emulator.url, ROOT / "sample_data" / "earlier_overrides.csv")
        print(
            f"demo: emulator at {emulator.url} (50 requests/s per key); "
            f"{preloaded} corrections were already made in the web app"
        )
        config, _ = config_from(argparse.Namespace(job=str(ROOT / "jobs" / "demo.toml")))
        config = dataclasses.replace(config, api_url=emulator.url)
        summary = await run_job_async(config, ApiKey(DEMO_API_KEY))
        stats = emulator.stats()
    print(summary.render())
    print(
        f"demo: the emulator answered {stats['requests']} requests {stats['responses_by_status']} "
        f"and holds {stats['overrides']} overrides"
    )
    print(f"demo: ledger {ledger.relative_to(ROOT)}; read it with pandas.read_csv or any spreadsheet")
    return 0 if summary.exit_code in (0, 1) else summary.exit_code


def main() -> int:
    setup_logging()
    return asyncio.run(main_async())


if __name__ == "__main__":
    sys.exit(main())

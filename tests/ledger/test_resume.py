"""The resume index equals the obvious pandas computation: latest trusted decisive line per key."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from batch_override.keys import make_keys
from batch_override.ledger import resume as resume_module
from batch_override.ledger.format import COLUMNS
from batch_override.ledger.resume import Prior, load_resume_index
from tests.support import sha

PRIOR = {
    "submitted": Prior.DONE,
    "already_submitted": Prior.DONE,
    "skipped": Prior.DONE,
    "rejected": Prior.REJECTED,
    "failed": Prior.RETRY,
    "not_ready": Prior.RETRY,
    "aborted": Prior.RETRY,
}
OUTCOMES = [*PRIOR, "duplicate", "invalid", "planned", "conflict"]


def _ledger(path: Path, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    lines = []
    for run in range(6):
        keys = rng.sample(range(40), 25)  # each run writes one line per key it touches
        for k in keys:
            media, cls = ["video", "image", "audio"][k % 3], ["human", "artificial"][k // 20]
            lines.append(
                {
                    "row": k,
                    "media": media,
                    "hash": sha(k),
                    "classification": cls,
                    "outcome": rng.choice(OUTCOMES),
                    "error_code": "",
                    "http_status": "",
                    "attempts": 1,
                    "message": "",
                    "run_id": f"run-{run}",
                    "finished_at": f"2026-11-0{run + 1}T00:00:00Z",
                }
            )
    frame = pd.DataFrame(lines, columns=list(COLUMNS))
    frame.to_csv(path, index=False)
    return frame


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("step", [1, 3, 1 << 20])
def test_the_index_holds_each_keys_latest_trusted_decisive_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, step: int
) -> None:
    monkeypatch.setattr(resume_module, "_COMPACT_STEP", step)
    frame = _ledger(tmp_path / "l.csv", seed)
    trusted = {"run-0": 1.0e9, "run-2": 1.1e9, "run-3": 1.2e9, "run-5": 1.3e9}  # runs 1 and 4: elsewhere
    index = load_resume_index(tmp_path / "l.csv", trusted, first_seen=True)

    kept = frame[frame["run_id"].isin(trusted) & frame["outcome"].isin(PRIOR)]
    expected = kept.groupby(["media", "hash", "classification"], sort=False).agg(
        outcome=("outcome", "last"), first_run=("run_id", "first")
    )
    every = frame.drop_duplicates(["media", "hash", "classification"])

    keys = make_keys(pa.array(every["hash"]), pa.array(every["media"]), pa.array(every["classification"]))
    got = index.lookup(keys)
    seen = index.first_seen_of(keys)
    for (media, h, cls), prior, when in zip(
        every[["media", "hash", "classification"]].itertuples(index=False), got, seen, strict=True
    ):
        if (media, h, cls) in expected.index:
            row = expected.loc[(media, h, cls)]
            assert prior == PRIOR[row["outcome"]]
            assert when == trusted[row["first_run"]]
        else:
            assert prior == Prior.NONE
            assert np.isnan(when)
    assert len(index) == len(expected)

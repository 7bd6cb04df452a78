"""The resume index equals the obvious pandas computation: latest trusted decisive line per key."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from batch_override.keys import make_keys
from batch_override.ledger import latest as latest_module
from batch_override.ledger import resume as resume_module
from batch_override.ledger.format import COLUMNS
from batch_override.ledger.resume import Prior, load_resume_index
from tests.support import line, sha, write_ledger

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
@pytest.mark.parametrize(
    ("bucket_entries", "block_size"),
    [(1, 1 << 10), (16, 1 << 22), (1 << 16, 1 << 10), (1 << 16, 1 << 22)],
    ids=["256-buckets-small-blocks", "128-buckets", "one-bucket-small-blocks", "one-bucket"],
)
def test_the_index_holds_each_keys_latest_trusted_decisive_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, bucket_entries: int, block_size: int
) -> None:
    # Small blocks put a key's lines from different runs in different blocks; small buckets
    # spread the keys over many.
    monkeypatch.setattr(latest_module, "BUCKET_ENTRIES", bucket_entries)
    monkeypatch.setattr(resume_module, "BLOCK_SIZE", block_size)
    frame = _ledger(tmp_path / "l.csv", seed)
    trusted = {"run-0": 1.0e9, "run-2": 1.1e9, "run-3": 1.2e9, "run-5": 1.3e9}  # runs 1 and 4: elsewhere
    index = load_resume_index(tmp_path / "l.csv", trusted, first_seen=True)

    kept = frame[frame["run_id"].isin(trusted) & frame["outcome"].isin(PRIOR)]
    expected = kept.groupby(["media", "hash", "classification"], sort=False).agg(
        outcome=("outcome", "last"), first_run=("run_id", "first")
    )
    expected_rows = expected.to_dict(orient="index")  # (media, hash, classification) -> its row
    every = frame.drop_duplicates(["media", "hash", "classification"])

    keys = make_keys(pa.array(every["hash"]), pa.array(every["media"]), pa.array(every["classification"]))
    got = index.lookup(keys)
    seen = index.first_seen_of(keys)
    for (media, h, cls), prior, when in zip(
        every[["media", "hash", "classification"]].itertuples(index=False), got, seen, strict=True
    ):
        if (media, h, cls) in expected_rows:
            row = expected_rows[(media, h, cls)]
            assert prior == PRIOR[row["outcome"]]
            assert when == trusted[row["first_run"]]
        else:
            assert prior == Prior.NONE
            assert np.isnan(when)
    assert len(index) == len(expected)


def test_a_key_from_300_runs_keeps_the_latest_runs_verdict_and_the_first_runs_start(tmp_path: Path) -> None:
    # Run ordinals past one byte, and the lines in no particular order (a merged ledger).
    runs = [f"run-{r:03d}" for r in range(300)]
    order = random.Random(3).sample(range(300), 300)
    lines = [line(0, "failed" if r < 299 else "submitted", runs[r]) for r in order]
    ledger = write_ledger(tmp_path / "l.csv", lines)
    index = load_resume_index(ledger, {run: 1e9 + r for r, run in enumerate(runs)}, first_seen=True)
    (key,) = make_keys(pa.array([sha(0)]), pa.array(["video"]), pa.array(["human"]))
    assert len(index) == 1
    assert index.lookup(np.array([key])).tolist() == [Prior.DONE]
    assert index.first_seen_of(np.array([key])).tolist() == [1e9]


def test_two_decisive_lines_of_one_run_for_a_key_the_greater_verdict_wins_not_the_later(
    tmp_path: Path,
) -> None:
    # The docstring's trap: a run writes one line per key, so the run decides, not the line order.
    ledger = write_ledger(tmp_path / "l.csv", [line(0, "rejected", "r1"), line(0, "submitted", "r1")])
    (key,) = make_keys(pa.array([sha(0)]), pa.array(["video"]), pa.array(["human"]))
    assert load_resume_index(ledger, {"r1": 0.0}).lookup(np.array([key])).tolist() == [Prior.REJECTED]


@pytest.mark.parametrize(
    ("outcome", "run", "expected"),
    [("submitted", "r1", Prior.DONE), ("planned", "r1", Prior.NONE), ("submitted", "r2", Prior.NONE)],
    ids=["trusted-and-decisive", "not-decisive", "untrusted-run"],
)
def test_a_ledger_repeating_one_run_media_and_outcome_is_coded_like_any_other(
    tmp_path: Path, outcome: str, run: str, expected: Prior
) -> None:
    # Every cell of the run, media and outcome columns alike: they are checked once, not per cell.
    lines = [line(i, outcome, run, media="image") for i in range(50)]
    ledger = write_ledger(tmp_path / "l.csv", lines)
    keys = make_keys(
        pa.array([sha(i) for i in range(50)]), pa.array(["image"] * 50), pa.array(["human"] * 50)
    )
    index = load_resume_index(ledger, {"r1": 0.0})
    assert index.lookup(keys).tolist() == [expected] * 50
    assert len(index) == (50 if expected else 0)

"""Regenerate the sample data (deterministic): ``python sample_data/generate.py``.

- ``corrections.csv``: ~300 corrections a customer might export, with the faults real files have
  (bad hashes, odd spellings, duplicates, conflicts) and two extra columns carried to the ledger.
- ``emulator_state.csv``: what the demo's emulator knows about each hash (media,hash,status).
- ``earlier_overrides.csv``: corrections already made in the web app before the demo's run.
"""

from __future__ import annotations

import csv
import hashlib
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent


def sha(i: int) -> str:
    return hashlib.sha256(f"sample-media-{i}".encode()).hexdigest()


def main() -> None:
    rng = random.Random(20261128)
    rows: list[dict[str, str]] = []
    state: list[tuple[str, str, str]] = []
    earlier: list[tuple[str, str, str]] = []
    n = 0

    def add(status: str | None, count: int, note: str) -> None:
        nonlocal n
        for _ in range(count):
            n += 1
            media = rng.choices(["video", "image", "audio"], weights=[6, 3, 1])[0]
            h = sha(n)
            cls = rng.choice(["human", "artificial"])
            if status is not None:
                state.append((media, h, status))
            ticket = f"T-{1000 + n}"
            rows.append({"hash": h, "classification": cls, "media": media, "note": note, "ticket": ticket})
            if note == "corrected earlier in the web app":
                earlier.append((media, h, cls))

    add("classified", 200, "customer correction")
    add("classified", 20, "corrected earlier in the web app")
    add("not_classified", 12, "still being classified")
    add("no_completed_request", 8, "classification failed")
    add(None, 10, "hash from another account")
    add("expired", 8, "too old to correct")
    # Exported-from-a-spreadsheet spellings that normalise fine:
    for row in rng.sample(rows[:200], 8):
        row["hash"] = f"  {row['hash'].upper()}\u00a0"
        row["classification"] = row["classification"].capitalize() + " "
    # Duplicates (sent once) and conflicts (never sent):
    for row in rng.sample(rows[:200], 10):
        rows.append(dict(row, note="pasted twice"))
    for row in rng.sample(rows[:200], 3):
        other = "human" if row["classification"].strip().lower() == "artificial" else "artificial"
        rows.append(dict(row, classification=other, note="second opinion disagrees"))
    # Rows no request may be built from:
    bad = [
        (sha(9001)[:63], "human", "63 characters"),
        (sha(9002) + "a", "artificial", "65 characters"),
        ("zz" + sha(9003)[2:], "human", "not hex"),
        ("../../user", "human", "path traversal attempt"),
        ("", "artificial", "empty hash"),
        (sha(9004), "AI", "classification in other words"),
        (sha(9005), "", "empty classification"),
        ('=HYPERLINK("http://example.invalid")', "human", "spreadsheet formula"),
    ]
    for h, cls, note in bad:
        rows.append({"hash": h, "classification": cls, "media": "video", "note": note, "ticket": "T-bad"})
    rng.shuffle(rows)
    with open(HERE / "corrections.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["hash", "classification", "media", "note", "ticket"])
        writer.writeheader()
        writer.writerows(rows)
    with open(HERE / "emulator_state.csv", "w", newline="", encoding="utf-8") as fh:
        writer_ = csv.writer(fh)
        writer_.writerow(["media", "hash", "status"])
        writer_.writerows(state)
    with open(HERE / "earlier_overrides.csv", "w", newline="", encoding="utf-8") as fh:
        writer_ = csv.writer(fh)
        writer_.writerow(["media", "hash", "classification"])
        writer_.writerows(earlier)


if __name__ == "__main__":
    main()

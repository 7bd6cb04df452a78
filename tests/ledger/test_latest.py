"""Each key's byte-greatest entry, sorted: exactly what sorting all 37-byte entries and keeping the
last of each key gives, whatever the buckets, the blocks and the ties in the sort numbers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from batch_override.ledger.latest import ENTRY_DTYPE, LatestEntries, bucket_bits


def _entries(seed: int, n: int) -> npt.NDArray[np.bytes_]:
    """Entries full of the ties the sort must break by the remaining bytes: hashes sharing their
    first 8 bytes (or all 32), both classifications, many runs (ordinals past one byte), and
    two verdicts of one key from one run."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, (max(1, n // 4), 32), dtype=np.uint8)
    hashes[1::3, :8] = hashes[0, :8]  # one 8-byte prefix, different hashes
    hashes[2::7, 1:8] = 0  # a prefix that is mostly zeros
    raw = np.empty((n, 37), np.uint8)
    raw[:, :32] = hashes[rng.integers(0, len(hashes), n)]
    raw[:, 32] = rng.integers(1, 4, n)  # media
    raw[:, 33] = rng.integers(1, 3, n)  # classification
    run = rng.integers(0, 300, n)
    raw[:, 34], raw[:, 35] = run >> 8, run & 0xFF
    raw[:, 36] = rng.integers(1, 4, n)  # verdict
    return raw.view(ENTRY_DTYPE).reshape(n)


def _expected(entries: npt.NDArray[np.bytes_]) -> tuple[list[bytes], list[int]]:
    """The obvious computation: every entry sorted by its bytes, the last of each key kept, and
    the smallest run ordinal of each key."""
    ordered = sorted(bytes(e.tobytes()) for e in entries.view(np.dtype((np.void, 37))))
    last: dict[bytes, bytes] = {}
    first: dict[bytes, int] = {}
    for entry in ordered:
        last[entry[:34]] = entry
        first.setdefault(entry[:34], int.from_bytes(entry[34:36], "big"))
    return list(last.values()), list(first.values())


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("bits", [0, 1, 3, 8])
@pytest.mark.parametrize("block", [1, 7, 5000])
def test_finish_keeps_each_keys_byte_greatest_entry_in_byte_order(seed: int, bits: int, block: int) -> None:
    entries = _entries(seed, 2000)
    latest = LatestEntries(expected=10, bits=bits)  # a low guess: the buckets must grow
    for lo in range(0, len(entries), block):
        latest.add(entries[lo : lo + block])
    got, first_run = latest.finish(first_run=True)

    expected, expected_first = _expected(entries)
    assert [bytes(e.tobytes()) for e in got.view(np.dtype((np.void, 37)))] == expected
    assert first_run is not None and first_run.tolist() == expected_first


def test_one_key_from_many_runs_keeps_its_latest_run_and_its_first() -> None:
    raw = np.zeros((600, 37), np.uint8)
    raw[:, :32] = 0xAB
    raw[:, 32:34] = 1
    run = np.random.default_rng(0).permutation(600)
    raw[:, 34], raw[:, 35], raw[:, 36] = run >> 8, run & 0xFF, 1
    latest = LatestEntries(expected=600)
    latest.add(raw.view(ENTRY_DTYPE).reshape(600))
    got, first_run = latest.finish(first_run=True)
    assert len(got) == 1 and got[0][34:36] == (599).to_bytes(2, "big")
    assert first_run is not None and first_run.tolist() == [0]


def test_no_entries_give_an_empty_sorted_array() -> None:
    got, first_run = LatestEntries(expected=0).finish(first_run=False)
    assert got.dtype == ENTRY_DTYPE and len(got) == 0 and first_run is None


def test_entries_are_taken_once_finish_releases_the_buckets() -> None:
    latest = LatestEntries(expected=4)
    latest.add(_entries(0, 4))
    latest.finish(first_run=False)
    with pytest.raises(RuntimeError, match="twice"):
        latest.finish(first_run=False)
    with pytest.raises(RuntimeError, match="after finish"):
        latest.add(_entries(0, 4))


def test_buckets_hold_about_2_to_the_16_entries_and_at_most_256_of_them() -> None:
    assert [bucket_bits(n) for n in (0, 1, 1 << 16, (1 << 16) + 1, 1 << 20, 1 << 40)] == [0, 0, 0, 1, 4, 8]

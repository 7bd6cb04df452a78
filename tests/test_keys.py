"""Compact keys: 32 hash bytes, a media byte and a classification byte, exact and never ending in NUL."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from batch_override.keys import KEY_DTYPE, GrowableKeys, bytes_to_hex, hex_to_bytes, make_keys


def sha(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def test_a_key_is_the_hash_bytes_then_the_one_based_media_and_classification_codes() -> None:
    h = sha(1)
    (key,) = make_keys(pa.array([h]), pa.array(["video"]), pa.array(["human"]))
    assert key.dtype == KEY_DTYPE
    assert key[:32] == bytes.fromhex(h)
    assert key[32] >= 1 and key[33] >= 1


def test_a_hash_ending_in_zero_bytes_keeps_all_34_bytes() -> None:
    # The trap the 1-based codes avoid: numpy's S dtype strips trailing NULs.
    h = "ab" * 30 + "00" * 2
    keys = make_keys(pa.array([h, h]), pa.array(["image", "audio"]), pa.array(["artificial", "human"]))
    assert [len(k) for k in keys] == [34, 34]
    assert keys[0] != keys[1]
    assert keys[0][:32] == keys[1][:32] == bytes.fromhex(h)


def test_hex_round_trips_and_an_empty_array_has_the_right_shape() -> None:
    hashes = pa.array([sha(i) for i in range(5)])
    raw = hex_to_bytes(hashes)
    assert raw.shape == (5, 32)
    assert bytes_to_hex(raw).to_pylist() == hashes.to_pylist()
    assert hex_to_bytes(pa.array([], pa.string())).shape == (0, 32)
    assert hex_to_bytes(pa.array([sha(0), sha(1)]).slice(1)).tobytes() == bytes.fromhex(sha(1))


def test_sorting_keys_groups_a_media_and_hash_with_its_classifications() -> None:
    hashes = [sha(2), sha(1), sha(2), sha(1)]
    keys = make_keys(
        pa.array(hashes), pa.array(["video"] * 4), pa.array(["human", "artificial", "artificial", "human"])
    )
    grouped = np.sort(keys)
    assert [k[:32] for k in grouped[:2]] == [grouped[0][:32]] * 2
    assert grouped[0][:32] != grouped[2][:32]


def test_growable_keys_grows_past_its_capacity_and_hands_back_exactly_what_was_added() -> None:
    keys = make_keys(
        pa.array([sha(i) for i in range(10)]), pa.array(["video"] * 10), pa.array(["human"] * 10)
    )
    builder = GrowableKeys(capacity=3)
    builder.extend(keys[:4])
    builder.extend(keys[4:])
    out = builder.finish()
    assert out.tolist() == keys.tolist()


def test_growable_keys_hands_its_keys_over_once_and_refuses_a_second_finish_or_more_keys() -> None:
    keys = make_keys(pa.array([sha(i) for i in range(3)]), pa.array(["video"] * 3), pa.array(["human"] * 3))
    builder = GrowableKeys(capacity=2)
    builder.extend(keys)
    assert builder.finish().tolist() == keys.tolist()
    # Before: a second finish() returned three empty keys, which would match nothing and hide the bug.
    with pytest.raises(RuntimeError, match="finish"):
        builder.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        builder.extend(keys)


def test_hex_is_read_from_large_strings_and_sliced_strings_alike() -> None:
    hashes = [sha(i) for i in range(4)]
    expected = b"".join(bytes.fromhex(h) for h in hashes[1:])
    for values in (pa.array(hashes, pa.large_string()), pa.array(hashes)):
        assert hex_to_bytes(values.slice(1)).tobytes() == expected

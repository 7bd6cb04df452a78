"""The one backoff policy, asked directly: no sleeping, a seeded random source."""

from __future__ import annotations

import dataclasses
import random

import pytest

from batch_override.pacing.backoff import Backoff


def test_the_step_doubles_from_base_and_stops_at_the_cap() -> None:
    policy = Backoff(base=0.5, cap=30.0)
    assert [policy.ceiling(n) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_huge_try_number_neither_overflows_nor_passes_the_cap() -> None:
    policy = Backoff(base=0.5, cap=30.0)
    assert policy.ceiling(10_000) == 30.0
    assert policy.delay(10_000) <= 30.0


def test_equal_jitter_keeps_every_delay_in_the_upper_half_of_its_step() -> None:
    policy = Backoff(base=1.0, cap=1000.0, rng=random.Random(3))
    for n in range(10):
        delays = [policy.delay(n) for _ in range(200)]
        assert all(policy.ceiling(n) / 2 <= d <= policy.ceiling(n) for d in delays)
        assert max(delays) - min(delays) > policy.ceiling(n) / 4  # jittered, not a fixed wait


def test_senders_that_failed_together_do_not_retry_together() -> None:
    policy = Backoff(base=1.0, cap=30.0, rng=random.Random(11))
    assert len({policy.delay(3) for _ in range(50)}) == 50


def test_the_same_seed_gives_the_same_delays() -> None:
    first = Backoff(rng=random.Random(5))
    second = Backoff(rng=random.Random(5))
    assert [first.delay(n) for n in range(6)] == [second.delay(n) for n in range(6)]


def test_the_policy_is_an_immutable_value_whose_random_source_is_not_part_of_it() -> None:
    policy = Backoff(base=0.5, cap=30.0, rng=random.Random(1))
    assert policy == Backoff(base=0.5, cap=30.0, rng=random.Random(2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.base = 1.0  # type: ignore[misc]


def test_backoff_doubles_from_base_up_to_the_cap_with_jitter_and_never_overflows() -> None:
    rng = random.Random(7)
    for n, full in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0), (10_000, 30.0)]:
        delay = Backoff(base=0.5, cap=30.0, rng=rng).delay(n)
        assert full / 2 <= delay <= full


def test_backoff_jitter_spreads_senders_that_failed_together() -> None:
    rng = random.Random(1)
    delays = {Backoff(base=1.0, cap=30.0, rng=rng).delay(2) for _ in range(20)}
    assert len(delays) == 20
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert Backoff(base=0.0, cap=30.0, rng=rng).delay(5) == 0.0  # a zero base never waits

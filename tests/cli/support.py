"""Helpers for the command line's tests."""

from __future__ import annotations

from collections import Counter

from batch_override.summary import Summary


def summary_of_a_run(exit_code: int = 1) -> Summary:
    """A run of 100 rows in 50 s: 90 submitted, 6 failed, 4 skipped; 120 requests, 3 throttled."""
    return Summary(
        run_id="r",
        ledger="l.csv",
        api_url="https://backend.identifai.net",
        outcomes=Counter({"submitted": 90, "failed": 6, "skipped": 4}),
        requests=120,
        throttled=3,
        duration=50.0,
        exit_code=exit_code,
    )

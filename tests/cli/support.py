"""Helpers for the command line's tests."""

from __future__ import annotations

import urllib.request
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

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


def scrape_pushgateway(gateway: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The Pushgateway's /metrics as Prometheus scrapes it: our samples by name and labels."""
    with urllib.request.urlopen(gateway + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset((k, v) for k, v in s.labels.items() if k != "instance")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("batch_override_")
    }


def metric_key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (f"batch_override_{name}", frozenset(labels.items()))

"""Metrics for node_exporter's textfile collector: parsed back the way a scraper reads them."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from batch_override.cli import metrics
from batch_override.cli.metrics import read_last_success, write_metrics
from batch_override.outcome import Outcome
from batch_override.summary import Summary
from tests.cli.support import summary_of_a_run

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_]\w*="(?:[^"\\\n]|\\[\\"n])*",?)*)\} (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_]\w*)="((?:[^"\\\n]|\\[\\"n])*)"')


def _parse(text: str) -> tuple[dict[tuple[str, frozenset[tuple[str, str]]], float], dict[str, str]]:
    """Samples keyed by (name, labels) with unescaped label values, and each metric's TYPE."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name in helped, f"TYPE before HELP for {name}"
            types[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        assert name in types, f"sample before its TYPE: {name}"
        unescaped = frozenset(
            (k, re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v))
            for k, v in _LABEL.findall(labels)
        )
        key = (name, unescaped)
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(value)
    return samples, types


def _job(value: str) -> frozenset[tuple[str, str]]:
    return frozenset({("job", value)})


def test_every_outcome_is_a_sample_zeros_included_and_the_run_figures_follow(tmp_path: Path) -> None:
    path = tmp_path / "batch_override.prom"
    write_metrics(
        path, summary_of_a_run(), job="nightly", last_success_unix=1_700_000_000.5, now=1_700_100_000
    )
    samples, types = _parse(path.read_text())
    for outcome in Outcome:
        expected = {"submitted": 90, "failed": 6, "skipped": 4}.get(outcome.value, 0)
        assert (
            samples[("batch_override_rows", frozenset({("job", "nightly"), ("outcome", outcome.value)}))]
            == expected
        )
    job = _job("nightly")
    assert samples[("batch_override_duration_seconds", job)] == 50.0
    assert samples[("batch_override_rows_per_second", job)] == 2.0  # 100 rows finished in 50 s
    assert samples[("batch_override_exit_code", job)] == 1
    assert samples[("batch_override_requests", job)] == 120
    assert samples[("batch_override_throttled_requests", job)] == 3
    assert samples[("batch_override_last_run_timestamp_seconds", job)] == 1_700_100_000
    assert samples[("batch_override_last_success_timestamp_seconds", job)] == 1_700_000_000.5
    assert set(types.values()) == {"gauge"}  # per-run values, none named like a counter


def test_an_unknown_last_success_is_left_out_not_written_as_zero(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    write_metrics(path, summary_of_a_run(), job="j", last_success_unix=None)
    samples, types = _parse(path.read_text())
    assert "batch_override_last_success_timestamp_seconds" not in types
    assert not any(name.startswith("batch_override_last_success") for name, _ in samples)
    assert read_last_success(path, job="j") is None


def test_label_values_are_escaped_and_read_back(tmp_path: Path) -> None:
    job = 'nightly "eu"\\prod\nsecond line'
    path = tmp_path / "m.prom"
    write_metrics(path, summary_of_a_run(), job=job, last_success_unix=12.25, now=13)
    text = path.read_text()
    assert 'job="nightly \\"eu\\"\\\\prod\\nsecond line"' in text
    samples, _ = _parse(text)
    assert samples[("batch_override_exit_code", _job(job))] == 1
    assert read_last_success(path, job=job) == 12.25
    assert read_last_success(path, job="nightly") is None


def test_a_zero_duration_gives_a_zero_rate_not_a_division_error(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    write_metrics(path, Summary(run_id="r", ledger=None, api_url=""), job="j", last_success_unix=None)
    samples, _ = _parse(path.read_text())
    assert samples[("batch_override_rows_per_second", _job("j"))] == 0


def test_the_file_is_replaced_whole_readable_by_the_collector_and_no_temp_is_left(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    path.write_text("old content\n")
    write_metrics(path, summary_of_a_run(), job="j", last_success_unix=None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert "old content" not in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["m.prom"]


def test_a_failed_write_leaves_the_previous_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "m.prom"
    write_metrics(path, summary_of_a_run(), job="j", last_success_unix=5)

    def broken(*_args: object, **_kwargs: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(metrics, "render_metrics", broken)
    before = path.read_text()
    with pytest.raises(RuntimeError):
        write_metrics(path, summary_of_a_run(), job="j", last_success_unix=None)
    assert path.read_text() == before

    def failing_replace(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.undo()
    monkeypatch.setattr(os, "replace", failing_replace)  # the module metrics writes through
    with pytest.raises(OSError):
        write_metrics(path, summary_of_a_run(), job="j", last_success_unix=None)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.prom"]

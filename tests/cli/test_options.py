"""One configuration path: RunConfig converts its own fields; the run's flags come from its fields."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from batch_override import RunConfig
from batch_override.cli.main import build_parser
from batch_override.cli.options import HELP, JOB_KEYS, OutputOptions
from batch_override.config import Rate
from batch_override.errors import UsageError


def _run_help() -> str:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return str(sub.choices["run"].format_help())


def test_every_help_line_belongs_to_a_field_of_run_config() -> None:
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    assert set(HELP) <= fields
    assert set(HELP) <= JOB_KEYS


def test_the_help_names_the_default_the_run_really_uses() -> None:
    text = " ".join(_run_help().split())
    assert f"seconds per request (default {RunConfig(input='x').timeout:g})" in text
    assert f"name of the hash column (default {RunConfig(input='x').hash_column})" in text


def test_from_mapping_converts_text_lists_tables_and_integers_as_a_job_file_gives_them() -> None:
    config = RunConfig.from_mapping(
        {
            "input": "c.csv",
            "ledger": "l.csv",
            "rate": "5/s",
            "concurrency": "AUTO",
            "timeout": 30,
            "label_map": {"ai": "artificial"},
            "ok_outcomes": ["submitted", "not_ready"],
            "give_up_after": 2,
        }
    )
    assert config == RunConfig(
        input="c.csv",
        ledger=Path("l.csv"),
        rate=Rate(5, 1.0),
        concurrency="auto",
        timeout=30.0,
        label_map=(("ai", "artificial"),),
        ok_outcomes=frozenset({"submitted", "not_ready"}),
        give_up_after_days=2,
    )
    assert isinstance(config.timeout, float)


def test_from_mapping_range_checks_by_the_flags_name() -> None:
    with pytest.raises(UsageError, match=r"^--timeout must be a number > 0"):
        RunConfig.from_mapping({"input": "c.csv", "timeout": 0})
    with pytest.raises(UsageError, match=r"^bad option value"):
        RunConfig.from_mapping({"input": "c.csv", "no_such_option": 1})


def test_auto_means_the_job_decides_and_a_value_is_fixed() -> None:
    assert RunConfig(input="x").fixed_rate is None
    assert RunConfig(input="x", rate=Rate(5, 1.0), concurrency=3).fixed_rate == Rate(5, 1.0)
    assert RunConfig(input="x", concurrency=3).fixed_concurrency == 3
    assert RunConfig(input="x", max_concurrency=7).senders == 7


def test_output_options_take_a_job_files_values_as_they_are() -> None:
    output = OutputOptions.from_mapping({"quiet": True, "verbose": 2, "summary": Path("s.json")})
    assert output == OutputOptions(quiet=True, verbose=2, summary="s.json")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"quiet": "no"}, "--quiet must be true or false (got 'no')"),
        ({"verbose": "2"}, "--verbose must be an integer >= 0 (got '2')"),
        ({"verbose": True}, "--verbose must be an integer >= 0 (got True)"),
        ({"verbose": -1}, "--verbose must be an integer >= 0 (got -1)"),
        ({"log_format": "xml"}, "--log-format must be text or json (got 'xml')"),
        ({"summary": 5}, "--summary must be text (got 5)"),
    ],
)
def test_output_options_refuse_a_value_of_the_wrong_kind_by_its_flag(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        OutputOptions.from_mapping(values)
    assert str(caught.value) == message

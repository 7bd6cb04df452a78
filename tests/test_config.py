"""RunConfig takes the spellings the README shows, holds the parsed values, and refuses a bad one
with the flag's own one-line error (one parser per value, shared by the flag and the class)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from batch_override import RunConfig
from batch_override.cli.main import main
from batch_override.config import Rate
from batch_override.errors import UsageError
from batch_override.schedule import StopAt


def test_run_config_takes_the_readmes_spellings_and_holds_the_parsed_values() -> None:
    config = RunConfig(
        input="c.csv",
        ledger="l.csv",
        rate="60/min",
        label_map="ai=artificial,real=human",
        stop_at="06:00",
        max_duration="7h30m",
    )
    assert config.ledger == Path("l.csv")
    assert config.rate == Rate(60, 60.0)
    assert config.fixed_rate == Rate(60, 60.0)
    assert config.label_map == (("ai", "artificial"), ("real", "human"))
    assert config.stop_at == StopAt(6, 0)
    assert config.max_duration == 27000.0
    # Parsed once: the same settings given as values are the same config.
    assert config == RunConfig(
        input="c.csv",
        ledger=Path("l.csv"),
        rate=Rate(60, 60.0),
        label_map=(("ai", "artificial"), ("real", "human")),
        stop_at=StopAt(6, 0),
        max_duration=27000.0,
    )
    assert dataclasses.replace(config, grace=5.0).rate == Rate(60, 60.0)


def test_a_label_map_may_be_a_mapping_folded_as_the_text_is() -> None:
    config = RunConfig(input="c.csv", label_map={" AI ": "Artificial", "real": "human"})
    assert config.label_map == (("ai", "artificial"), ("real", "human"))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"rate": "60/mn"}, "--rate '60/mn': expected N/PERIOD"),
        ({"rate": 60}, "--rate: expected N/PERIOD"),
        ({"label_map": "ai"}, "--label-map 'ai': expected WORD=human|artificial pairs"),
        ({"label_map": {"ai": "robot"}}, "--label-map: 'robot' is not human or artificial"),
        ({"label_map": {"ai": "human", "AI": "artificial"}}, "--label-map: 'ai' is mapped to both"),
        ({"label_map": 3}, "--label-map: expected WORD=human|artificial pairs"),
        ({"stop_at": "25:00"}, "--stop-at '25:00': expected HH:MM"),
        ({"stop_at": 6}, "--stop-at: expected HH:MM"),
        ({"max_duration": "7x"}, "--max-duration '7x': expected a duration"),
        ({"ledger": 3}, "--ledger must be a path"),
    ],
)
def test_a_value_no_spelling_fits_is_the_flags_usage_error(given: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        RunConfig(input="c.csv", **given)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("flag", "text", "field"),
    [("--rate", "60/mn", "rate"), ("--label-map", "ai", "label_map"), ("--stop-at", "6h", "stop_at")],
)
def test_the_flag_and_run_config_say_the_same_words(
    flag: str, text: str, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    given: dict[str, Any] = {field: text}
    with pytest.raises(UsageError) as caught:
        RunConfig(input="c.csv", **given)
    with pytest.raises(SystemExit) as exited:  # argparse's usage error
        main(["run", "c.csv", "--ledger", str(tmp_path / "l.csv"), flag, text])
    assert exited.value.code == 2
    assert str(caught.value) in capsys.readouterr().err

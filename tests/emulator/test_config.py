"""EmulatorConfig refuses settings the server could not honour, before anything is served."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from batch_override.emulator import DEMO_API_KEY, EmulatorConfig, load_state_csv


def test_defaults_accept_only_the_demo_key_and_throttle_nothing() -> None:
    config = EmulatorConfig()
    assert DEMO_API_KEY == "demo-key-0000"
    assert (config.api_keys, config.forbidden_keys, config.rate_limit, config.unknown) == (
        (DEMO_API_KEY,),
        (),
        None,
        "no_request",
    )


@pytest.mark.parametrize(
    "settings",
    [
        {"rate_limit": (0, 1.0)},
        {"rate_limit": (5, 0.0)},
        {"rate_limit": (5, float("inf"))},
        {"states": {("photo", "h"): "classified"}},
        {"states": {("image", "h"): "done"}},
        {"unknown": "expired"},
        {"latency_ms": -1},
        {"latency_p99_ms": 100.0},
        {"latency_ms": 200, "latency_p99_ms": 100.0},
        {"capacity": 0},
        {"service_ms": float("nan")},
        {"laravel_windows": "file"},
        {"laravel_windows": "file", "rate_limit": (5, 0.5)},
        {"laravel_windows": "memcached", "rate_limit": (5, 15.0)},
        {"fail_rate": 1.5},
        {"drop_rate": float("nan")},
        {"fail_rate": 0.5, "drop_rate": 0.3, "drop_after_record_rate": 0.3},
        {"api_keys": ("",)},
    ],
)
def test_impossible_settings_are_rejected(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EmulatorConfig(**settings)


def test_a_bare_string_is_not_taken_for_a_tuple_of_keys() -> None:
    with pytest.raises(TypeError):
        EmulatorConfig(api_keys="demo-key-0000")  # type: ignore[arg-type]


def test_rates_summing_to_one_despite_float_rounding_are_accepted() -> None:
    EmulatorConfig(fail_rate=0.7, drop_rate=0.2, drop_after_record_rate=0.1)


def test_state_csv_reads_media_hash_status(tmp_path: Path) -> None:
    path = tmp_path / "states.csv"
    path.write_text(
        "\ufeffmedia, hash ,status,note\n"
        "image,aa,classified,x\n"
        "video , bb , expired ,\n"
        "\n"
        "audio,cc,not_classified,\n"
        "image,dd,no_completed_request,\n"
        "image,aa,classified,listed twice alike is fine\n",
        encoding="utf-8",
    )
    assert load_state_csv(path) == {
        ("image", "aa"): "classified",
        ("video", "bb"): "expired",
        ("audio", "cc"): "not_classified",
        ("image", "dd"): "no_completed_request",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("media,hash\nimage,aa\n", "missing column(s) status"),
        ("media,hash,status\nphoto,aa,classified\n", ":2: unknown media 'photo'"),
        ("media,hash,status\nimage,aa,classified\nimage,bb,done\n", ":3: unknown status 'done'"),
        ("media,hash,status\nimage,,classified\n", ":2: empty hash"),
        ("media,hash,status\nimage,aa,classified\nimage,aa,expired\n", "both classified and expired"),
    ],
)
def test_state_csv_mistakes_are_reported_with_their_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "states.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)):
        load_state_csv(path)

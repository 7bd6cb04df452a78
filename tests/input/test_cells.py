"""The one rule that writes non-text input values (Parquet, DataFrame, Table) as ledger text."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa

from batch_override.input.cells import as_text


def text(values: object, kind: pa.DataType | None = None) -> list[str]:
    return list(as_text(pa.array(values, kind)).to_pylist())


def test_text_stays_as_it_is_and_missing_text_is_empty() -> None:
    assert text(["a", None, " b "]) == ["a", "", " b "]
    assert text(["x", None], pa.large_string()) == ["x", ""]


def test_integers_are_written_as_they_are() -> None:
    assert text([42, -7, None, 2**62]) == ["42", "-7", "", str(2**62)]


def test_floats_are_written_in_shortest_round_trip_form_and_nan_is_empty() -> None:
    assert text([0.1, 2.0, 1e20, -1.25, 1 / 3, float("nan"), None]) == [
        "0.1", "2", "1e+20", "-1.25", "0.3333333333333333", "", "",
    ]  # fmt: skip


def test_datetimes_are_iso_8601_with_t_and_no_trailing_zeros() -> None:
    naive = [dt.datetime(2026, 11, 28, 9, 15, 49, 500000), dt.datetime(2026, 11, 28, 9, 15, 40), None]
    assert text(naive, pa.timestamp("us")) == ["2026-11-28T09:15:49.5", "2026-11-28T09:15:40", ""]
    assert text([dt.datetime(2026, 1, 2, 3, 4, 50)], pa.timestamp("s")) == ["2026-01-02T03:04:50"]


def test_an_aware_datetime_is_written_in_utc_with_z() -> None:
    paris = pd.Series(pd.to_datetime(["2026-11-28 10:15:49.123"]).tz_localize("Europe/Paris"))
    assert text(paris) == ["2026-11-28T09:15:49.123Z"]


def test_dates_booleans_and_categories_are_written_as_their_values() -> None:
    assert text([dt.date(2026, 11, 28), None]) == ["2026-11-28", ""]
    assert text([True, False, None]) == ["true", "false", ""]
    assert text(pa.array(["a", "b", None]).dictionary_encode()) == ["a", "b", ""]

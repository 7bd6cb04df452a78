"""Exit codes are a format: every way a program reads or prints one sees the plain number."""

from __future__ import annotations

import json

import pytest

from batch_override.errors import ExitCode, RowsFailed, RunFailed, failure_of
from batch_override.summary import Summary


def test_exit_codes_keep_their_documented_numbers() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0, "SOME_ROWS_FAILED": 1, "USAGE": 2, "ABORTED": 3, "LOCKED": 4, "OUTAGE": 5,
        "LEDGER_WRITE": 6, "DEADLINE": 7, "INTERNAL": 70, "SIGHUP": 129, "SIGINT": 130, "SIGTERM": 143,
    }  # fmt: skip


def test_an_exit_code_prints_and_serialises_as_its_number() -> None:
    summary = Summary(run_id="r", ledger=None, api_url="http://127.0.0.1:1", exit_code=ExitCode.OUTAGE)
    assert json.dumps(summary.to_dict()["exit_code"]) == "5"
    assert f"{ExitCode.ABORTED}" == str(ExitCode.ABORTED) == json.dumps(ExitCode.ABORTED) == "3"
    assert "-> exit 5" in summary.render()


def _rows_failed(ok: frozenset[str] | None = None, /, **outcomes: int) -> RunFailed | None:
    summary = Summary(run_id="r", ledger=None, api_url="http://127.0.0.1:1", exit_code=1)
    if ok is not None:
        summary.ok_outcomes = ok
    summary.outcomes.update(outcomes)
    return failure_of(summary)


@pytest.mark.parametrize(
    "outcomes",
    [{"invalid": 2}, {"rejected": 3}, {"conflict": 2}, {"submitted": 5, "invalid": 1, "rejected": 1}],
)
def test_rows_failed_is_not_retryable_when_every_failed_row_is_permanent(outcomes: dict[str, int]) -> None:
    failure = _rows_failed(**outcomes)
    assert isinstance(failure, RowsFailed) and failure.retryable is False


@pytest.mark.parametrize("left", ["not_ready", "failed", "aborted"])
def test_rows_failed_is_retryable_when_some_row_can_still_succeed(left: str) -> None:
    failure = _rows_failed(**{"rejected": 3, "invalid": 1, left: 1})
    assert isinstance(failure, RowsFailed) and failure.retryable is True


def test_an_ok_outcome_is_not_a_row_to_retry() -> None:
    # The nightly job counts not_ready as OK: only its invalid row failed, and that one is permanent.
    ok = frozenset({"submitted", "already_submitted", "duplicate", "skipped", "not_ready"})
    failure = _rows_failed(ok, not_ready=4, invalid=1)
    assert isinstance(failure, RowsFailed) and failure.retryable is False

"""Exit codes are a format: every way a program reads or prints one sees the plain number."""

from __future__ import annotations

import json

from batch_override.errors import ExitCode
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

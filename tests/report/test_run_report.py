"""``batch-override report``: what a person learns from a ledger after the run, and the retry file."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd
import pytest

from batch_override.emulator.faults import Fault, FaultPlan
from batch_override.input import blocks
from batch_override.report.run_report import add_parser, build_report, summarize, write_retry_file
from tests.support import (
    cli_env,
    line,
    read_ledger,
    run_cli,
    run_command,
    sha,
    write_csv,
    write_ledger,
    write_runlog,
)

HEADER = ("hash", "classification", "media", "note", "message")
READY = [0, 1, 2, 3, 10]  # classified by the emulator
SENT = [0, 1, 2, 3, 4, 5, 6, 7, 10]


def _seed_failing_only(row: int) -> int:
    """A fault seed that fails ``row``'s first request only: every other request of these tests passes."""
    for seed in range(10_000):
        plan = FaultPlan(seed, fail_rate=0.3)
        if (
            plan.decide("video", sha(row), 0)[0] is Fault.FAIL
            and plan.decide("video", sha(row), 1)[0] is Fault.NONE
            and all(plan.decide("video", sha(i), 0)[0] is Fault.NONE for i in SENT if i != row)
            and all(plan.decide("video", sha(i), a)[0] is Fault.NONE for i in (4, 5) for a in (1, 2))
        ):
            return seed
    raise AssertionError("no seed")


def _corrections(path: Path) -> Path:
    """Rows 0-3 and 10 ready, 4-5 not classified yet, 6 unknown, 7 expired, 8 a repeat, 9 invalid."""
    rows: list[tuple[str, ...]] = [(sha(i), "human", "video", f"note {i}", f"msg {i}") for i in range(8)]
    rows.append((sha(0), "human", "video", "repeat of 0", "msg 8"))
    rows.append(("not-a-hash", "human", "video", "typo", "msg 9"))
    rows.append((sha(10), "artificial", "video", "=SUM(A1)", "msg 10"))
    return write_csv(path, rows, header=HEADER)


@pytest.fixture
async def mixed_run(tmp_path: Path, emulator_factory):
    """One real run against the emulator with every kind of outcome; returns (emulator, paths...)."""
    states = {("video", sha(i)): "classified" for i in READY}
    states |= {
        ("video", sha(4)): "not_classified",
        ("video", sha(5)): "no_completed_request",
        ("video", sha(7)): "expired",
    }
    emulator = await emulator_factory(states=states, fail_rate=0.3, seed=_seed_failing_only(10))
    corrections = _corrections(tmp_path / "corrections.csv")
    ledger = tmp_path / "ledger.csv"
    summary_json = tmp_path / "summary.json"
    result = await run_cli(
        "run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, "--rate", "1000/s",
        "--max-retries", "0", "--summary", str(summary_json), env=cli_env(),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    return emulator, corrections, ledger, json.loads(summary_json.read_text())


async def test_a_runs_report_matches_the_summary_the_run_printed(mixed_run) -> None:
    _, _, ledger, printed = mixed_run
    summary = summarize(ledger)
    assert summary.run_id == printed["run_id"]
    mine = summary.to_dict()
    for key in ("rows", "outcomes", "error_codes", "throttled_429", "exit_code", "not_attempted", "api_url"):
        assert mine[key] == printed[key], key
    assert mine["outcomes"] == {
        "submitted": 4, "not_ready": 2, "rejected": 2, "duplicate": 1, "invalid": 1, "failed": 1,
    }  # fmt: skip
    assert summary.duration == pytest.approx(printed["duration_s"])
    # The run's own count, as it printed it: the ledger's attempts and the one preflight request.
    assert summary.requests == printed["requests"] == int(read_ledger(ledger)["attempts"].sum()) + 1


async def test_the_retry_file_lists_failed_and_not_ready_rows_and_runs_into_the_same_ledger(
    mixed_run, tmp_path: Path, capsys
) -> None:
    emulator, _, ledger, _ = mixed_run
    retry = tmp_path / "retry.csv"
    assert run_command(add_parser, "report", str(ledger), "--retry-file", str(retry)) == 0
    assert f"wrote 3 rows to retry to {retry}" in capsys.readouterr().out

    table = pd.read_csv(retry, keep_default_na=False)
    # The ledger's names for carried columns ('message' is the ledger's own, so 'input_message').
    assert list(table.columns) == ["hash", "classification", "media", "note", "input_message"]
    assert sorted(table["hash"]) == sorted(sha(i) for i in (4, 5, 10))
    by_hash = table.set_index("hash")
    assert by_hash.loc[sha(10), "classification"] == "artificial"
    assert by_hash.loc[sha(4), "note"] == "note 4"
    assert by_hash.loc[sha(10), "note"] == "'=SUM(A1)"  # as the ledger holds it: neutralised

    again = await run_cli("run", str(retry), "--ledger", str(ledger), "--api-url", emulator.url,
                          "--rate", "1000/s", env=cli_env())  # fmt: skip
    assert again.returncode == 1, again.stderr  # 4 and 5 are still not classified
    assert summarize(ledger).outcomes == {"submitted": 1, "not_ready": 2}

    whole = summarize(ledger, "all")
    assert whole.rows == 10  # 11 input rows; the repeat of row 0 is the same override
    assert dict(whole.outcomes) == {"submitted": 5, "not_ready": 2, "rejected": 2, "invalid": 1}
    assert whole.requests == int(read_ledger(ledger)["attempts"].sum())

    second = tmp_path / "retry2.csv"
    assert run_command(add_parser, "report", str(ledger), "--run", "all", "--retry-file", str(second)) == 0
    assert sorted(pd.read_csv(second)["hash"]) == sorted([sha(4), sha(5)])


async def test_rows_aborted_by_a_refused_key_go_to_the_retry_file_with_their_media(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human", f"t-{i}") for i in range(5)],
                            header=("hash", "classification", "ticket"))  # fmt: skip
    ledger = tmp_path / "ledger.csv"
    args = ("run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, "--media", "image")
    refused = await run_cli(*args, env=cli_env(key="wrong-key"))
    assert refused.returncode == 3  # no row was sent: counted not_attempted, no line
    assert summarize(ledger).outcomes == {} and summarize(ledger).not_attempted == 5
    # --record-skipped writes their aborted lines, as earlier versions did: the retry file lists them.
    refused = await run_cli(*args, "--record-skipped", env=cli_env(key="wrong-key"))
    assert refused.returncode == 3
    assert summarize(ledger).outcomes == {"aborted": 5}

    retry = tmp_path / "retry.csv"
    scope = build_report(ledger)
    assert write_retry_file(ledger, scope.retry_lines, retry) == 5
    table = pd.read_csv(retry)
    assert list(table.columns) == ["hash", "classification", "media", "ticket"]
    assert set(table["media"]) == {"image"}  # the run's --media, now explicit per row

    fixed = await run_cli("run", str(retry), "--ledger", str(ledger), "--api-url", emulator.url,
                          "--rate", "1000/s", env=cli_env())  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    assert {(o["media"], o["hash"]) for o in emulator.overrides()} == {("image", sha(i)) for i in range(5)}
    assert dict(summarize(ledger, "all").outcomes) == {"submitted": 5}


# -- hand-written ledgers: the edges ---------------------------------------------------------------


def test_the_default_run_is_the_one_that_wrote_the_last_line(tmp_path: Path) -> None:
    ledger = write_ledger(
        tmp_path / "l.csv",
        [line(0, "failed", "run-b", attempts=3), line(0, "submitted", "run-a", attempts=2)],
    )
    summary = summarize(ledger)
    assert (summary.run_id, dict(summary.outcomes), summary.requests) == ("run-a", {"submitted": 1}, 2)
    assert summarize(ledger, "latest").run_id == "run-a"
    assert summarize(ledger, "run-b").outcomes == {"failed": 1}


def test_without_a_run_log_the_duration_spans_the_runs_lines_and_the_exit_code_is_derived(
    tmp_path: Path,
) -> None:
    ledger = write_ledger(
        tmp_path / "l.csv",
        [
            line(0, "submitted", "r", at="2026-01-01T00:00:10.000Z"),
            line(1, "not_ready", "r", error_code="not_classified", at="2026-01-01T00:01:40.500Z"),
        ],
    )
    summary = summarize(ledger)
    assert summary.duration == pytest.approx(90.5)
    assert summary.exit_code == 1
    assert summary.error_codes == {"not_classified": 1}
    assert summary.throttled == 0


def test_the_run_log_supplies_wall_time_throttling_and_rows_left_by_limit(tmp_path: Path, capsys) -> None:
    ledger = write_ledger(tmp_path / "l.csv", [line(0, "submitted", "r"), line(1, "failed", "r")])
    base = {"run_id": "r", "api_url": "https://backend.identifai.net/", "dry_run": False}
    write_runlog(
        ledger,
        [
            {**base, "event": "started", "at": "2026-01-01T00:00:00.000Z"},
            {**base, "event": "finished", "at": "2026-01-01T00:00:30.000Z",
             "summary": {"throttled_429": 7, "not_attempted": 40, "exit_code": 5, "stop_reason": "outage"}},
        ],
    )  # fmt: skip
    summary = summarize(ledger)
    assert summary.duration == 30.0
    assert (summary.throttled, summary.not_attempted, summary.rows) == (7, 40, 42)
    assert (summary.exit_code, summary.stop_reason) == (5, "outage")
    assert summary.api_url == "https://backend.identifai.net"

    assert run_command(add_parser, "report", str(ledger), "--retry-file", str(tmp_path / "r.csv")) == 0
    err = capsys.readouterr().err
    assert "40 rows unattempted (--limit or a stop)" in err


def test_a_run_without_a_finished_record_says_so(tmp_path: Path) -> None:
    ledger = write_ledger(tmp_path / "l.csv", [line(0, "submitted", "r", at="2026-01-01T00:00:05.000Z")])
    write_runlog(ledger, [{"run_id": "r", "event": "started", "at": "2026-01-01T00:00:00.000Z"}, {"torn": 1}])
    with open(ledger.with_name("l.csv.runs.jsonl"), "a", encoding="utf-8") as fh:
        fh.write('{"run_id": "r", "event": "fini')
    summary = summarize(ledger)
    assert summary.duration == 5.0
    assert "no 'finished' record" in summary.stop_reason


def test_a_torn_last_line_is_left_out_and_the_ledger_left_alone(tmp_path: Path) -> None:
    ledger = write_ledger(tmp_path / "l.csv", [line(0, "submitted", "r"), line(1, "failed", "r")])
    with open(ledger, "a", encoding="utf-8") as fh:
        fh.write('2,"video","abc","hu')
    before = ledger.read_bytes()
    assert summarize(ledger).outcomes == {"submitted": 1, "failed": 1}
    assert ledger.read_bytes() == before


def test_the_whole_ledger_state_keeps_each_overrides_latest_decisive_line(tmp_path: Path) -> None:
    ledger = write_ledger(
        tmp_path / "l.csv",
        [
            line(0, "failed", "a", error_code="server_error"),
            line(1, "failed", "a", error_code="timeout"),
            line(2, "submitted", "a"),
            line(3, "invalid", "a", h="", error_code="invalid_row"),
            line(4, "invalid", "a", h="", error_code="invalid_row"),
            line(5, "invalid", "a", h="xyz", error_code="invalid_row"),
            # a dry run afterwards plans row 0 again: planning says nothing about the server
            line(0, "planned", "dry", attempts=0),
            # another input: row 0 of it is the override of row 1 above, now accepted
            line(0, "submitted", "b", h=sha(1)),
            # and a repeat of row 2's override in it
            line(1, "duplicate", "b", h=sha(2), attempts=0),
        ],
    )
    summary = summarize(ledger, "all")
    assert summary.run_id == "all"
    assert dict(summary.outcomes) == {"failed": 1, "submitted": 2, "invalid": 2}
    assert dict(summary.error_codes) == {"server_error": 1, "invalid_row": 2}
    assert summary.rows == 5
    assert summary.exit_code == 1
    retry = tmp_path / "r.csv"
    assert write_retry_file(ledger, build_report(ledger, "all").retry_lines, retry) == 1
    assert list(pd.read_csv(retry)["hash"]) == [sha(0)]


def test_the_whole_ledger_warns_when_runs_went_to_different_servers(tmp_path: Path, capsys) -> None:
    ledger = write_ledger(tmp_path / "l.csv", [line(0, "submitted", "a"), line(0, "failed", "b")])
    write_runlog(
        ledger,
        [
            {"run_id": "a", "event": "started", "api_url": "http://127.0.0.1:8080"},
            {"run_id": "b", "event": "started", "api_url": "https://backend.identifai.net"},
        ],
    )
    assert run_command(add_parser, "report", str(ledger), "--run", "all") == 0
    captured = capsys.readouterr()
    assert "2 API URLs" in captured.err
    assert "1 overrides" in captured.out


def test_retry_lines_are_found_across_read_blocks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(blocks, "BLOCK_SIZE", 4096)
    lines = [
        line(i, "failed" if i % 7 == 0 else "submitted", "r", carried=[f"n{i}", "=1+1"]) for i in range(2000)
    ]
    ledger = write_ledger(tmp_path / "l.csv", lines, carried=("note", "formula"))
    retry = tmp_path / "r.csv"
    picked = build_report(ledger).retry_lines
    assert write_retry_file(ledger, picked, retry) == len(range(0, 2000, 7))
    table = pd.read_csv(retry)
    assert list(table["note"]) == [f"n{i}" for i in range(0, 2000, 7)]
    assert list(table["hash"]) == [sha(i) for i in range(0, 2000, 7)]
    whole = summarize(ledger, "all")
    assert (whole.rows, whole.outcomes["failed"]) == (2000, len(range(0, 2000, 7)))


def test_nothing_to_retry_writes_a_header_only_file(tmp_path: Path, capsys) -> None:
    ledger = write_ledger(tmp_path / "l.csv", [line(0, "submitted", "r", carried=["n"])], carried=("note",))
    retry = tmp_path / "r.csv"
    assert run_command(add_parser, "report", str(ledger), "--retry-file", str(retry)) == 0
    assert "wrote 0 rows" in capsys.readouterr().out
    assert retry.read_text().strip() == '"hash","classification","media","note"'


def test_json_goes_to_a_file_or_to_stdout(tmp_path: Path, capsys) -> None:
    ledger = write_ledger(tmp_path / "l.csv", [line(0, "submitted", "r"), line(1, "rejected", "r")])
    out = tmp_path / "s.json"
    assert run_command(add_parser, "report", str(ledger), "--json", str(out)) == 0
    assert "run r: 2 rows" in capsys.readouterr().out
    assert json.loads(out.read_text())["outcomes"] == {"rejected": 1, "submitted": 1}
    assert run_command(add_parser, "report", str(ledger), "--json", "-") == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such ledger"),
        ("", "the ledger is empty"),
        ("hash,classification\nabc,human\n", "not a batch-override ledger"),
        ("row,media,hash,classification,outcome,error_code,http_status,attempts,message,run_id,finished_at\n"
         '0,"video","x","human","submitted","",201,"many","","r","t"\n', "cannot read the ledger"),
    ],
)  # fmt: skip
def test_an_unusable_ledger_exits_2_with_one_line(tmp_path: Path, capsys, content, expected) -> None:
    ledger = tmp_path / "l.csv"
    if content is not None:
        ledger.write_text(content)
    assert run_command(add_parser, "report", str(ledger)) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1 and err.startswith("batch-override: error: ")


def test_an_unknown_run_id_exits_2_and_names_the_latest_runs(tmp_path: Path, capsys) -> None:
    ledger = write_ledger(tmp_path / "l.csv", [line(0, "submitted", "r1"), line(0, "submitted", "r2")])
    assert run_command(add_parser, "report", str(ledger), "--run", "nope") == 2
    err = capsys.readouterr().err
    assert "no run 'nope'" in err and "r2, r1" in err


def test_a_header_only_ledger_has_no_latest_run_but_an_empty_state(tmp_path: Path, capsys) -> None:
    ledger = write_ledger(tmp_path / "l.csv", [])
    assert run_command(add_parser, "report", str(ledger)) == 2
    assert "no lines yet" in capsys.readouterr().err
    assert summarize(ledger, "all").rows == 0


def test_a_dry_run_as_the_latest_run_is_pointed_out(tmp_path: Path, capsys) -> None:
    ledger = write_ledger(
        tmp_path / "l.csv", [line(0, "failed", "real"), line(0, "planned", "dry", attempts=0)]
    )
    retry = tmp_path / "r.csv"
    assert run_command(add_parser, "report", str(ledger), "--retry-file", str(retry)) == 0
    captured = capsys.readouterr()
    assert "was a dry run" in captured.err and "wrote 0 rows" in captured.out
    assert run_command(add_parser, "report", str(ledger), "--run", "all", "--retry-file", str(retry)) == 0
    assert "wrote 1 row to retry" in capsys.readouterr().out


def test_the_retry_hint_is_shell_quoted_and_a_formula_like_key_column_is_neutralised(
    tmp_path: Path, capsys
) -> None:
    """``--hash-column @h`` and a folder with a space: the printed command, pasted into a shell,
    reads the retry file (checked here by ``validate``, which reads as ``run`` does)."""
    from batch_override.cli.main import main

    folder = tmp_path / "my dir"
    folder.mkdir()
    ledger = write_ledger(
        folder / "my ledger.csv", [line(0, "failed", "r", carried=["n"])], carried=("note",)
    )
    write_runlog(
        ledger,
        [
            {
                "event": "started",
                "run_id": "r",
                "columns": {"hash": "@h", "classification": "label", "media": "media"},
            }
        ],
    )
    retry = folder / "my retry.csv"
    assert run_command(add_parser, "report", str(ledger), "--retry-file", str(retry)) == 0
    hint = capsys.readouterr().out.split("(send them with: ")[1].rsplit(")", 1)[0]
    argv = shlex.split(hint)
    assert argv[:5] == ["batch-override", "run", str(retry), "--ledger", str(ledger)]
    assert argv[5:] == ["--hash-column", "'@h", "--classification-column", "label"]
    assert retry.read_text(encoding="utf-8").splitlines()[0] == '"\'@h","label","media","note"'
    assert main(["validate", *argv[2:3], *argv[5:]]) == 0


def test_a_runs_request_count_is_the_one_its_summary_printed_preflight_included(tmp_path: Path) -> None:
    ledger = write_ledger(tmp_path / "l.csv", [line(0, "submitted", "r", attempts=2), line(1, "failed", "r")])
    base = {"run_id": "r", "api_url": "https://backend.identifai.net/", "dry_run": False}
    write_runlog(ledger, [{**base, "event": "started"}])
    assert summarize(ledger).requests == 3  # killed: no finished record, the ledger's attempts
    write_runlog(
        ledger, [{**base, "event": "started"}, {**base, "event": "finished", "summary": {"requests": 4}}]
    )
    assert summarize(ledger).requests == 4  # the 3 attempts and the preflight, as the run said

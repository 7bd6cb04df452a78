"""The operator features end to end: the CLI (in-process) against the emulator, read the way an
operator reads them (a terminal, cron's mail, a log shipper, node_exporter, a job file)."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from batch_override.cli import main as cli
from batch_override.cli.jobfile import load_job
from batch_override.cli.options import JOB_KEYS, config_from
from batch_override.errors import UsageError
from tests.support import (
    REPO,
    Result,
    accounted_rows,
    latest,
    read_ledger,
    run_against,
    run_cli,
    sha,
    write_csv,
)

OK_WITH_NOT_READY = "submitted,already_submitted,duplicate,skipped,planned,not_ready"


def _one_line(result: Result) -> str:
    """The single line a usage error prints (cron mails and log shippers get one line)."""
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
async def one_not_ready(tmp_path: Path, emulator_factory):
    """Six rows: 0-4 accepted, 5 not classified yet (a run exits 1)."""
    emulator = await emulator_factory(unknown="classified", states={("video", sha(5)): "not_classified"})
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(6)])
    return emulator, corrections


# -- 1. what stdout and stderr show ------------------------------------------------------------------
async def test_progress_draws_a_bar_with_rows_done_of_total_even_into_a_pipe(
    tmp_path: Path, one_not_ready
) -> None:
    emulator, corrections = one_not_ready
    result = await run_against(emulator.url, corrections, tmp_path / "l.csv", "--progress")
    assert result.returncode == 1, result.stderr
    assert "\r" in result.stderr and "%|" in result.stderr
    final = result.stderr.split("\r")[-1]
    assert "6/6" in final and "ok=5" in final and "failed=1" in final, final
    assert "run " in result.stdout  # the summary is still printed, below the bar


async def test_without_a_terminal_no_bar_is_drawn(tmp_path: Path, one_not_ready) -> None:
    emulator, corrections = one_not_ready
    result = await run_against(emulator.url, corrections, tmp_path / "l.csv")
    assert result.returncode == 1, result.stderr
    assert "preflight" in result.stderr  # the log is there...
    for mark in ("\r", "%|", "row/s"):
        assert mark not in result.stderr + result.stdout  # ...the bar is not


async def test_quiet_success_prints_nothing_at_all(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(5)])
    result = await run_against(emulator.url, corrections, tmp_path / "l.csv", "--quiet")
    assert result.returncode == 0
    assert (result.stdout, result.stderr) == ("", "")
    assert len(emulator.overrides()) == 5


async def test_quiet_failure_prints_the_summary_and_no_info_lines(tmp_path: Path, one_not_ready) -> None:
    emulator, corrections = one_not_ready
    result = await run_against(emulator.url, corrections, tmp_path / "l.csv", "--quiet")
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "-> exit 1" in out and "not_ready" in out and "not_classified=1" in out
    assert "INFO" not in out and "preflight" not in out
    assert "\r" not in out  # --quiet never draws the bar


async def test_json_logs_are_one_object_per_line_with_ts_level_and_msg(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(
        unknown="classified", states={("video", sha(i)): "expired" for i in range(4)}
    )
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(8)])
    result = await run_against(
        emulator.url, corrections, tmp_path / "l.csv", "--log-format", "json", "-v",
        "--concurrency", "1", "--failure-window", "4",
    )  # fmt: skip
    assert result.returncode == 3  # an error line ("stopping: ...") is among them
    assert _not_json_records(result.stderr) == []
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records
    for record in records:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"]), record["ts"]
    assert {"info", "debug", "error"} <= {r["level"] for r in records}


def _not_json_records(stderr: str) -> list[str]:
    bad = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not {"ts", "level", "msg"} <= record.keys():
            bad.append(line)
    return bad


@pytest.mark.parametrize("case", ["missing-input", "quiet-failure"])
async def test_json_logs_stay_json_when_the_run_fails(tmp_path: Path, one_not_ready, case: str) -> None:
    emulator, corrections = one_not_ready
    if case == "missing-input":
        corrections = tmp_path / "missing.csv"
    result = await run_against(
        emulator.url, corrections, tmp_path / "l.csv", "--log-format", "json", "--quiet"
    )
    assert result.returncode == (2 if case == "missing-input" else 1)
    assert result.stderr.strip()
    assert _not_json_records(result.stderr) == []


async def test_verbose_logs_each_request(tmp_path: Path, one_not_ready) -> None:
    emulator, corrections = one_not_ready
    result = await run_against(emulator.url, corrections, tmp_path / "l.csv", "-v")
    assert result.returncode == 1
    posts = [line for line in result.stderr.splitlines() if "POST " in line]
    for i in range(6):
        assert any(sha(i) in line for line in posts), i
    # one per request the emulator saw (the preflight's included)
    assert len(posts) == emulator.stats()["requests"]


# -- 2. --summary and --metrics-file ------------------------------------------------------------------
async def test_summary_file_holds_outcomes_error_codes_exit_code_and_request_counts(
    tmp_path: Path, one_not_ready
) -> None:
    emulator, corrections = one_not_ready
    path = tmp_path / "summary.json"
    result = await run_against(emulator.url, corrections, tmp_path / "l.csv", "--summary", str(path))
    assert result.returncode == 1
    summary = json.loads(path.read_text())
    assert summary["outcomes"] == {"submitted": 5, "not_ready": 1}
    assert summary["error_codes"] == {"not_classified": 1}
    assert summary["exit_code"] == 1
    assert summary["requests"] == emulator.stats()["requests"] == 7  # 6 rows and the preflight
    assert summary["throttled_429"] == 0
    assert isinstance(summary["duration_s"], float) and summary["duration_s"] >= 0
    assert summary["rows"] == 6


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_]\w*="(?:[^"\\\n]|\\.)*",?)*)\} (\S+)$')


def _metrics(path: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples of a textfile the way node_exporter reads it: every line a comment or a sample."""
    samples = {}
    for line in path.read_text().splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        samples[(name, frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels)))] = float(value)
    return samples


def _rows(job: str, outcome: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return ("batch_override_rows", frozenset({("job", job), ("outcome", outcome)}))


def _gauge(name: str, job: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (f"batch_override_{name}", frozenset({("job", job)}))


async def test_metrics_file_is_prometheus_text_replaced_atomically(tmp_path: Path, one_not_ready) -> None:
    emulator, corrections = one_not_ready
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    prom = textfile / "batch_override.prom"
    ledger = tmp_path / "nightly.ledger.csv"
    for _ in range(2):  # the second run replaces the first one's file
        result = await run_against(emulator.url, corrections, ledger, "--metrics-file", str(prom))
        assert result.returncode == 1, result.stderr
    assert [p.name for p in textfile.iterdir()] == ["batch_override.prom"]  # no temporary left
    samples = _metrics(prom)
    job = "nightly.ledger"  # the default label: the ledger's file name
    assert samples[_rows(job, "skipped")] == 5  # the second run's figures, not a sum
    assert samples[_rows(job, "not_ready")] == 1
    assert samples[_rows(job, "submitted")] == 0
    assert samples[_gauge("exit_code", job)] == 1
    assert samples[_gauge("requests", job)] == 2  # the preflight and the not_ready row
    assert _gauge("last_success_timestamp_seconds", job) not in samples  # never succeeded


async def test_a_failed_run_keeps_the_last_success_time_so_a_staleness_alert_fires(
    tmp_path: Path, one_not_ready
) -> None:
    emulator, corrections = one_not_ready
    prom = tmp_path / "m.prom"
    good = write_csv(tmp_path / "good.csv", [(sha(i), "human") for i in range(3)])
    metrics = ("--metrics-file", str(prom), "--metrics-job", "nightly")
    ok = await run_against(emulator.url, good, tmp_path / "good.ledger.csv", *metrics)
    assert ok.returncode == 0, ok.stderr
    first = _metrics(prom)
    success = first[_gauge("last_success_timestamp_seconds", "nightly")]
    assert abs(success - datetime.now(UTC).timestamp()) < 600
    assert first[_rows("nightly", "submitted")] == 3

    failed = await run_against(emulator.url, corrections, tmp_path / "bad.ledger.csv", *metrics)
    assert failed.returncode == 1
    second = _metrics(prom)
    assert second[_gauge("exit_code", "nightly")] == 1
    assert second[_gauge("last_success_timestamp_seconds", "nightly")] == success
    assert second[_gauge("last_run_timestamp_seconds", "nightly")] >= success


# -- 3. report and the retry file --------------------------------------------------------------------
def _counts(printed: str) -> list[str]:
    """A printed summary without what legitimately differs between the run and its report: the
    duration's last digit, the requests line (the run counts its preflight request) and the
    concurrency line (a ledger does not record the requests in flight)."""
    lines = [
        line for line in printed.splitlines() if not line.strip().startswith(("requests:", "concurrency:"))
    ]
    return [re.sub(r" in \d+\.\ds ", " in Xs ", line) for line in lines]


async def test_report_prints_the_counts_the_run_printed(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(
        unknown="classified",
        states={("video", sha(4)): "not_classified", ("video", sha(5)): "expired"},
    )
    rows = [(sha(i), "human") for i in range(6)] + [("not-a-hash", "human"), (sha(0), "human")]
    corrections = write_csv(tmp_path / "c.csv", rows)
    ledger = tmp_path / "l.csv"
    result = await run_against(emulator.url, corrections, ledger)
    assert result.returncode == 1
    report = await run_cli("report", str(ledger))
    assert report.returncode == 0, report.stderr
    assert _counts(report.stdout) == _counts(result.stdout)
    for word in ("submitted", "not_ready", "rejected", "invalid", "duplicate"):
        assert word in report.stdout


@pytest.mark.parametrize("record_skipped", [True, False], ids=["record-skipped", "default"])
async def test_retry_file_of_an_aborted_run_sends_exactly_the_rows_left_unsent(
    tmp_path: Path, emulator_factory, record_skipped: bool
) -> None:
    """With ``--record-skipped`` the rows never reached have ``aborted`` lines and the retry file lists
    them; by default they have no line, are counted ``not_attempted``, and rerunning the input (as the
    report says) sends them.  Either way exactly the rows left unsent are sent, the rejected ones not."""
    # Rows 0-3 are past their override window: four rejections in a row trip --max-failure-rate.
    emulator = await emulator_factory(
        unknown="classified", states={("video", sha(i)): "expired" for i in range(4)}
    )
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(20)])
    ledger = tmp_path / "l.csv"
    record = ("--record-skipped",) if record_skipped else ()
    aborted = await run_against(
        emulator.url, corrections, ledger, "--concurrency", "1", "--failure-window", "4", *record
    )
    assert aborted.returncode == 3, aborted.stdout + aborted.stderr
    assert emulator.overrides() == []
    unsent = {sha(i) for i in range(4, 20)}
    outcomes, not_attempted = accounted_rows(ledger, 20)
    assert outcomes == ({"rejected": 4, "aborted": 16} if record_skipped else {"rejected": 4})
    assert not_attempted == (0 if record_skipped else 16)

    retry = tmp_path / "retry.csv"
    report = await run_cli("report", str(ledger), "--retry-file", str(retry))
    assert report.returncode == 0, report.stderr
    if record_skipped:
        assert set(latest(read_ledger(ledger)).query("outcome == 'aborted'")["hash"]) == unsent
        assert f"wrote 16 rows to retry to {retry}" in report.stdout
        assert set(pd.read_csv(retry)["hash"]) == unsent  # not the rejected rows
    else:
        assert "left 16 rows unattempted" in report.stderr
        assert "nothing to retry" in report.stdout  # the rejected rows are not retried

    before = emulator.stats()["requests"]
    again = await run_against(emulator.url, retry if record_skipped else corrections, ledger)
    # the input again holds the rejected rows: recorded rejected (previously_rejected), not sent, exit 1
    assert again.returncode == (0 if record_skipped else 1), again.stdout + again.stderr
    assert sorted(o["hash"] for o in emulator.overrides()) == sorted(unsent)
    assert emulator.stats()["requests"] - before in (16, 17)  # those rows (and the preflight), no more
    state = read_ledger(ledger).drop_duplicates("hash", keep="last")  # rows renumber in the retry file
    assert dict(state["outcome"].value_counts()) == {"submitted": 16, "rejected": 4}


async def test_the_retry_file_of_a_run_with_mapped_columns_reads_with_the_same_command_line(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(
        unknown="classified", states={("image", sha(i)): "expired" for i in range(4)}
    )
    corrections = write_csv(
        tmp_path / "c.csv",
        [(f"  {sha(i).upper()}", "human", "image", f"T-{i}") for i in range(12)],
        ("SHA256", "label", "kind", "ticket"),
    )
    ledger = tmp_path / "l.csv"
    mapped = ("--hash-column", "sha256", "--classification-column", "label", "--media-column", "kind")
    aborted = await run_against(  # --record-skipped: the rows never reached get their aborted lines to retry
        emulator.url, corrections, ledger, *mapped, "--concurrency", "1", "--failure-window", "4",
        "--record-skipped",
    )  # fmt: skip
    assert aborted.returncode == 3, aborted.stdout + aborted.stderr

    retry = tmp_path / "retry.csv"
    report = await run_cli("report", str(ledger), "--retry-file", str(retry))
    assert report.returncode == 0, report.stderr
    assert "--hash-column SHA256 --classification-column label --media-column kind" in report.stdout
    assert list(pd.read_csv(retry).columns) == ["SHA256", "label", "kind", "ticket"]

    again = await run_against(emulator.url, retry, ledger, *mapped)  # the same command line, the retry file
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(o["hash"] for o in emulator.overrides()) == sorted(sha(i) for i in range(4, 12))
    assert {o["media"] for o in emulator.overrides()} == {"image"}
    state = read_ledger(ledger).drop_duplicates("hash", keep="last")
    assert dict(state["outcome"].value_counts()) == {"submitted": 8, "rejected": 4}
    assert set(state["ticket"]) == {f"T-{i}" for i in range(12)}


async def test_rows_left_by_limit_are_not_in_the_retry_file_and_the_report_says_so(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(6)])
    ledger = tmp_path / "l.csv"
    canary = await run_against(emulator.url, corrections, ledger, "--limit", "2")
    assert canary.returncode == 0, canary.stderr
    retry = tmp_path / "retry.csv"
    report = await run_cli("report", str(ledger), "--retry-file", str(retry))
    assert report.returncode == 0
    assert "left 4 rows unattempted" in report.stderr
    assert "nothing to retry" in report.stdout
    rest = await run_against(emulator.url, corrections, ledger)  # the note's advice: run the input again
    assert rest.returncode == 0
    assert len(emulator.overrides()) == 6


# -- 4. --label-map ------------------------------------------------------------------------------------
async def test_label_map_accepts_other_words_and_sends_the_mapped_classification(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    rows = [(sha(0), "AI"), (sha(1), "Real "), (sha(2), "human"), (sha(3), "robot")]
    corrections = write_csv(tmp_path / "c.csv", rows)
    ledger = tmp_path / "l.csv"
    result = await run_against(emulator.url, corrections, ledger, "--label-map", "ai=artificial,real=human")
    assert result.returncode == 1, result.stderr  # "robot" is in no map: still invalid
    assert sorted((o["hash"], o["classification"]) for o in emulator.overrides()) == sorted(
        [(sha(0), "artificial"), (sha(1), "human"), (sha(2), "human")]
    )
    lines = read_ledger(ledger).set_index("row")
    assert lines.loc[0, "classification"] == "artificial"
    assert lines.loc[3, "outcome"] == "invalid" and lines.loc[3, "classification"] == "robot"


@pytest.mark.parametrize("mapping", ["ai=robot", "junk"])
async def test_a_bad_label_map_exits_2_with_one_line(tmp_path: Path, emulator_factory, mapping: str) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(0), "ai")])
    result = await run_against(emulator.url, corrections, tmp_path / "l.csv", "--label-map", mapping)
    assert result.returncode == 2
    assert "--label-map" in _one_line(result)
    assert emulator.stats()["requests"] == 0


# -- 5. --ok-outcomes ----------------------------------------------------------------------------------
async def test_ok_outcomes_with_not_ready_lets_a_run_waiting_on_the_server_exit_0(
    tmp_path: Path, one_not_ready
) -> None:
    emulator, corrections = one_not_ready
    strict = await run_against(emulator.url, corrections, tmp_path / "a.csv")
    assert strict.returncode == 1
    lenient = await run_against(
        emulator.url, corrections, tmp_path / "b.csv", "--ok-outcomes", OK_WITH_NOT_READY
    )
    assert lenient.returncode == 0, lenient.stdout
    assert "not_ready" in lenient.stdout  # still counted, just not a failure


async def test_an_unknown_ok_outcome_exits_2_with_one_line(tmp_path: Path, one_not_ready) -> None:
    emulator, corrections = one_not_ready
    result = await run_against(
        emulator.url, corrections, tmp_path / "l.csv", "--ok-outcomes", "submitted,finished"
    )
    assert result.returncode == 2
    assert "finished" in _one_line(result)
    assert emulator.stats()["requests"] == 0


# -- 6. --give-up-after ---------------------------------------------------------------------------------
def _age_run(ledger: Path, days: float) -> None:
    """Make the ledger's only run look ``days`` old (no waiting in a test): its lines' finished_at and
    its run log records' times."""
    stamp = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="milliseconds")
    stamp = stamp.replace("+00:00", "Z")
    with open(ledger, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    at = table[0].index("finished_at")
    for line in table[1:]:
        line[at] = stamp
    with open(ledger, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(table)
    runlog = ledger.with_name(ledger.name + ".runs.jsonl")
    records = [json.loads(line) for line in runlog.read_text(encoding="utf-8").splitlines()]
    assert len({r["run_id"] for r in records}) == 1
    runlog.write_text("".join(json.dumps({**r, "at": stamp}) + "\n" for r in records), encoding="utf-8")


async def test_a_row_not_ready_for_longer_than_give_up_after_becomes_rejected_and_is_not_sent_again(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(
        unknown="classified",
        states={("video", sha(0)): "not_classified", ("video", sha(1)): "no_completed_request"},
    )
    ledger = tmp_path / "l.csv"
    early = write_csv(tmp_path / "early.csv", [(sha(0), "human")])
    first = await run_against(emulator.url, early, ledger)
    assert first.returncode == 1
    _age_run(ledger, days=10)  # row 0 has waited since 10 days

    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(3)])
    second = await run_against(emulator.url, corrections, ledger, "--give-up-after", "5")
    assert second.returncode == 1
    state = latest(read_ledger(ledger)).set_index("row")
    assert (state.loc[0, "outcome"], state.loc[0, "error_code"]) == ("rejected", "gave_up")
    assert "--give-up-after" in str(state.loc[0, "message"])
    assert state.loc[1, "outcome"] == "not_ready"  # first seen just now
    assert state.loc[2, "outcome"] == "submitted"

    before = emulator.stats()["requests"]
    third = await run_against(
        emulator.url, corrections, ledger, "--give-up-after", "5", "--no-preflight", "-v"
    )
    assert third.returncode == 1
    assert sha(0) not in "".join(line for line in third.stderr.splitlines() if "POST" in line)
    assert emulator.stats()["requests"] - before == 1  # row 1 only
    state = latest(read_ledger(ledger)).set_index("row")
    assert (state.loc[0, "outcome"], state.loc[0, "error_code"]) == ("rejected", "gave_up")  # no new line
    assert "previously_rejected=1" in third.stdout + third.stderr  # counted instead
    assert state.loc[1, "outcome"] == "not_ready"

    again = await run_against(emulator.url, corrections, ledger, "--retry-rejected", "--no-preflight", "-v")
    assert again.returncode == 1
    assert sha(0) in "".join(line for line in again.stderr.splitlines() if "POST" in line)
    assert latest(read_ledger(ledger)).set_index("row").loc[0, "outcome"] == "not_ready"


# -- 7. the hash command ------------------------------------------------------------------------------
async def test_hash_writes_the_sha256_of_each_file_and_run_sends_those_hashes(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    media = tmp_path / "media"
    media.mkdir()
    contents = {f"clip{i}.mp4": f"clip {i} ".encode() * (i * 1000 + 1) for i in range(3)}
    for name, data in contents.items():
        (media / name).write_bytes(data)
    listing = write_csv(
        tmp_path / "list.csv",
        [(f"media/{name}", "artificial" if i else "human") for i, name in enumerate(contents)],
        header=("path", "classification"),
    )
    out = tmp_path / "corrections.csv"
    hashed = await run_cli("hash", str(listing), "-o", str(out))
    assert hashed.returncode == 0, hashed.stderr
    table = pd.read_csv(out, keep_default_na=False)
    expected = [hashlib.sha256(data).hexdigest() for data in contents.values()]
    assert list(table["hash"]) == expected

    result = await run_against(emulator.url, out, tmp_path / "l.csv")
    assert result.returncode == 0, result.stdout + result.stderr
    sent = {o["hash"]: o["classification"] for o in emulator.overrides()}
    assert sent == {expected[0]: "human", expected[1]: "artificial", expected[2]: "artificial"}


# -- 8. job files --------------------------------------------------------------------------------------
async def test_a_job_file_takes_label_map_as_a_table_and_ok_outcomes_as_a_list(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified", states={("video", sha(1)): "not_classified"})
    corrections = write_csv(tmp_path / "c.csv", [(sha(0), "AI"), (sha(1), "Real")])
    job = tmp_path / "job.toml"
    outcomes = ", ".join(f'"{o}"' for o in OK_WITH_NOT_READY.split(","))
    job.write_text(
        f'[run]\ninput = "{corrections}"\napi_url = "{emulator.url}"\nrate = "1000/s"\n'
        f"ok_outcomes = [{outcomes}]\n"
        '[run.label_map]\nai = "artificial"\nreal = "human"\n',
        encoding="utf-8",
    )
    result = await run_cli("run", "--job", str(job), "--ledger", str(tmp_path / "a.csv"))
    assert result.returncode == 0, result.stdout + result.stderr  # not_ready is ok for this job
    assert emulator.overrides() == [{"media": "video", "hash": sha(0), "classification": "artificial"}]
    assert read_ledger(tmp_path / "a.csv").set_index("row").loc[1, "classification"] == "human"

    flagged = await run_cli("run", "--job", str(job), "--ledger", str(tmp_path / "b.csv"),
                            "--ok-outcomes", "submitted,skipped")  # fmt: skip
    assert flagged.returncode == 1  # the flag wins over the file


_SAMPLE_VALUES = {  # a flag's sample value by metavar (or dest); numbers as TOML numbers
    "PATH": "some/file.txt",
    "URL": "http://127.0.0.1:8080",
    "media": "image",
    "NAME": "col_x",
    "N": 3,
    "N|auto": 3,
    "rate": "5/s",
    "F": 0.25,
    "S": 2.5,
    "DAYS": 2.5,
    "MAP": "ai=artificial,real=human",
    "LIST": "submitted,not_ready",
    "DURATION": "7h30m",
    "HH:MM[ ZONE]": "06:00 Europe/Rome",
}


def _run_options() -> list[Any]:
    """Every option of ``run --help`` but --job and --help, as (flags, job key, TOML value)."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run = sub.choices["run"]
    out = []
    for action in run._actions:
        flags = [o for o in action.option_strings if o.startswith("--")]
        if not flags or flags[0] in ("--help", "--job"):
            continue
        flag = flags[0]
        if isinstance(action, argparse._CountAction):
            out.append(pytest.param([flag], action.dest, 1, id=flag))
        elif action.nargs == 0:  # a switch: its key is the setting it changes (--no-preflight: preflight)
            out.append(pytest.param([flag], action.dest, action.const, id=flag))
        else:
            name = action.choices[-1] if action.choices else _SAMPLE_VALUES.get(action.metavar or action.dest)
            assert name is not None, f"{flag}: add a sample value for metavar {action.metavar!r}"
            out.append(pytest.param([flag, str(name)], flag[2:].replace("-", "_"), name, id=flag))
    return out


_JOB_FILE_GAPS: set[str] = set()  # options a job file cannot take (none now)


def _mark_gaps(params: list[Any]) -> list[Any]:
    reason = (
        "BUG: job files take 'any run option' (jobfile docstring, jobs/demo.toml, jobs/reference.toml), "
        "but verbose = 1 is refused: 'unknown option' (not in JOB_KEYS)"
    )
    return [
        pytest.param(
            *p.values, id=p.id, marks=pytest.mark.xfail(strict=True, raises=UsageError, reason=reason)
        )
        if p.id in _JOB_FILE_GAPS
        else p
        for p in params
    ]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # a JSON string or number is a TOML one


def _config(*argv: str) -> tuple[Any, Any]:
    """What ``run ARGV`` would run with: the RunConfig and the OutputOptions (summary, quiet, ...)."""
    return config_from(cli.build_parser().parse_args(["run", *argv]))


@pytest.mark.parametrize(("flags", "key", "value"), _mark_gaps(_run_options()))
def test_every_run_option_is_accepted_in_a_job_file_under_its_name(
    tmp_path: Path, flags: list[str], key: str, value: object
) -> None:
    job = tmp_path / "job.toml"
    ledger = 'ledger = "l.csv"\n' if key != "ledger" else ""
    job.write_text(f'[run]\ninput = "c.csv"\n{ledger}{key} = {_toml(value)}\n', encoding="utf-8")
    assert key in load_job(job, JOB_KEYS)
    by_flag = _config("c.csv", *(["--ledger", "l.csv"] if key != "ledger" else []), *flags)
    assert _config("--job", str(job)) == by_flag  # the same run as the flag's


_SHIPPED = sorted(
    {
        *(REPO / "jobs").glob("*.toml"),
        *(REPO / "jobs" / n for n in ("nightly.toml", "backfill.toml", "demo.toml")),
    }
)


@pytest.mark.parametrize("path", _SHIPPED, ids=lambda p: p.name)
def test_the_shipped_job_files_load_with_the_clis_keys(path: Path) -> None:
    values = load_job(path, JOB_KEYS)
    # The examples name their own input and ledger; a reference file may leave them to the flags.
    config, _ = _config("--job", str(path), *(() if "input" in values else ("c.csv",)),
                           *(() if "ledger" in values else ("--ledger", "l.csv")))  # fmt: skip
    assert config.input == values.get("input", "c.csv")

"""Unattended operation: signals, preflight, outages, the failure threshold, secrets."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from batch_override.emulator import DEMO_API_KEY
from tests.support import (
    FAST,
    accounted_rows,
    cli_env,
    latest,
    read_ledger,
    run_cli,
    sha,
    start_cli,
    write_csv,
)


async def _wait_for_line(stream: asyncio.StreamReader, needle: str, limit: int = 10_000) -> list[str]:
    seen = []
    for _ in range(limit):
        raw = await asyncio.wait_for(stream.readline(), 60)
        if not raw:
            break
        seen.append(raw.decode())
        if needle in seen[-1]:
            return seen
    raise AssertionError(f"{needle!r} never appeared in: {''.join(seen)[-2000:]}")


async def test_sigterm_finishes_in_flight_rows_records_the_rest_aborted_and_exits_143(
    tmp_path: Path, emulator_factory
) -> None:
    """A subprocess: the signal and the exit code are the process's own."""
    emulator = await emulator_factory(unknown="classified", latency_ms=150)
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(60)])
    ledger = tmp_path / "l.csv"
    proc = await start_cli(
        "run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST,
        "--concurrency", "2", "-v",
    )  # fmt: skip
    assert proc.stderr is not None
    await _wait_for_line(proc.stderr, "row ")  # a first row has finished
    proc.send_signal(signal.SIGTERM)
    _, err = await proc.communicate()

    assert proc.returncode == 143, err.decode()
    outcomes, not_attempted = accounted_rows(ledger, 60)  # every row once: a line, or counted
    assert set(outcomes) <= {"submitted", "aborted"} and not_attempted > 0
    # In-flight rows were let finish: what the server recorded is what the ledger says.
    assert outcomes["submitted"] == len(emulator.overrides())


async def test_a_second_signal_exits_at_once_without_a_torn_line(tmp_path: Path, emulator_factory) -> None:
    """A subprocess: the signals and the exit at once are the process's own."""
    emulator = await emulator_factory(unknown="classified", latency_ms=5_000)
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(10)])
    ledger = tmp_path / "l.csv"
    proc = await start_cli(
        "run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST,
        "--no-preflight", "--grace", "60",
    )  # fmt: skip
    assert proc.stderr is not None
    await _wait_for_line(proc.stderr, "run ")  # the run's first log line: sending starts
    await asyncio.wait_for(_until(lambda: emulator.stats()["requests"] > 0), 30)
    proc.send_signal(signal.SIGINT)
    await _wait_for_line(proc.stderr, "stopping")
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.wait(), 10)

    assert proc.returncode == 130
    assert ledger.read_bytes().endswith(b"\n")
    read_ledger(ledger)


async def _until(condition: Callable[[], bool], step: float = 0.01) -> None:
    while not condition():
        await asyncio.sleep(step)


async def test_a_refused_key_is_caught_by_the_preflight_before_any_row(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(5)])
    ledger = tmp_path / "l.csv"
    result = await run_cli(
        "run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST,
        env=cli_env("not-a-known-key"),
    )  # fmt: skip
    assert result.returncode == 3
    assert "401" in result.stdout + result.stderr
    assert emulator.stats()["requests"] == 1
    assert emulator.overrides() == []
    assert accounted_rows(ledger, 5) == ({}, 5)  # nothing sent: every row counted not_attempted


async def test_a_forbidden_key_aborts_with_exit_3(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified", forbidden_keys=("banned",))
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(3)])
    result = await run_cli(
        "run", str(corrections), "--ledger", str(tmp_path / "l.csv"), "--api-url", emulator.url, *FAST,
        env=cli_env("banned"),
    )  # fmt: skip
    assert result.returncode == 3
    assert "403" in result.stdout + result.stderr


async def test_an_outage_pauses_all_senders_without_spending_row_retries(tmp_path: Path) -> None:
    answered = {"n": 0}

    async def flaky(request: web.Request) -> web.Response:
        answered["n"] += 1
        if answered["n"] <= 12:  # the proxy is down for a while
            return web.Response(status=503, text="<html><title>503 Service Unavailable</title></html>",
                                content_type="text/html")  # fmt: skip
        return web.json_response({"classification": "human", "type": "video", "hash": "x"}, status=201)

    app = web.Application()
    app.router.add_post("/api/classification_video/{hash}/override", flaky)
    async with TestServer(app, host="127.0.0.1") as server:
        corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(12)])
        result = await run_cli(
            "run", str(corrections), "--ledger", str(tmp_path / "l.csv"),
            "--api-url", str(server.make_url("")).rstrip("/"), *FAST,
            "--max-retries", "1", "--concurrency", "4", "--no-preflight",
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = read_ledger(tmp_path / "l.csv")
    assert set(lines["outcome"]) == {"submitted"}
    assert lines["attempts"].max() > 1 + 1  # more attempts than --max-retries allows one row


async def test_an_outage_longer_than_max_outage_ends_the_run_with_exit_5(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified", fail_rate=1.0)
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(20)])
    ledger = tmp_path / "l.csv"
    result = await run_cli(
        "run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST,
        "--max-outage", "0.5", "--no-preflight",
    )  # fmt: skip
    assert result.returncode == 5, result.stdout + result.stderr
    outcomes, _ = accounted_rows(ledger, 20)
    assert set(outcomes) <= {"failed", "aborted"}
    assert emulator.overrides() == []


async def test_a_retry_after_beyond_max_wait_ends_the_run_with_exit_5(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified", rate_limit=(2, 3600.0))
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(5)])
    ledger = tmp_path / "l.csv"
    result = await run_cli(
        "run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST,
        "--max-wait", "10", "--concurrency", "1",
    )  # fmt: skip
    assert result.returncode == 5, result.stdout + result.stderr
    assert "--max-wait" in result.stdout + result.stderr
    final = latest(read_ledger(ledger))
    assert final["outcome"].tolist()[0] == "submitted"
    assert "rate_limited" in final["error_code"].tolist()


async def test_a_clearly_broken_run_stops_itself_at_the_failure_threshold(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="no_request")  # e.g. a key from another account
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(100)])
    ledger = tmp_path / "l.csv"
    result = await run_cli(
        "run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST,
        "--concurrency", "1", "--failure-window", "10",
    )  # fmt: skip
    assert result.returncode == 3
    assert "--max-failure-rate" in result.stdout + result.stderr
    assert emulator.stats()["requests"] <= 1 + 10 + 1
    assert accounted_rows(ledger, 100)[1] >= 85  # the rows never sent: counted not_attempted


SECRET = "sk-live-5f2c9e1d7a6b4c3e"


async def test_the_key_never_appears_in_anything_a_run_writes(tmp_path: Path, emulator_factory) -> None:
    good = await emulator_factory(
        unknown="classified", api_keys=(SECRET,), fail_rate=0.2, drop_rate=0.1, seed=7
    )
    refusing = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(30)] + [("bad", "x")])
    outputs = []
    for url, name in ((good.url, "ok"), (refusing.url, "refused")):
        ledger = tmp_path / f"{name}.csv"
        result = await run_cli(
            "run", str(corrections), "--ledger", str(ledger), "--api-url", url, *FAST, "-v",
            "--summary", str(tmp_path / f"{name}.json"), env=cli_env(SECRET),
        )  # fmt: skip
        outputs += [result.stdout, result.stderr]
    help_text = await run_cli("run", "--help", env=cli_env(SECRET))
    outputs += [help_text.stdout, help_text.stderr]
    written = [p.read_bytes() for p in tmp_path.iterdir() if p.is_file()]  # resume states are binary
    assert any("refused" in o for o in outputs)  # the 401 run did run
    for text in [o.encode() for o in outputs] + written:
        assert SECRET.encode() not in text
        assert SECRET[8:].encode() not in text


def test_an_api_key_object_does_not_show_its_value() -> None:
    from batch_override.apikey import ApiKey

    key = ApiKey(SECRET)
    assert SECRET not in repr(key) and SECRET not in str(key) and SECRET not in f"{key!r} {key}"
    assert json.dumps({"fp": key.fingerprint}).count(SECRET) == 0
    assert DEMO_API_KEY not in repr(ApiKey(DEMO_API_KEY))


async def test_sighup_is_handled_as_sigterm_with_summary_finish_record_and_metrics_and_exits_129(
    tmp_path: Path, emulator_factory
) -> None:
    """A subprocess: the signal and the exit code are the process's own."""
    emulator = await emulator_factory(unknown="classified", latency_ms=150)
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(60)])
    ledger, metrics = tmp_path / "l.csv", tmp_path / "l.prom"
    proc = await start_cli(
        "run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST,
        "--concurrency", "2", "--metrics-file", str(metrics), "-v",
    )  # fmt: skip
    assert proc.stderr is not None
    await _wait_for_line(proc.stderr, "row ")  # a first row has finished
    proc.send_signal(signal.SIGHUP)
    out, err = await proc.communicate()

    assert proc.returncode == 129, err.decode()
    assert "signal SIGHUP" in err.decode()
    assert "not attempted" in out.decode()  # the summary
    accounted_rows(ledger, 60)
    events = [json.loads(x)["event"] for x in ledger.with_name("l.csv.runs.jsonl").read_text().splitlines()]
    assert events == ["started", "finished"]
    assert 'batch_override_exit_code{job="l"} 129.0' in metrics.read_text(encoding="utf-8")


async def test_requests_still_in_flight_when_the_grace_period_ends_are_recorded_interrupted(
    tmp_path: Path, emulator_factory
) -> None:
    """A subprocess: the signal is the process's own."""
    emulator = await emulator_factory(unknown="classified", latency_ms=30_000)
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(6)])
    ledger = tmp_path / "l.csv"
    proc = await start_cli(
        "run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST,
        "--no-preflight", "--grace", "0.2", "--concurrency", "2",
    )  # fmt: skip
    await asyncio.wait_for(_until(lambda: emulator.stats()["requests"] >= 2), 30)
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 20)

    assert proc.returncode == 143
    lines = read_ledger(ledger)
    assert lines["error_code"].value_counts().to_dict() == {"interrupted": 2}
    assert accounted_rows(ledger, 6)[1] == 4


async def test_maintenance_mode_gets_a_few_probes_and_the_run_resumes_when_it_ends(
    tmp_path: Path, emulator_factory
) -> None:
    # Laravel's `artisan down --retry=1` from 0.5 s after the start, for 3 s: every sender queued at
    # its slot or the pacer when the breaker opens waits for it, and the probes wait Retry-After.
    emulator = await emulator_factory(unknown="classified", maintenance=(0.5, 3.0, 1))
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(400)])
    result = await run_cli(
        "run", str(corrections), "--ledger", str(tmp_path / "l.csv"), "--api-url", emulator.url,
        "--rate", "100/s", "--backoff-base", "0.01", "--max-retries", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = read_ledger(tmp_path / "l.csv")
    assert set(lines["outcome"]) == {"submitted"}
    # The streak that opens the breaker (what is in flight, at least 3) and a probe a second.
    assert emulator.stats()["responses_by_status"].get("503", 0) <= 10

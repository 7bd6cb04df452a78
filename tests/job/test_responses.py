"""The response table: every way the server can answer, and the ledger line and exit code it leads to.

Each answer comes from a real HTTP server on 127.0.0.1: the emulator where it can produce the
answer, otherwise a small aiohttp app (:class:`tests.job.support.Scripted`) that answers exactly what
the test says.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiohttp import web

from batch_override.emulator import DEMO_API_KEY
from batch_override.outcome import ALREADY_SUBMITTED_NOTE
from tests.job.support import SERVER, Answer, Hit, always, run_rows, scripted
from tests.support import accounted_rows, cli_env, read_ledger, run_cli, sha, write_csv


def line(ledger: pd.DataFrame, row: int) -> dict[str, Any]:
    """Row ``row``'s ledger line, empty cells as ''."""
    (match,) = ledger.index[ledger["row"] == row]
    return {k: ("" if pd.isna(v) else v) for k, v in ledger.loc[match].items()}


def cells(ledger: pd.DataFrame, *columns: str) -> list[tuple[Any, ...]]:
    """The given columns of every line, in row order, empty cells as ''."""
    ordered = ledger.sort_values("row")
    return [
        tuple("" if pd.isna(v) else v for v in values)
        for values in ordered[list(columns)].itertuples(index=False)
    ]


# -- 201 and the documented 400s, from the emulator -------------------------------------------------------


async def test_accepted_override_is_ledgered_submitted_with_201_and_exit_0(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    result = await run_cli(
        "run", str(write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(3)])),
        "--ledger", str(tmp_path / "ledger.csv"), "--api-url", emulator.url,
        "--rate", "1000/s", "--backoff-base", "0.01", env=cli_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ledger = read_ledger(tmp_path / "ledger.csv")
    assert (
        cells(ledger, "outcome", "error_code", "http_status", "attempts", "message")
        == [("submitted", "", 201, 1, "")] * 3
    )
    assert sorted(o["hash"] for o in emulator.overrides()) == sorted(sha(i) for i in range(3))


async def test_override_the_server_already_holds_is_already_submitted_a_success_and_says_the_class_is_unknown(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    rows = [(sha(i), "artificial") for i in range(4)]
    first, _ = await run_rows(tmp_path, emulator.url, rows, ledger=tmp_path / "first.csv")
    assert first.exit_code == 0
    # A fresh ledger knows nothing of the first run: every row is sent again and answered 400.
    second, ledger = await run_rows(tmp_path, emulator.url, rows, ledger=tmp_path / "second.csv")
    assert second.exit_code == 0
    assert cells(ledger, "outcome", "error_code", "http_status") == [("already_submitted", "", 400)] * 4
    # The server keeps the first override of a hash and does not say which classification it was.
    assert all(
        m.startswith("You have already submitted a report") and "does not report which classification" in m
        for m in ledger["message"]
    )
    assert len(emulator.overrides()) == 4


async def test_documented_refusals_become_not_ready_or_rejected_in_every_media_wording(
    tmp_path: Path, emulator_factory
) -> None:
    states = {"not_classified": 0, "no_completed_request": 1, "expired": 2}
    expected_by_state = {
        "not_classified": ("not_ready", "not_classified", "This {m} was not classified yet."),
        "no_completed_request": (
            "not_ready", "no_completed_request", "No completed request for this {m} exists."
        ),
        "expired": ("rejected", "no_longer_possible", "Is no longer possible to send a report for this {m}."),
        "unknown": ("rejected", "no_request", "You haven't got any request for this content."),
    }  # fmt: skip
    rows, expected, emulator_states = [], [], {}
    for m_index, media in enumerate(("video", "image", "audio")):
        for state in (*states, "unknown"):
            h = sha(f"{media}-{state}-{m_index}")
            if state != "unknown":
                emulator_states[(media, h)] = state
            rows.append((h, "human", media))
            outcome, code, text = expected_by_state[state]
            expected.append((media, outcome, code, 400, 1, text.format(m=media)))
    emulator = await emulator_factory(unknown="no_request", states=emulator_states)
    summary, ledger = await run_rows(tmp_path, emulator.url, rows, header=("hash", "classification", "media"))
    assert summary.exit_code == 1
    assert cells(ledger, "media", "outcome", "error_code", "http_status", "attempts", "message") == expected
    assert emulator.overrides() == []


async def test_a_rerun_skips_accepted_rows_resends_not_ready_and_never_resends_rejected(
    tmp_path: Path, emulator_factory
) -> None:
    """The table's "after" column: success and permanent rows are settled; not_ready may succeed later."""
    ok, not_ready, expired, no_request = sha("ok"), sha("not-ready"), sha("expired"), sha("no-request")
    emulator = await emulator_factory(
        unknown="no_request",
        states={
            ("video", ok): "classified",
            ("video", not_ready): "not_classified",
            ("video", expired): "expired",
        },
    )
    rows = [(ok, "human"), (not_ready, "human"), (expired, "human"), (no_request, "human")]
    first, _ = await run_rows(tmp_path, emulator.url, rows, preflight=False)
    assert first.exit_code == 1
    assert emulator.stats()["requests"] == 4
    second, ledger = await run_rows(tmp_path, emulator.url, rows, preflight=False)
    assert second.exit_code == 1
    assert second.outcomes["skipped"] == 1  # the accepted row: counted, no line (issue 25)
    rerun = ledger[ledger["run_id"] == second.run_id]
    # Settled rows are counted, not written again: only the row sent again has a line.
    assert cells(rerun, "outcome", "error_code") == [("not_ready", "not_classified")]
    assert dict(second.outcomes) == {"skipped": 1, "not_ready": 1, "rejected": 2}
    assert second.error_codes["previously_rejected"] == 2
    assert emulator.stats()["requests"] == 5  # only the not_ready row went again


# -- validation and unknown 400s ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (400, {"classification": ["The selected classification is invalid."]}, "validation_error",
         "The selected classification is invalid."),
        (422, {"message": "The given data was invalid.",
               "errors": {"classification": ["The classification field is required."]}}, "validation_error",
         "The given data was invalid."),
        (422, {"classification": ["The classification field is required."]}, "validation_error",
         "The classification field is required."),
        (400, {"error": "Something we have never seen."}, "unknown_400", "Something we have never seen."),
    ],
    ids=["400-laravel-validation", "422-laravel-errors", "422-field-list", "400-unknown-error"],
)  # fmt: skip
async def test_validation_and_unknown_400_answers_are_rejected_once_and_never_retried(
    tmp_path: Path, status: int, body: dict[str, Any], code: str, message: str
) -> None:
    async with scripted(always(status, body)) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(i), "human") for i in range(3)], preflight=False, max_retries=3
        )
    assert summary.exit_code == 1
    assert (
        cells(ledger, "outcome", "error_code", "http_status", "attempts", "message")
        == [("rejected", code, status, 1, message)] * 3
    )
    assert len(server.overrides) == 3


# -- aborts: 401, 403, 3xx, 404, 405 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("emulator_config", "key", "status", "code"),
    [
        ({}, "not-the-demo-key", 401, "unauthorized"),
        ({"forbidden_keys": (DEMO_API_KEY,)}, DEMO_API_KEY, 403, "forbidden"),
    ],
    ids=["401", "403"],
)
async def test_refused_key_aborts_the_row_and_counts_every_unsent_row_not_attempted_with_exit_3(
    tmp_path: Path, emulator_factory, emulator_config: dict[str, Any], key: str, status: int, code: str
) -> None:
    emulator = await emulator_factory(unknown="classified", **emulator_config)
    summary, ledger = await run_rows(
        tmp_path, emulator.url, [(sha(i), "human") for i in range(6)], key=key, preflight=False
    )
    assert summary.exit_code == 3
    assert accounted_rows(tmp_path / "ledger.csv", 6) == ({"aborted": 1}, 5)  # the rest: no line, counted
    first = line(ledger, 0)
    assert (first["outcome"], first["error_code"], first["http_status"]) == ("aborted", code, status)
    assert first["message"] == {401: "Unauthorized", 403: "Forbidden"}[status]  # the server's words
    assert emulator.stats()["requests"] == 1
    assert emulator.overrides() == []


async def test_key_revoked_mid_run_aborts_what_is_left_and_keeps_what_was_accepted(tmp_path: Path) -> None:
    async def answer(_request: web.Request, _hit: Hit, _n: int) -> web.StreamResponse:
        if len(server.hits) <= 5:
            return web.json_response({"classification": "human"}, status=201)
        return web.json_response({"error": "Unauthorized"}, status=401)

    async with scripted(answer) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(i), "human") for i in range(40)], preflight=False, concurrency=4
        )
    assert summary.exit_code == 3
    outcomes, not_attempted = accounted_rows(tmp_path / "ledger.csv", 40)
    counts = ledger["error_code"].fillna("").value_counts().to_dict()
    assert outcomes == {"submitted": 5, "aborted": counts.get("unauthorized", 0)}
    assert 1 <= counts.get("unauthorized", 0) <= 4  # the requests in flight when the key went
    assert not_attempted == 40 - 5 - counts["unauthorized"]  # the rest: no line, counted
    assert len(server.hits) == 5 + counts["unauthorized"]


async def test_refused_key_at_preflight_sends_no_row_and_cli_exits_3_naming_the_401(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    result = await run_cli(
        "run", str(write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(5)])),
        "--ledger", str(tmp_path / "ledger.csv"), "--api-url", emulator.url, "--rate", "1000/s",
        env=cli_env("wrong-key"),
    )  # fmt: skip
    assert result.returncode == 3
    assert "401" in result.stderr + result.stdout
    assert accounted_rows(tmp_path / "ledger.csv", 5) == ({}, 5)  # no row attempted: none has a line
    assert emulator.stats()["requests"] == 1  # the empty-body preflight only
    assert emulator.overrides() == []


async def test_a_refused_key_is_the_first_thing_said_not_missing_rate_headers(
    tmp_path: Path, emulator_factory, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = await emulator_factory(unknown="classified")
    with caplog.at_level(logging.INFO, logger="batch_override"):
        summary, _ = await run_rows(tmp_path, emulator.url, [(sha(0), "human")], key="wrong-key", rate="auto")
    assert summary.exit_code == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings and "the API key was refused (401)" in warnings[0]
    assert not any("X-RateLimit" in text for text in warnings)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_aborts_with_exit_3_and_is_never_followed(tmp_path: Path, status: int) -> None:
    async def answer(request: web.Request, hit: Hit, _n: int) -> web.StreamResponse:
        if hit.path.startswith("/moved"):
            return web.json_response({"classification": "human"}, status=201)
        location = f"{request.app[SERVER].url}/moved{hit.path}"
        return web.Response(status=status, headers={"Location": location})

    async with scripted(answer) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(i), "human") for i in range(4)], preflight=False
        )
    assert summary.exit_code == 3
    first = line(ledger, 0)
    assert (first["outcome"], first["error_code"], first["http_status"]) == ("aborted", "redirect", status)
    assert accounted_rows(tmp_path / "ledger.csv", 4) == ({"aborted": 1}, 3)  # the rest: no line, counted
    assert [h for h in server.hits if h.path.startswith("/moved")] == []
    assert len(server.hits) == 1


async def test_redirect_at_preflight_is_not_followed_either(tmp_path: Path) -> None:
    async def answer(request: web.Request, hit: Hit, _n: int) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": f"{request.app[SERVER].url}/moved"})

    async with scripted(answer) as server:
        summary, _ = await run_rows(tmp_path, server.url, [(sha(0), "human"), (sha(1), "human")])
    assert summary.exit_code == 3
    assert accounted_rows(tmp_path / "ledger.csv", 2) == ({}, 2)  # no row attempted: none has a line
    assert server.to("/moved") == []


async def test_wrong_api_url_path_answered_404_aborts_with_exit_3(tmp_path: Path, emulator_factory) -> None:
    emulator = await emulator_factory(unknown="classified")
    summary, ledger = await run_rows(
        tmp_path, emulator.url + "/v2", [(sha(i), "human") for i in range(3)], preflight=False
    )
    assert summary.exit_code == 3
    first = line(ledger, 0)
    assert (first["outcome"], first["error_code"], first["http_status"]) == ("aborted", "not_found", 404)
    assert accounted_rows(tmp_path / "ledger.csv", 3) == ({"aborted": 1}, 2)  # the rest: no line, counted
    assert emulator.overrides() == []


async def test_wrong_api_url_stops_at_the_preflight_with_exit_3_and_a_hint(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified")
    ledger = tmp_path / "ledger.csv"
    result = await run_cli(
        "run", str(write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(3)])),
        "--ledger", str(ledger), "--api-url", emulator.url + "/api/v2", "--rate", "1000/s", env=cli_env(),
    )  # fmt: skip
    assert result.returncode == 3
    assert "--api-url" in result.stdout + result.stderr
    assert accounted_rows(ledger, 3) == ({}, 3)  # no row attempted: none has a line
    assert emulator.overrides() == []


async def test_method_not_allowed_405_aborts_with_exit_3(tmp_path: Path) -> None:
    async with scripted(always(405, {"message": "The POST method is not supported for route."})) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(i), "human") for i in range(3)], preflight=False
        )
    assert summary.exit_code == 3
    first = line(ledger, 0)
    assert (first["outcome"], first["error_code"], first["http_status"]) == (
        "aborted",
        "method_not_allowed",
        405,
    )
    assert accounted_rows(tmp_path / "ledger.csv", 3) == ({"aborted": 1}, 2)  # the rest: no line, counted
    assert len(server.hits) == 1


# -- 429 -----------------------------------------------------------------------------------------------------


async def test_throttled_row_waits_retry_after_then_succeeds_without_spending_a_retry(tmp_path: Path) -> None:
    async def answer(_request: web.Request, _hit: Hit, n: int) -> web.StreamResponse:
        if n == 0:
            return web.json_response(
                {"message": "Too Many Attempts."}, status=429, headers={"Retry-After": "1"}
            )
        return web.json_response({"classification": "human", "type": "video"}, status=201)

    async with scripted(answer) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(0), "human")], preflight=False, max_retries=0
        )
    assert summary.exit_code == 0
    assert cells(ledger, "outcome", "http_status") == [("submitted", 201)]
    first, second = server.hits
    assert second.at - first.at >= 0.95  # the Retry-After second was honoured


async def test_rows_throttled_by_the_emulator_are_all_submitted_in_the_end(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="classified", rate_limit=(2, 1.0))
    summary, ledger = await run_rows(
        tmp_path, emulator.url, [(sha(i), "human") for i in range(4)],
        concurrency=4, max_retries=0, preflight=False,
    )  # fmt: skip
    assert summary.exit_code == 0
    assert set(ledger["outcome"]) == {"submitted"}
    assert len(emulator.overrides()) == 4


async def test_retry_after_longer_than_max_wait_ends_the_run_with_exit_5(tmp_path: Path) -> None:
    async with scripted(always(429, {"message": "Too Many Attempts."}, {"Retry-After": "3600"})) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(i), "human") for i in range(3)], preflight=False, max_wait=5
        )
    assert summary.exit_code == 5
    assert cells(ledger, "row", "outcome", "error_code") == [(0, "failed", "rate_limited")]
    assert accounted_rows(tmp_path / "ledger.csv", 3) == ({"failed": 1}, 2)  # the rest: no line, counted
    assert len(server.hits) == 1


# -- transient failures: 5xx, timeout, dropped or reset connection, non-JSON ------------------------------


async def _hang(request: web.Request, _hit: Hit, _n: int) -> web.StreamResponse:
    """Answer only when the server stops: the client's --timeout runs out first."""
    await request.app[SERVER].release.wait()
    return web.json_response({}, status=201)


async def _reset(request: web.Request, _hit: Hit, _n: int) -> web.StreamResponse:
    """Close the connection with a TCP RST (SO_LINGER 0), without an answer."""
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return web.Response(status=204)


async def _drop(request: web.Request, _hit: Hit, _n: int) -> web.StreamResponse:
    """Close the connection cleanly (FIN) without an answer."""
    assert request.transport is not None
    request.transport.close()
    return web.Response(status=204)


HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"

TRANSIENT = {
    "500-json": (always(500, {"message": "Server Error"}), "server_error", 500),
    "502-html": (always(502, HTML_502), "server_error", 502),
    "503-json": (always(503, {"message": "Service Unavailable"}), "server_error", 503),
    "504-empty": (always(504, b""), "server_error", 504),
    "400-non-json": (always(400, "<html><body>Bad Request</body></html>"), "server_error", 400),
    "timeout": (_hang, "timeout", ""),
    "connection-dropped": (_drop, "connection_error", ""),
    "connection-reset": (_reset, "connection_error", ""),
}


@pytest.mark.parametrize("kind", list(TRANSIENT))
async def test_transient_failure_is_retried_then_failed_when_retries_run_out(
    tmp_path: Path, kind: str
) -> None:
    answer, code, status = TRANSIENT[kind]
    async with scripted(answer) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(0), "human")], preflight=False, max_retries=2, timeout=0.3
        )
    assert summary.exit_code == 1
    assert cells(ledger, "outcome", "error_code", "http_status", "attempts") == [("failed", code, status, 3)]
    assert len(server.hits) == 3


async def test_transient_failures_of_several_rows_spend_each_rows_own_retries(tmp_path: Path) -> None:
    """Failing rows between good ones: each failing row ends failed after 1 + max_retries attempts."""
    bad = {sha(i) for i in (0, 2, 4)}

    async def answer(_request: web.Request, hit: Hit, _n: int) -> web.StreamResponse:
        if hit.hash in bad:
            return web.json_response({"message": "Server Error"}, status=500)
        return web.json_response({"classification": "human"}, status=201)

    async with scripted(answer) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(i), "human") for i in range(6)], preflight=False, max_retries=2
        )
    assert summary.exit_code == 1
    assert cells(ledger, "outcome", "attempts") == [("failed", 3), ("submitted", 1)] * 3


@pytest.mark.parametrize("kind", ["503-json", "502-html", "connection-dropped", "400-non-json"])
async def test_transient_failure_followed_by_201_ends_submitted(tmp_path: Path, kind: str) -> None:
    first_answer = TRANSIENT[kind][0]

    async def answer(request: web.Request, hit: Hit, n: int) -> web.StreamResponse:
        if n == 0:
            return await first_answer(request, hit, n)
        return web.json_response({"classification": "human"}, status=201)

    async with scripted(answer) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(0), "human")], preflight=False, max_retries=2
        )
    assert summary.exit_code == 0
    assert cells(ledger, "outcome", "http_status", "attempts") == [("submitted", 201, 2)]


async def test_emulator_dropping_after_recording_is_retried_and_ends_already_submitted(
    tmp_path: Path, emulator_factory
) -> None:
    # Seed 7 at 0.3 drops 11 of the 20 rows' first answers, never 3 requests in a row (no outage).
    emulator = await emulator_factory(unknown="classified", drop_after_record_rate=0.3, seed=7)
    rows = [(sha(i), "human") for i in range(20)]
    summary, ledger = await run_rows(tmp_path, emulator.url, rows, max_retries=5)
    assert summary.exit_code == 0
    outcomes = ledger["outcome"].value_counts().to_dict()
    assert outcomes == {"already_submitted": 11, "submitted": 9}
    assert (ledger[ledger["outcome"] == "already_submitted"]["attempts"] >= 2).all()
    assert len(emulator.overrides()) == 20


async def test_always_failing_server_with_max_retries_2_fails_the_row_after_3_attempts(
    tmp_path: Path,
) -> None:
    async with scripted(always(500, {"message": "Server Error"})) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(0), "human")], preflight=False, max_retries=2, max_outage=1.0
        )
    assert cells(ledger, "outcome", "error_code", "attempts") == [("failed", "server_error", 3)]
    assert summary.exit_code == 1
    assert len(server.hits) == 3


async def test_always_failing_server_ends_in_an_outage_exit_5_with_every_row_accounted_for(
    tmp_path: Path,
) -> None:
    async with scripted(always(500, {"message": "Server Error"})) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(i), "human") for i in range(5)],
            preflight=False, max_retries=2, max_outage=0.5,
        )  # fmt: skip
    assert summary.exit_code == 5
    outcomes, _ = accounted_rows(tmp_path / "ledger.csv", 5)  # a line each, or counted not_attempted
    assert set(outcomes) <= {"failed", "aborted"}
    assert line(ledger, 0)["error_code"] == "server_error"


async def test_201_is_submitted_whatever_its_body(tmp_path: Path) -> None:
    async with scripted(always(201, b"")) as server:
        summary, ledger = await run_rows(tmp_path, server.url, [(sha(0), "human")], preflight=False)
    assert summary.exit_code == 0
    assert cells(ledger, "outcome", "http_status", "attempts") == [("submitted", 201, 1)]


def huge(status: int, *, chunked: bool) -> Answer:
    """A JSON answer of 4 MiB, with a Content-Length or (``chunked``) without one."""
    body = (
        b'{"error": "You have already submitted a report for this content.", "pad": "'
        + b"x" * (4 << 20)
        + b'"}'
    )

    async def answer(request: web.Request, _hit: Hit, _n: int) -> web.StreamResponse:
        if not chunked:
            return web.Response(status=status, body=body, content_type="application/json")
        resp = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):  # the client stops reading past its cap
            for at in range(0, len(body), 1 << 16):
                await resp.write(body[at : at + (1 << 16)])
            await resp.write_eof()
        return resp

    return answer


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_answer_body_over_1_mib_is_not_parsed_and_fails_the_row_as_http(
    tmp_path: Path, chunked: bool
) -> None:
    async with scripted(huge(400, chunked=chunked)) as server:
        summary, ledger = await run_rows(tmp_path, server.url, [(sha(0), "human")], preflight=False)
    assert summary.exit_code == 1
    assert cells(ledger, "outcome", "error_code", "http_status", "attempts") == [("failed", "http", 400, 1)]
    assert "1 MiB" in line(ledger, 0)["message"]


async def test_a_201_with_a_body_over_1_mib_is_still_submitted(tmp_path: Path) -> None:
    async with scripted(huge(201, chunked=True)) as server:
        summary, ledger = await run_rows(tmp_path, server.url, [(sha(0), "human")], preflight=False)
    assert summary.exit_code == 0
    assert cells(ledger, "outcome", "http_status") == [("submitted", 201)]


async def test_multi_line_server_message_stays_on_one_ledger_line(tmp_path: Path) -> None:
    text = 'Something went wrong:\nfirst reason,\r\nsecond "reason"'
    async with scripted(always(400, {"error": text})) as server:
        _summary, ledger = await run_rows(tmp_path, server.url, [(sha(0), "human")], preflight=False)
    assert cells(ledger, "outcome", "error_code", "message") == [
        ("rejected", "unknown_400", 'Something went wrong: first reason, second "reason"')
    ]
    assert len((tmp_path / "ledger.csv").read_text(encoding="utf-8").splitlines()) == 2


# -- any other status ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (418, {"message": "I'm a teapot"}),
        (200, {"classification": "human"}),
        (202, {"queued": True}),
        (200, "<html><title>Welcome to the hotel wifi</title></html>"),
    ],
)
async def test_unexpected_status_is_failed_with_http_status_code_and_not_retried(
    tmp_path: Path, status: int, body: object
) -> None:
    async with scripted(always(status, body)) as server:
        summary, ledger = await run_rows(
            tmp_path, server.url, [(sha(0), "human"), (sha(1), "human")], preflight=False, max_retries=3
        )
    assert summary.exit_code == 1
    assert (
        cells(ledger, "outcome", "error_code", "http_status", "attempts")
        == [("failed", f"http_{status}", status, 1)] * 2
    )
    assert len(server.hits) == 2


# -- matching the 400 texts ----------------------------------------------------------------------------------

VARIANTS = [
    ("video", "YOU HAVE ALREADY SUBMITTED A REPORT FOR THIS CONTENT", "already_submitted", ""),
    ("image", "you have already submitted a report for this image!", "already_submitted", ""),
    ("image", "This Image was not classified yet", "not_ready", "not_classified"),
    ("audio", "this audio was NOT classified yet...", "not_ready", "not_classified"),
    ("audio", "No completed request for this Audio exists", "not_ready", "no_completed_request"),
    ("image", "no completed  request for this image exists.", "not_ready", "no_completed_request"),
    ("video", "You haven\u2019t got any request for this content.", "rejected", "no_request"),
    ("image", "YOU HAVEN'T GOT ANY REQUEST FOR THIS IMAGE", "rejected", "no_request"),
    ("audio", "Is no longer possible to send a report for this audio.", "rejected", "no_longer_possible"),
    ("image", "It is no longer possible to send a report for this Image", "rejected", "no_longer_possible"),
]


async def test_refusal_texts_match_whatever_case_punctuation_and_media_word(tmp_path: Path) -> None:
    by_hash = {sha(f"variant-{i}"): text for i, (_m, text, _o, _c) in enumerate(VARIANTS)}

    async def answer(_request: web.Request, hit: Hit, _n: int) -> web.StreamResponse:
        return web.json_response({"error": by_hash[hit.hash]}, status=400)

    rows = [(sha(f"variant-{i}"), "human", media) for i, (media, *_rest) in enumerate(VARIANTS)]
    async with scripted(answer) as server:
        _summary, ledger = await run_rows(
            tmp_path, server.url, rows, header=("hash", "classification", "media"), preflight=False
        )
    assert cells(ledger, "media", "outcome", "error_code", "message") == [
        (media, outcome, code, text + (ALREADY_SUBMITTED_NOTE if outcome == "already_submitted" else ""))
        for media, text, outcome, code in VARIANTS
    ]
    assert [h.media for h in server.hits] == [media for media, *_rest in VARIANTS]


# -- exit codes -----------------------------------------------------------------------------------------


async def test_exit_code_is_1_when_any_row_is_not_a_success_and_0_when_all_are(
    tmp_path: Path, emulator_factory
) -> None:
    emulator = await emulator_factory(unknown="no_request", states={("video", sha(0)): "classified"})
    good = write_csv(tmp_path / "good.csv", [(sha(0), "human"), (sha(0), "human")])
    mixed = write_csv(tmp_path / "mixed.csv", [(sha(0), "human"), (sha(1), "human")])
    common = ("--api-url", emulator.url, "--rate", "1000/s", "--backoff-base", "0.01")
    ok = await run_cli("run", str(good), "--ledger", str(tmp_path / "a.csv"), *common)
    assert ok.returncode == 0, ok.stderr
    some = await run_cli("run", str(mixed), "--ledger", str(tmp_path / "b.csv"), *common)
    assert some.returncode == 1, some.stderr
    assert cells(read_ledger(tmp_path / "b.csv"), "outcome") == [("already_submitted",), ("rejected",)]


async def test_server_down_from_the_start_ends_in_exit_5_with_every_row_not_attempted(
    tmp_path: Path,
) -> None:
    async with scripted(always(503, {"message": "Service Unavailable"})) as server:
        summary, _ = await run_rows(
            tmp_path, server.url, [(sha(i), "human") for i in range(5)], concurrency=4, max_outage=0.3
        )
    assert summary.exit_code == 5
    assert accounted_rows(tmp_path / "ledger.csv", 5) == ({}, 5)  # no row attempted: none has a line
    assert {h.body for h in server.hits} == {b"{}"}  # only the preflight's empty body went out

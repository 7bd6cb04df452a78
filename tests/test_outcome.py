"""The one table that says what an answer means, asked directly: every documented answer, and the
answers proxies and odd servers give instead."""

from __future__ import annotations

import json

import pytest

from batch_override.outcome import (
    ALREADY_SUBMITTED_NOTE,
    DECISIVE_OUTCOMES,
    DONE_OUTCOMES,
    RETRY_OUTCOMES,
    SUCCESS_OUTCOMES,
    Action,
    ErrorCode,
    Outcome,
    classify_response,
    status_code,
    transport_failure,
)


def body(obj: object) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize("media", ["image", "video", "audio"])
@pytest.mark.parametrize(
    ("text", "outcome", "code", "action"),
    [
        ("You have already submitted a report for this content.", "already_submitted", "", Action.DONE),
        ("You haven't got any request for this content.", "rejected", "no_request", Action.DONE),
        ("This {m} was not classified yet.", "not_ready", "not_classified", Action.DONE),
        ("No completed request for this {m} exists.", "not_ready", "no_completed_request", Action.DONE),
        (
            "Is no longer possible to send a report for this {m}.",
            "rejected",
            "no_longer_possible",
            Action.DONE,
        ),
    ],
)
def test_every_documented_400_text_maps_to_its_outcome_for_every_media(
    media: str, text: str, outcome: str, code: str, action: Action
) -> None:
    verdict = classify_response(400, body({"error": text.format(m=media)}))
    assert (verdict.outcome.value, verdict.error_code, verdict.action) == (outcome, code, action)
    # The server's words; for already_submitted, plus what it does not say (which class it holds).
    note = ALREADY_SUBMITTED_NOTE if outcome == "already_submitted" else ""
    assert verdict.message == text.format(m=media) + note


def test_already_submitted_is_a_success_whatever_the_case_and_punctuation() -> None:
    verdict = classify_response(400, body({"error": "you have ALREADY submitted a report!!"}))
    assert verdict.outcome is Outcome.ALREADY_SUBMITTED


def test_a_201_is_submitted_without_reading_its_body() -> None:
    assert classify_response(201, b"not json at all").outcome is Outcome.SUBMITTED


@pytest.mark.parametrize(
    "payload",
    [
        {"classification": ["The classification field is required."]},
        {"classification": ["The selected classification is invalid."]},
        {"message": "The given data was invalid.", "errors": {"classification": ["x"]}},
    ],
)
def test_laravel_validation_errors_are_rejected_as_a_client_bug(payload: object) -> None:
    verdict = classify_response(400, body(payload))
    assert (verdict.outcome, verdict.error_code, verdict.action) == (
        Outcome.REJECTED,
        "validation_error",
        Action.DONE,
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "unauthorized"), (403, "forbidden"), (404, "not_found"), (405, "method_not_allowed")],
)
def test_answers_that_no_other_row_can_beat_abort_the_run(status: int, code: str) -> None:
    verdict = classify_response(status, body({"error": "x"}))
    assert (verdict.outcome, verdict.error_code, verdict.action) == (Outcome.ABORTED, code, Action.ABORT)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_never_followed_and_aborts(status: int) -> None:
    verdict = classify_response(status, b"")
    assert (verdict.error_code, verdict.action) == ("redirect", Action.ABORT)


def test_a_429_is_throttled_not_a_retry_or_a_failure_of_the_row() -> None:
    verdict = classify_response(429, body({"message": "Too Many Attempts."}))
    assert (verdict.error_code, verdict.action) == ("rate_limited", Action.THROTTLED)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_proxy_html_error_page_is_a_transient_server_error_with_its_title(status: int) -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    verdict = classify_response(status, page)
    assert (verdict.error_code, verdict.action) == ("server_error", Action.RETRY)
    assert "502 Bad Gateway" in verdict.message


def test_a_400_that_is_not_json_is_retried_as_a_proxy_answer() -> None:
    verdict = classify_response(400, b"<html>Bad Request</html>")
    assert (verdict.error_code, verdict.action) == ("server_error", Action.RETRY)


def test_an_unknown_400_error_text_is_rejected_with_the_server_words_kept() -> None:
    verdict = classify_response(400, body({"error": "Something new happened."}))
    assert (verdict.outcome, verdict.error_code) == (Outcome.REJECTED, "unknown_400")
    assert verdict.message == "Something new happened."


def test_a_non_json_2xx_is_failed_with_its_status_and_not_retried() -> None:
    verdict = classify_response(200, b"OK")
    assert (verdict.outcome, verdict.error_code, verdict.action) == (Outcome.FAILED, "http_200", Action.DONE)


def test_a_request_without_an_answer_is_retried() -> None:
    verdict = transport_failure(ErrorCode.TIMEOUT, "no answer in 30s")
    assert (verdict.outcome, verdict.action) == (Outcome.FAILED, Action.RETRY)


def test_the_error_codes_written_to_the_ledger_never_change() -> None:
    # The ledger's error_code column is a format users filter on: a renamed value breaks them.
    assert sorted(c.value for c in ErrorCode) == sorted(
        [
            "", "not_classified", "no_completed_request", "no_request", "no_longer_possible",
            "validation_error", "unauthorized", "forbidden", "not_found", "method_not_allowed",
            "redirect", "tls_error", "rate_limited", "server_error", "timeout", "connection_error",
            "http", "invalid_row", "conflicting_classifications", "previously_rejected",
            "classification_locked", "gave_up", "not_sent", "interrupted", "deadline",
        ]
    )  # fmt: skip
    assert status_code(ErrorCode.HTTP, 418) == "http_418"


def test_outcome_sets_split_the_decisive_lines_into_done_rejected_and_retry() -> None:
    assert DONE_OUTCOMES | {Outcome.REJECTED} | RETRY_OUTCOMES == DECISIVE_OUTCOMES
    assert not DONE_OUTCOMES & RETRY_OUTCOMES
    assert DONE_OUTCOMES <= SUCCESS_OUTCOMES
    assert not RETRY_OUTCOMES & SUCCESS_OUTCOMES
    assert Outcome.REJECTED not in SUCCESS_OUTCOMES
    # Lines about the input, not the server: resume passes over them.
    assert not {Outcome.INVALID, Outcome.DUPLICATE, Outcome.CONFLICT, Outcome.PLANNED} & DECISIVE_OUTCOMES

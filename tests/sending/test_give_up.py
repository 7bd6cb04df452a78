"""--give-up-after asked directly: which rows are recorded rejected/gave_up (no server, no clock)."""

from __future__ import annotations

import math

from batch_override.outcome import Action, ErrorCode, Outcome, Verdict
from batch_override.sending.retry import give_up

DAY = 86400.0
NOW = 1_780_000_000.0
NOT_READY = Verdict(
    Outcome.NOT_READY, ErrorCode.NOT_CLASSIFIED, Action.DONE, "This image was not classified yet."
)


def test_a_row_not_ready_for_longer_than_the_limit_is_given_up_with_the_server_words_kept() -> None:
    kept = give_up(NOT_READY, first_seen=NOW - 8 * DAY, now=NOW, days=7)
    assert (kept.outcome, kept.error_code, kept.action) == (Outcome.REJECTED, ErrorCode.GAVE_UP, Action.DONE)
    since = "2026-05-20"  # NOW - 8 days, UTC
    assert kept.message == (
        f"not ready since {since}; gave up after 7 days (--give-up-after): This image was not classified yet."
    )


def test_a_row_not_ready_within_the_limit_keeps_its_verdict() -> None:
    assert give_up(NOT_READY, first_seen=NOW - 6.9 * DAY, now=NOW, days=7) is NOT_READY
    assert give_up(NOT_READY, first_seen=NOW - 7 * DAY, now=NOW, days=7) is NOT_READY  # "over" the limit


def test_without_the_option_a_row_is_never_given_up() -> None:
    assert give_up(NOT_READY, first_seen=NOW - 1000 * DAY, now=NOW, days=None) is NOT_READY


def test_a_key_never_ledgered_before_is_never_given_up_on_its_first_run() -> None:
    assert give_up(NOT_READY, first_seen=math.nan, now=NOW, days=0.5) is NOT_READY


def test_only_not_ready_rows_are_given_up() -> None:
    for verdict in (
        Verdict(Outcome.SUBMITTED, ErrorCode.NONE, Action.DONE),
        Verdict(Outcome.REJECTED, ErrorCode.NO_REQUEST, Action.DONE, "no request"),
        Verdict(Outcome.FAILED, ErrorCode.SERVER_ERROR, Action.RETRY, "HTTP 503"),
    ):
        assert give_up(verdict, first_seen=NOW - 100 * DAY, now=NOW, days=1) is verdict


def test_a_fraction_of_a_day_is_a_limit_too() -> None:
    kept = give_up(NOT_READY, first_seen=NOW - 0.3 * DAY, now=NOW, days=0.25)
    assert kept.error_code == ErrorCode.GAVE_UP
    assert "gave up after 0.25 days" in kept.message

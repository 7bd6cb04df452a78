"""Rate-limit headers read defensively: sane numbers or None, one warning per mangled header,
and both forms of Retry-After.  Pure: the wall clock is passed in."""

from __future__ import annotations

import email.utils
import logging

import pytest

from batch_override.pacing.rate_headers import ABSURD, HeaderReader, RateHeaders, retry_after_seconds

NOW = 1_700_000_000.0


def test_laravels_headers_are_read_as_numbers_and_retry_after_only_on_a_429() -> None:
    headers = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "Retry-After": "17"}
    reader = HeaderReader()
    assert reader.read(headers, 429) == RateHeaders(60, 0, 17.0)
    assert reader.read(headers, 201) == RateHeaders(60, 0, None)
    assert reader.read({}, 201) == RateHeaders()


@pytest.mark.parametrize(
    "value",
    ["sixty", "1.5", "-3", "", " ", "١٢", str(ABSURD + 1), "9" * 30, "10" + "0" * 20],
)
def test_an_absurd_count_is_absent_rather_than_a_crash(value: str) -> None:
    assert HeaderReader().read({"X-RateLimit-Limit": value}, 201).limit is None


def test_a_limit_of_zero_or_a_remaining_over_the_limit_is_absent() -> None:
    reader = HeaderReader()
    assert reader.read({"X-RateLimit-Limit": "0"}, 201).limit is None
    got = reader.read({"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "9"}, 201)
    assert got == RateHeaders(5, None, None)


def test_a_mangled_header_is_warned_about_once_per_name_and_never_with_more_than_40_characters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = HeaderReader()
    with caplog.at_level(logging.WARNING, logger="batch_override"):
        for _ in range(3):
            reader.read({"X-RateLimit-Limit": "x" * 500, "X-RateLimit-Remaining": "-1"}, 201)
    assert len(caplog.records) == 2
    assert all(len(r.getMessage()) < 120 for r in caplog.records)


def test_retry_after_as_an_http_date_is_read_against_our_clock_and_clamped_at_zero() -> None:
    # The trap: the date form is the server's clock; a date in our past means wait no longer.
    later = email.utils.formatdate(NOW + 30, usegmt=True)
    earlier = email.utils.formatdate(NOW - 30, usegmt=True)
    assert retry_after_seconds({"Retry-After": later}, NOW) == 30.0
    assert retry_after_seconds({"Retry-After": earlier}, NOW) == 0.0


def test_a_date_without_a_zone_or_unparseable_falls_back_to_the_reset_time() -> None:
    headers = {"Retry-After": "Tue, 14 Nov 2023 22:13:50", "X-RateLimit-Reset": str(int(NOW) + 12)}
    assert retry_after_seconds(headers, NOW) == 12.0
    assert retry_after_seconds({"Retry-After": "soon"}, NOW) is None
    assert retry_after_seconds({"X-RateLimit-Reset": str(int(NOW) - 5)}, NOW) == 0.0
    assert retry_after_seconds({"X-RateLimit-Reset": "9" * 13}, NOW) is None


def test_retry_after_seconds_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="batch_override"):
        assert retry_after_seconds({"Retry-After": "-1"}, NOW) is None
    assert caplog.records == []


@pytest.mark.parametrize("skew", [-60.0, 60.0])
def test_a_date_is_read_against_the_answers_own_date_header_whatever_our_clock(skew: float) -> None:
    # The server's clock is ``skew`` seconds off ours; its Date header says so. Against our clock
    # a date 30 s ahead of the server read 0 s (behind) or 90 s (ahead: --max-wait exited 5).
    server = NOW + skew
    date = email.utils.formatdate(server, usegmt=True)
    retry = {"Date": date, "Retry-After": email.utils.formatdate(server + 30, usegmt=True)}
    reset = {"Date": date, "X-RateLimit-Reset": str(int(server) + 30)}
    assert retry_after_seconds(retry, NOW) == 30.0
    assert retry_after_seconds(reset, NOW) == 30.0
    assert HeaderReader().read(retry, 429) == RateHeaders(None, None, 30.0, dated=True)


def test_retry_after_in_seconds_is_not_dated_and_zero_keeps_its_meaning() -> None:
    # Laravel on Redis at a window's end: ``Retry-After: 0`` is a real, undated answer.
    assert HeaderReader().read({"Retry-After": "0"}, 429) == RateHeaders(None, None, 0.0, dated=False)


def test_an_unreadable_date_header_falls_back_to_our_clock() -> None:
    later = email.utils.formatdate(NOW + 30, usegmt=True)
    assert retry_after_seconds({"Date": "yesterday", "Retry-After": later}, NOW) == 30.0

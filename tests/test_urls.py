"""One rule for every URL the job is given (:mod:`batch_override.urls`): what each option takes,
what it refuses in one line, and that a message names a URL by its scheme and host alone."""

from __future__ import annotations

import pytest

from batch_override import urls
from batch_override.errors import BatchOverrideError, UsageError

SECRET = "SENTINEL-pw"
RULES = [urls.API_URL, urls.PING_URL, urls.PUSHGATEWAY, urls.endpoint("--s3-endpoint")]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.flag)
@pytest.mark.parametrize(
    "url",
    [
        f"http://user:{SECRET}@127.0.0.1:9091",
        f"http://user:{SECRET}/x@127.0.0.1:9091",  # a / in the password ends urlsplit's host part
        f"http://user:{SECRET}#x@127.0.0.1:9091",
        f"http://user:{SECRET}@[::1",  # and malformed
        f"user:{SECRET}@127.0.0.1:9091",
    ],
)
def test_credentials_are_refused_without_being_echoed(rule: urls.Rule, url: str) -> None:
    with pytest.raises(UsageError) as refused:
        urls.check_url(rule, url)
    assert SECRET not in str(refused.value)
    assert rule.flag in str(refused.value) and "credentials" in str(refused.value)


def test_the_pushgateway_refusal_says_where_its_credentials_come_from() -> None:
    with pytest.raises(UsageError, match="PUSHGATEWAY_USERNAME and PUSHGATEWAY_PASSWORD"):
        urls.check_url(urls.PUSHGATEWAY, f"https://ops:{SECRET}@push.example.com")


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.flag)
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://127.0.0.1:90x", "Port could not be cast"),
        ("http://exa mple.com", "expected"),
        ("ftp://127.0.0.1", "expected"),
    ],
)
def test_a_malformed_url_is_one_usage_error(rule: urls.Rule, url: str, why: str) -> None:
    with pytest.raises(UsageError) as refused:
        urls.check_url(rule, url)
    message = str(refused.value)
    assert message.startswith(rule.flag) and why in message and "\n" not in message


@pytest.mark.parametrize(
    ("rule", "url"),
    [
        (urls.API_URL, "https://backend.identifai.net"),
        (urls.API_URL, "http://127.0.0.1:8000/base/"),
        (urls.API_URL, "http://[::1]:8000"),
        (urls.PING_URL, "https://hc-ping.com/5f3e2f0e-uuid"),
        (urls.PUSHGATEWAY, "pushgateway:9091"),
        (urls.PUSHGATEWAY, "http://pushgateway.monitoring.svc:9091"),
        (urls.endpoint("--s3-endpoint"), "http://localhost:9000"),
    ],
)
def test_the_urls_each_option_takes(rule: urls.Rule, url: str) -> None:
    urls.check_url(rule, url)


def test_https_only_options_take_plain_http_for_loopback_hosts_only() -> None:
    for rule in (urls.API_URL, urls.endpoint("--gcs-endpoint")):
        with pytest.raises(UsageError, match="loopback"):
            urls.check_url(rule, "http://example.com")
    urls.check_url(urls.PING_URL, "http://example.com/ping")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hc-ping.com/secret-uuid?x=1#y", "https://hc-ping.com"),
        (f"http://user:{SECRET}@gw:9091/path", "http://gw:9091"),
        (f"http://user:{SECRET}/x@gw:9091", "http://gw:9091"),
        ("gw:9091", "gw:9091"),
        ("http://[::1", "http://[::1"),
        (None, "<NoneType>"),
    ],
)
def test_where_renders_the_scheme_and_host_only(url: object, shown: str) -> None:
    assert urls.where(url) == shown


@pytest.mark.parametrize(
    "uri",
    [
        f"s3://AKIA:{SECRET}@bucket/c.csv",
        f"s3://AKIA:{SECRET}/x@bucket/c.csv",  # AWS secrets often hold a /
        f"gs://user@bucket/{SECRET}.csv",
    ],
)
def test_an_object_uri_with_credentials_is_refused_without_echo(uri: str) -> None:
    with pytest.raises(UsageError) as refused:
        urls.object_parts(uri)
    assert SECRET not in str(refused.value)


def test_an_object_key_may_hold_an_at_sign() -> None:
    assert urls.object_parts("s3://bucket/exports/user@example.com.csv") == (
        "s3",
        "bucket",
        "exports/user@example.com.csv",
    )


@pytest.mark.parametrize("uri", ["s3://[", "gs://[bucket/c.csv", "s3://bucket/", "s3://bucket/c.csv?v=1"])
def test_a_malformed_object_uri_is_one_line_exit_2(uri: str) -> None:
    with pytest.raises(BatchOverrideError) as refused:
        urls.object_parts(uri)
    assert refused.value.exit_code == 2 and "\n" not in str(refused.value)

"""Every URL the job is given, checked and rendered in one place.

``--api-url``, ``--ping-url``, ``--pushgateway``, ``--s3-endpoint`` / ``--gcs-endpoint`` (one
:class:`Rule` each) and ``s3://`` / ``gs://`` inputs (:func:`object_parts`).

Contract:
- :func:`check_url` raises :class:`~.errors.UsageError` (exit 2, one line) for a URL its rule
  refuses: credentials (``user:password@``), a scheme or host it cannot use, a query, or a URL
  that does not parse (a port out of range, an unclosed ``[``).  The run checks them all while it
  builds its configuration: before the ledger's lock and before the run log's ``started`` record.
- :func:`where` renders ``scheme://host[:port]`` and nothing else: every message naming a URL the
  job was given goes through it (a ping URL's path is a capability; a query may hold a token).
- A credential is never echoed: the line says where credentials come from instead.

Traps:
- A password may hold ``/``, ``#`` or ``?`` (AWS secret keys often hold ``/``): ``urlsplit`` then
  ends the host part early, puts the rest of the password in the path and finds no ``@`` in
  the host part.  So an HTTP URL option holding ``@`` anywhere is refused as credentials, and
  :func:`where` keeps only what follows the last ``@``.
- An object's key may hold ``@`` (``exports/user@example.com.csv``), so an object URI is refused
  only when an ``@`` is in its bucket part or follows a ``:`` (``access:secret@bucket``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeGuard
from urllib.parse import SplitResult, urlsplit

from .errors import InputError, UsageError

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: The object stores an input URI may name.
OBJECT_SCHEMES = ("s3", "gs")
#: Longest host part :func:`where` renders (a message stays one readable line).
_SHOWN = 80
_AUTHORITY_END = re.compile(r"[/?#\\]")


@dataclass(frozen=True, slots=True)
class Rule:
    """What one URL option accepts.  ``credentials`` says where credentials come from instead (if
    anywhere);
    ``https_only``: plain http only for a loopback host (a secret travels with the request);
    ``path``: a path is allowed; ``bare``: ``HOST[:PORT]`` without a scheme reads as ``http://``."""

    flag: str
    expected: str
    credentials: str
    https_only: bool = True
    path: bool = True
    bare: bool = False


API_URL = Rule("--api-url", "https://HOST", "the API key comes from IDENTIFAI_API_KEY or --api-key-file")
PING_URL = Rule("--ping-url", "http(s)://HOST[/PATH]", "", https_only=False)
PUSHGATEWAY = Rule(
    "--pushgateway",
    "http(s)://HOST[:PORT]",
    "basic auth comes from PUSHGATEWAY_USERNAME and PUSHGATEWAY_PASSWORD",
    https_only=False,
    bare=True,
)


def endpoint(flag: str) -> Rule:
    """An object store's endpoint (``--s3-endpoint``, ``--gcs-endpoint``): ``https://HOST[:PORT]``."""
    return Rule(
        flag,
        "https://HOST[:PORT]",
        "they come from the provider's usual chain (environment, profile, role)",
        path=False,
    )


def where(url: object) -> str:
    """``scheme://host[:port]`` of ``url`` for a message: never credentials, path, query or
    fragment.  Never raises, whatever the text (a malformed URL is rendered as far as it goes)."""
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    host = _AUTHORITY_END.split(rest.rpartition("@")[2], maxsplit=1)[0][:_SHOWN]
    return f"{scheme[:10]}://{host}" if sep else host


def _split(rule: Rule, url: str) -> SplitResult:
    """``url`` taken apart, its port read; :class:`UsageError` when it does not parse."""
    text = url if "://" in url or not rule.bare else "http://" + url
    try:
        parts = urlsplit(text)
        _ = parts.port  # reads the port: out of range or not a number raises here, not at connect
    except ValueError as exc:
        raise UsageError(f"{rule.flag} {where(url)!r}: not a valid URL ({exc})") from None
    return parts


def _host_ok(host: str | None) -> bool:
    return bool(host) and all(c.isalnum() or c in "-._:%" for c in host or "")


def check_url(rule: Rule, url: object) -> None:
    """:class:`UsageError` (one line, the URL as :func:`where` renders it) unless ``rule`` takes ``url``."""
    if not isinstance(url, str):
        raise UsageError(f"{rule.flag} must be text, such as {rule.expected}")
    if "@" in url:  # never echoed (see the module's traps)
        instead = f"; {rule.credentials}" if rule.credentials else ""
        raise UsageError(f"{rule.flag} must not carry credentials (user:password@){instead}")
    parts = _split(rule, url)
    shown = f"{rule.flag} {where(url)!r}"
    if parts.scheme not in ("http", "https") or not _host_ok(parts.hostname):
        raise UsageError(f"{shown}: expected {rule.expected}")
    if rule.https_only and parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise UsageError(f"{shown}: plain http is allowed only for loopback hosts")
    if parts.query or parts.fragment:
        raise UsageError(f"{shown}: must not carry a query or fragment")
    if not rule.path and parts.path.strip("/"):
        raise UsageError(f"{shown}: expected {rule.expected}, without a path")


def is_object_uri(text: object) -> TypeGuard[str]:
    """Does ``text`` name an object (``s3://`` or ``gs://``) rather than a local file?"""
    return isinstance(text, str) and "://" in text and text.split("://", 1)[0].lower() in OBJECT_SCHEMES


def object_parts(text: str) -> tuple[str, str, str]:
    """``(scheme, bucket, key)`` of ``scheme://BUCKET/KEY`` naming one object.  Credentials are a
    :class:`UsageError` that does not echo them; any other misshape an :class:`InputError`."""
    scheme, _, rest = text.partition("://")
    before_at = rest.partition("@")[0]
    if "@" in rest and (":" in before_at or "/" not in before_at):
        # pyarrow would accept access:secret@bucket: the part before @ is a secret.
        raise UsageError(
            f"{scheme}:// URI must not carry credentials (user:secret@); they come from the "
            "provider's usual chain (environment, profile, role), or use --anonymous"
        )
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise InputError(f"{text}: not a valid {scheme}:// URI ({exc})") from None
    key = parts.path.lstrip("/")
    if not parts.netloc or not key or key.endswith("/"):
        raise InputError(f"{text}: expected {scheme}://BUCKET/KEY naming one object")
    if parts.query or parts.fragment:
        raise InputError(f"{text}: must not carry a query or fragment")
    return parts.scheme.lower(), parts.netloc, key


__all__ = [
    "API_URL",
    "LOOPBACK_HOSTS",
    "OBJECT_SCHEMES",
    "PING_URL",
    "PUSHGATEWAY",
    "Rule",
    "check_url",
    "endpoint",
    "is_object_uri",
    "object_parts",
    "where",
]

"""One HTTP attempt against an override endpoint, turned into a :class:`~.outcome.Verdict`.

Only validated 64-hex hashes reach :meth:`Client.url`; redirects are never followed (a followed
redirect would carry ``X-Api-Key`` to another host); TLS is verified (optionally against a CA
bundle); ``HTTPS_PROXY``/``NO_PROXY`` are honoured (resolved once per run, see :func:`env_proxy`).
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from ..apikey import ApiKey
from ..domain import CLASSIFICATIONS, ENDPOINTS, HASH_PATTERN
from ..errors import UsageError, first_line
from ..outcome import Action, ErrorCode, Outcome, Verdict, classify_response, transport_failure

BODIES = {c: json.dumps({"classification": c}, separators=(",", ":")).encode() for c in CLASSIFICATIONS}
EMPTY_BODY = b"{}"
_HASH = re.compile(HASH_PATTERN)
_NO_HEADERS: Mapping[str, str] = {}
#: The largest answer body read: the API's answers are under 1 KB, a proxy's error page ~10 KB.
MAX_BODY = 1 << 20
_TOO_BIG = Verdict(
    Outcome.FAILED, ErrorCode.HTTP, Action.DONE, f"the answer's body is over {MAX_BODY >> 20} MiB: not read"
)


@dataclass(frozen=True, slots=True)
class Answer:
    """An attempt's end.  Without an HTTP answer (``status`` None), ``detail`` says what
    happened in words a person acts on ("connection refused", "the name ... does not exist"),
    and ``no_such_host`` is True when the resolver said the name does not exist (``EAI_NONAME``;
    a resolver that could not answer, ``EAI_AGAIN``, is an outage, not a wrong name)."""

    verdict: Verdict
    status: int | None
    headers: Mapping[str, str]
    detail: str = ""
    no_such_host: bool = False


def user_agent() -> str:
    from .._version import __version__

    return f"batch-override/{__version__}"


def make_session(
    api_key: ApiKey,
    *,
    concurrency: int,
    timeout: float,
    ca_bundle: str | None = None,
    resolver: AbstractResolver | None = None,
) -> aiohttp.ClientSession:
    """The run's session: the key in a header, TLS verified, no redirect followed.  ``resolver``
    (default: aiohttp's, the system's ``getaddrinfo`` in a thread) is a test's seam."""
    ssl_context: ssl.SSLContext | bool = True
    if ca_bundle:
        # Added to the system's authorities (create_default_context(cafile=...) would load the
        # bundle *instead*, and a proxy or API certificate from a public CA would stop verifying).
        ssl_context = ssl.create_default_context()
        try:
            ssl_context.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"--ca-bundle {ca_bundle}: cannot load ({first_line(exc)})") from None
    connector = aiohttp.TCPConnector(
        limit=concurrency, ssl=ssl_context, enable_cleanup_closed=True, resolver=resolver
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={
            "X-Api-Key": api_key.header_value(),
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": user_agent(),
        },
        # Not trust_env: aiohttp would then look up ~/.netrc and the proxy environment for every
        # request, each in a worker thread (several times the CPU per row; see BENCHMARKS.md).
        # The proxy is resolved once instead (env_proxy), and the API authenticates by header,
        # never by netrc.
        trust_env=False,
        raise_for_status=False,
    )


def env_proxy(api_url: str) -> tuple[str | None, aiohttp.BasicAuth | None]:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY`` name for ``api_url``, unless ``NO_PROXY`` exempts it."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(api_url))
    except LookupError:
        return None, None
    return str(proxy), auth


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes | None:
    """The body of ``resp``, or None when it is over :data:`MAX_BODY` (the rest is never read)."""
    if resp.content_length is not None:  # the usual case: one read, as without a cap
        return await resp.read() if resp.content_length <= MAX_BODY else None
    chunks: list[bytes] = []
    size = 0
    while chunk := await resp.content.read(MAX_BODY + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            return None
    return b"".join(chunks)


def _transport_detail(exc: aiohttp.ClientError) -> tuple[str, bool]:
    """What a transport failure was, in a person's words, and whether the name does not exist."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        cause = exc.os_error
        host = exc.host
        if isinstance(cause, socket.gaierror) and cause.errno == socket.EAI_NONAME:
            return f"the name {host} does not exist (EAI_NONAME)", True
        if isinstance(cause, socket.gaierror) and cause.errno == socket.EAI_AGAIN:
            return f"the resolver cannot look {host} up now (EAI_AGAIN)", False
        return f"cannot look {host} up ({first_line(cause) or type(cause).__name__})", False
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {exc.host}:{exc.port}", False
        return f"cannot connect to {exc.host}:{exc.port} ({cause.strerror or type(cause).__name__})", False
    return first_line(exc) or type(exc).__name__, False


class Client:
    def __init__(self, session: aiohttp.ClientSession, api_url: str) -> None:
        self._session = session
        self._base = api_url.rstrip("/")
        self._proxy, self._proxy_auth = env_proxy(self._base)

    def url(self, media: str, sha256: str) -> str:
        if not _HASH.match(sha256):  # defence in depth: callers pass validated hashes only
            raise ValueError("refusing to build a URL from an unvalidated hash")
        return f"{self._base}/api/{ENDPOINTS[media]}/{sha256}/override"

    async def post(self, media: str, sha256: str, body: bytes) -> Answer:
        url = self.url(media, sha256)
        try:
            async with self._session.post(
                url, data=body, allow_redirects=False, proxy=self._proxy, proxy_auth=self._proxy_auth
            ) as resp:
                payload = await _read_capped(resp)
                if payload is None:  # a 201 says all by its status; anything else needs its body
                    verdict = classify_response(201, b"") if resp.status == 201 else _TOO_BIG
                    return Answer(verdict, resp.status, resp.headers)
                return Answer(classify_response(resp.status, payload), resp.status, resp.headers)
        except TimeoutError:
            return Answer(
                transport_failure(ErrorCode.TIMEOUT, "no answer within --timeout"),
                None,
                _NO_HEADERS,
                "no answer within --timeout",
            )
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            # Retrying cannot fix an untrusted certificate: stop, and say how to fix it.
            message = f"TLS: {type(exc).__name__}: the server's certificate is not trusted (--ca-bundle?)"
            return Answer(
                Verdict(Outcome.ABORTED, ErrorCode.TLS_ERROR, Action.ABORT, message), None, _NO_HEADERS
            )
        except aiohttp.ClientError as exc:
            # ServerDisconnectedError, ClientOSError (reset), ClientConnectorError (refused)...
            # POST is not retried by aiohttp itself; an override is idempotent, so we do.
            detail, no_such_host = _transport_detail(exc)
            return Answer(
                transport_failure(ErrorCode.CONNECTION_ERROR, type(exc).__name__),
                None,
                _NO_HEADERS,
                detail,
                no_such_host,
            )

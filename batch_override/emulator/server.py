"""The emulated identifAI override API as an aiohttp application, and a context manager serving it.

Request pipeline, in the order Laravel's middleware applies it (each step can answer and stop):

0. maintenance (if configured and due): 503 with ``Retry-After``, no rate-limit headers, nothing
   counted (Laravel's ``PreventRequestsDuringMaintenance`` is a global middleware).
1. auth: ``X-Api-Key`` missing or unknown -> 401; forbidden -> 403. No rate-limit headers, not
   counted by the throttle (Laravel authenticates before it throttles per user).
2. throttle (if configured): 429 past the window's limit; passed responses carry
   ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining``.
3. validation: 400 with Laravel's ``{"classification": [...]}`` shape.
4. fault (if configured): 5xx, or a dropped connection, decided by ``faults.FaultPlan``.
5. content state: 201 or one of the documented 400s (``state.ContentState``).

Traps worth knowing:

- The body counts as JSON only with a JSON ``Content-Type`` (anything containing ``/json`` or
  ``+json``, Laravel's ``isJson``). JSON posted as ``text/plain`` is answered "The classification
  field is required.", as the real server would.
- ``classification`` must be exactly ``"human"`` or ``"artificial"``; a blank string is "required"
  (Laravel trims, then nulls empty strings), any other value is "invalid".
- A 500 fault carries the rate-limit headers (Laravel's own error page passes back through the
  throttle middleware); 502/503 faults and dropped connections carry none.
- Everything after reading the body, the network delay and the wait for a worker
  (``network.py``) is synchronous, so concurrent requests cannot interleave between a check and
  its record.
- Other traffic (``traffic.py``) is counted, at its own times, just before the throttle counts
  a request and before stats are read.
- ``rate_headers=False`` strips every ``X-RateLimit-*`` and ``Retry-After`` header, as a proxy
  may: a 429 then says nothing about when to come back.
- ``stuck_remaining`` (``--stuck-remaining``) makes every passed answer say
  ``X-RateLimit-Remaining: 0``, as a broken proxy or cache may, while the throttle goes on
  counting, accepting up to the limit and answering 429 past it (with the true ``Retry-After``).
- ``latency_jump`` (``--latency-jump``) changes the round trip mid-run (``network.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final

from aiohttp import web

from batch_override.emulator import responses
from batch_override.emulator.config import MEDIA, EmulatorConfig
from batch_override.emulator.faults import Failure, Fault, FaultPlan
from batch_override.emulator.network import Network
from batch_override.emulator.state import ContentState, Outcome
from batch_override.emulator.throttle import FixedWindowThrottle
from batch_override.emulator.traffic import Traffic

ROUTES: Final[dict[str, str]] = {
    "image": "/api/classification/{hash}/override",
    "video": "/api/classification_video/{hash}/override",
    "audio": "/api/classification_audio/{hash}/override",
}
STATS_PATH: Final = "/_emulator/stats"
OVERRIDES_PATH: Final = "/_emulator/overrides"
ARRIVALS_PATH: Final = "/_emulator/arrivals"

_CLASSIFICATIONS: Final = {"human": "human", "artificial": "artificial"}
# The bodies clients actually send (json.dumps with and without separators), answered without
# parsing: JSON decoding is the costliest step of a request otherwise.
_COMMON_BODIES: Final = {
    json.dumps({"classification": value}, separators=separators).encode(): value
    for value in _CLASSIFICATIONS
    for separators in ((", ", ": "), (",", ":"))
}
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def key_id(key: str) -> str:
    """A label for ``key`` that stats can show: a short SHA-256 prefix, never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class EmulatedApi:
    """The server's whole mutable state and its request handlers; one per application."""

    __slots__ = (
        "_faults",
        "_forbidden",
        "_known",
        "_limit_header",
        "_rate_headers",
        "_traffic",
        "config",
        "content",
        "network",
        "requests",
        "responses_by_status",
        "throttle",
    )

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        # Forbidden keys are known keys: they get 403, never 401.
        self._known = frozenset(config.api_keys) | frozenset(config.forbidden_keys)
        self._forbidden = frozenset(config.forbidden_keys)
        started = config.clock()
        self.network = Network.of(config, started)
        self._rate_headers = config.rate_headers
        self.content = ContentState(config.states, config.unknown)
        self.throttle: FixedWindowThrottle | None = None
        self._limit_header = ""
        if config.rate_limit is not None:
            limit, period = config.rate_limit
            self.throttle = FixedWindowThrottle(limit, period, config.clock, key_id, config.laravel_windows)
            self._limit_header = str(limit)
        self._traffic = Traffic.of(config, started)
        plan = FaultPlan(config.seed, config.fail_rate, config.drop_rate, config.drop_after_record_rate)
        # None keeps the fault-free path (benchmarks) free of hashing and attempt counting.
        self._faults = plan if plan.active else None
        self.requests = 0
        self.responses_by_status: dict[str, int] = {}

    def handler(self, media: str) -> _Handler:
        """The POST handler of ``media``'s override route."""

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.override(request, media)

        return handle

    async def override(self, request: web.Request, media: str) -> web.StreamResponse:
        """Answer one override request; see the module docstring for the order of checks."""
        # Read the body first, whatever the outcome, so the connection is left clean for keep-alive.
        body = await request.read()
        self.requests += 1
        async with self.network.carry():
            return self._respond(request, media, body)

    def _respond(self, request: web.Request, media: str, body: bytes) -> web.StreamResponse:
        if (down := self._traffic.down(self.config.clock())) is not None:
            return self._answer(503, *down)
        key = request.headers.get("X-Api-Key")
        if key is None or key not in self._known:
            return self._answer(401, responses.UNAUTHORIZED)
        if key in self._forbidden:
            return self._answer(403, responses.FORBIDDEN)

        rate_headers: dict[str, str] | None = None
        if self.throttle is not None:
            self._traffic.play(self.throttle, self.config.clock())
            decision = self.throttle.hit(key)
            if not decision.allowed:
                return self._answer(
                    429,
                    responses.TOO_MANY_ATTEMPTS,
                    {
                        "Retry-After": str(decision.retry_after),
                        "X-RateLimit-Reset": str(decision.reset),
                        "X-RateLimit-Limit": self._limit_header,
                        "X-RateLimit-Remaining": "0",
                    },
                )
            rate_headers = {
                "X-RateLimit-Limit": self._limit_header,
                "X-RateLimit-Remaining": "0" if self.config.stuck_remaining else str(decision.remaining),
            }

        classification = _classification(request.headers.get("Content-Type", ""), body)
        if classification is None:
            return self._answer(400, responses.CLASSIFICATION_REQUIRED, rate_headers)
        if not classification:
            return self._answer(400, responses.CLASSIFICATION_INVALID, rate_headers)

        content_hash = request.match_info["hash"]
        fault = Fault.NONE
        if self._faults is not None:
            attempt = self.content.next_attempt(media, content_hash)
            fault, failure = self._faults.decide(media, content_hash, attempt)
            if fault is Fault.FAIL:
                failure_body, content_type = responses.FAILURES[failure]
                headers = rate_headers if failure is Failure.SERVER_ERROR else None
                return self._answer(failure.value, failure_body, headers, content_type)
            if fault is Fault.DROP:
                return self._drop(request)

        outcome = self.content.submit(key, media, content_hash, classification)
        if fault is Fault.DROP_AFTER_RECORD:
            return self._drop(request, "dropped_after_record")
        if outcome is Outcome.CREATED:
            return self._answer(201, responses.created(classification, media, content_hash), rate_headers)
        return self._answer(400, responses.REFUSALS[media, outcome], rate_headers)

    def _answer(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = responses.JSON,
    ) -> web.Response:
        label = str(status)
        self.responses_by_status[label] = self.responses_by_status.get(label, 0) + 1
        if not self._rate_headers:
            headers = None  # every header passed here is a rate-limit header
        return web.Response(body=body, status=status, headers=headers, content_type=content_type)

    def _drop(self, request: web.Request, label: str = "dropped") -> web.Response:
        """Close the connection without a response; the client sees a server disconnect.

        The returned response is never sent: aiohttp fails to write it to the closed transport,
        treats that as a client that went away, and quietly ends the connection.
        """
        self.responses_by_status[label] = self.responses_by_status.get(label, 0) + 1
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=204)

    def stats(self) -> dict[str, Any]:
        """Counters for tests and benchmarks (``GET /_emulator/stats``; windows: see traffic.py)."""
        windows = self.throttle.windows if self.throttle is not None else []
        return {
            **self._traffic.stats(self.throttle, self.config.clock()),  # first: it counts what is due
            "requests": self.requests,
            "responses_by_status": dict(self.responses_by_status),
            "overrides": len(self.content.overrides),
            **self.network.stats(),
            "windows": [w.stats(other=self._traffic.other is not None) for w in windows],
        }

    def overrides(self) -> list[dict[str, str]]:
        """The overrides recorded, in order, as ``{"media", "hash", "classification"}`` (copies)."""
        return [dict(item) for item in self.content.overrides]


def _classification(content_type: str, body: bytes) -> str | None:
    """The valid classification; ``None`` for "required"; ``""`` for "invalid"."""
    if "/json" not in content_type and "+json" not in content_type:
        return None
    common = _COMMON_BODIES.get(body)
    if common is not None:
        return common
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("classification")
    if value is None or (isinstance(value, str) and not value.strip()) or value == [] or value == {}:
        return None
    if isinstance(value, str):
        return _CLASSIFICATIONS.get(value, "")
    return ""


API: Final = web.AppKey("batch_override_emulator", EmulatedApi)


def build_app(config: EmulatorConfig) -> web.Application:
    """A fresh application with its own state: serve it with ``Emulator`` or aiohttp's ``TestServer``.

    Observability routes (``GET /_emulator/stats``, ``/_emulator/overrides``, ``/_emulator/arrivals``)
    need no key and are neither counted nor throttled.
    """
    api = EmulatedApi(config)
    app = web.Application()
    app[API] = api
    for media in MEDIA:
        app.router.add_post(ROUTES[media], api.handler(media))

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(api.stats())

    async def overrides(_request: web.Request) -> web.Response:
        return web.json_response(api.overrides())

    async def arrivals(_request: web.Request) -> web.Response:
        return web.json_response(api.network.arrivals())

    app.router.add_get(STATS_PATH, stats)
    app.router.add_get(OVERRIDES_PATH, overrides)
    app.router.add_get(ARRIVALS_PATH, arrivals)
    return app


class Emulator:
    """Serve the emulator in-process on the running event loop, for tests and the demo.

    ``async with Emulator(config) as emulator:`` binds ``host:port`` (``port=0``: an ephemeral port)
    and ``emulator.url`` is then the real address, e.g. ``http://127.0.0.1:43123``. Leaving the block
    closes open connections; requests still in their handler get ``SHUTDOWN_TIMEOUT`` seconds.

    Trap: with a host name that resolves to several addresses (``localhost``), each gets its own
    ephemeral port; ``url`` names the first.
    """

    SHUTDOWN_TIMEOUT: Final = 2.0

    def __init__(self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config if config is not None else EmulatorConfig()
        self.app = build_app(self.config)
        self._api = self.app[API]
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server; raises ``RuntimeError`` outside ``async with``."""
        if self._url is None:
            raise RuntimeError("the emulator is not running (use `async with Emulator(...)`)")
        return self._url

    async def __aenter__(self) -> Emulator:
        # access_log=None: a log line per request would cost more than the request itself.
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self.SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._url = _base_url(runner.addresses[0])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        runner, self._runner, self._url = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    def stats(self) -> dict[str, Any]:
        """The same JSON as ``GET /_emulator/stats``."""
        return self._api.stats()

    def overrides(self) -> list[dict[str, str]]:
        """The same list as ``GET /_emulator/overrides``."""
        return self._api.overrides()

    def arrivals(self) -> list[float]:
        """The same list as ``GET /_emulator/arrivals``."""
        return self._api.network.arrivals()


def _base_url(address: Any) -> str:
    host, port = address[0], address[1]
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{port}"

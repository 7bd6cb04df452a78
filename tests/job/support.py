"""Helpers for the job's tests: a scripted loopback server (:class:`Scripted`) that answers exactly what
a test says, and the job run in-process on a few rows against it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from aiohttp import web

from batch_override.emulator import DEMO_API_KEY
from batch_override.sending.client import EMPTY_BODY
from batch_override.summary import Summary
from tests.support import read_ledger, run_fast, serve_app, write_csv

MEDIA_OF_ENDPOINT = {
    "classification": "image",
    "classification_video": "video",
    "classification_audio": "audio",
}


@dataclass
class Hit:
    method: str
    path: str
    body: bytes
    at: float

    @property
    def media(self) -> str:
        return MEDIA_OF_ENDPOINT.get(self.path.split("/")[2], "?")

    @property
    def hash(self) -> str:
        return self.path.split("/")[3]


Answer = Callable[[web.Request, Hit, int], Awaitable[web.StreamResponse]]


@dataclass
class Scripted:
    """A real aiohttp server on 127.0.0.1:0; ``answer(request, hit, n)`` answers every request,
    ``n`` counting earlier requests for the same path (0 for the first)."""

    answer: Answer
    hits: list[Hit] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # set when the server stops
    url: str = ""

    def to(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    @property
    def overrides(self) -> list[Hit]:
        return [h for h in self.hits if h.path.startswith("/api/") and h.path.endswith("/override")]


SERVER = web.AppKey("scripted", Scripted)


@contextlib.asynccontextmanager
async def scripted(answer: Answer):
    server = Scripted(answer)

    async def handle(request: web.Request) -> web.StreamResponse:
        hit = Hit(request.method, request.path, await request.read(), time.monotonic())
        n = len(server.to(hit.path))
        server.hits.append(hit)
        return await server.answer(request, hit, n)

    app = web.Application()
    app[SERVER] = server
    app.router.add_route("*", "/{tail:.*}", handle)
    async with serve_app(app) as server.url:
        try:
            yield server
        finally:
            server.release.set()


def always(status: int, body: object = None, headers: dict[str, str] | None = None) -> Answer:
    async def answer(_request: web.Request, _hit: Hit, _n: int) -> web.StreamResponse:
        if isinstance(body, str | bytes):
            text = body.encode() if isinstance(body, str) else body
            return web.Response(status=status, body=text, content_type="text/html", headers=headers)
        return web.json_response(body if body is not None else {}, status=status, headers=headers)

    return answer


def like_the_api(answer: Answer) -> Answer:
    """``answer``, except to the preflight's empty body, which gets what the API (and the emulator)
    answers it: 400, "The classification field is required.", with ``answer``'s rate headers.  For a
    server that would accept anything, which the preflight takes for "not the API" (exit 3)."""

    async def wrapped(request: web.Request, hit: Hit, n: int) -> web.StreamResponse:
        response = await answer(request, hit, n)
        if hit.body != EMPTY_BODY:
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("x-ratelimit-")}
        required = {"classification": ["The classification field is required."]}
        return web.json_response(required, status=400, headers=headers)

    return wrapped


async def run_rows(
    tmp_path: Path,
    url: str,
    rows: Sequence[Sequence[object]],
    header: Sequence[str] = ("hash", "classification"),
    key: str = DEMO_API_KEY,
    **config: Any,
) -> tuple[Summary, pd.DataFrame]:
    """Run the job in-process on ``rows`` against ``url``; the summary and the ledger as pandas reads it."""
    corrections = write_csv(tmp_path / "corrections.csv", rows, header)
    ledger = config.pop("ledger", tmp_path / "ledger.csv")
    summary = await run_fast(corrections, ledger, url, key, **{"concurrency": 1, **config})
    return summary, read_ledger(ledger)


def send_times(records: Sequence[logging.LogRecord]) -> list[float]:
    """When the job sent each request, by its own ``POST`` debug lines (logged as the pacer grants
    the turn, before any I/O): the pacer's promise is about these, not about arrival times, which a
    loaded test machine jitters by tens of milliseconds either way."""
    return [r.created for r in records if r.getMessage().startswith("POST ")]


def most_in_any_span(times: Sequence[float], span: float, slack: float = 0.02) -> int:
    """The most of ``times`` within any half-open span of ``span - slack`` seconds.  ``slack``
    absorbs a preemption between the pacer's clock read and the log line, never a pacing bug
    (which shows as whole extra sends)."""
    ordered, most, first = sorted(times), 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= span - slack:
            first += 1
        most = max(most, last - first + 1)
    return most

"""Helpers shared by the emulator tests: the spec, a fake clock, and a plain HTTP client call.

The spec is read from the package's own copy (``batch_override/emulator/openapi.yaml``), so the
tests check the emulator against the document that ships with it.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
import yaml
from multidict import CIMultiDictProxy

from batch_override.emulator import DEMO_API_KEY


@functools.cache
def load_spec() -> dict[str, Any]:
    text = importlib.resources.files("batch_override.emulator").joinpath("openapi.yaml").read_text("utf-8")
    spec: dict[str, Any] = yaml.safe_load(text)
    return spec


def spec_paths() -> dict[str, str]:
    """media -> path template, the media word taken from the 201 schema's ``type`` enum."""
    paths: dict[str, str] = {}
    for path, item in load_spec()["paths"].items():
        schema = item["post"]["responses"]["201"]["content"]["application/json"]["schema"]
        (media,) = schema["properties"]["type"]["enum"]
        paths[media] = path
    return paths


MEDIA = tuple(spec_paths())


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def override_url(base_url: str, media: str, content_hash: str) -> str:
    return base_url + spec_paths()[media].replace("{hash}", content_hash)


_UNSET: Any = object()


async def post(
    session: aiohttp.ClientSession,
    base_url: str,
    media: str,
    content_hash: str,
    body: Any = _UNSET,
    *,
    key: str | None = DEMO_API_KEY,
    raw: bool = False,
    data: bytes | None = None,
    content_type: str | None = None,
) -> Reply:
    """POST an override. ``body`` (JSON) defaults to ``{"classification": "human"}``; with ``raw``,
    ``data`` is sent as is (``None``: no body) under ``content_type`` if any. ``key=None`` sends no
    key header."""
    headers: dict[str, str] = {}
    if key is not None:
        headers["X-Api-Key"] = key
    if content_type is not None:
        headers["Content-Type"] = content_type
    kwargs: dict[str, Any] = {"headers": headers}
    if raw:
        kwargs["data"] = data
    else:
        kwargs["json"] = {"classification": "human"} if body is _UNSET else body
    async with session.post(override_url(base_url, media, content_hash), **kwargs) as response:
        return Reply(response.status, response.headers, await response.read())


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200
        return await response.json()

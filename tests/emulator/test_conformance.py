"""Every documented response of every override path, compared with the spec that ships in the package.

Non-201 bodies must equal the spec's named example for that path (so the media word is the one the
spec uses there); 201 bodies must validate against the path's response schema.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jsonschema
import pytest

from batch_override.emulator import DEMO_API_KEY, EmulatorConfig
from tests.clock import VirtualClock
from tests.emulator.conftest import Serve
from tests.emulator.support import Reply, load_spec, post, spec_paths

FORBIDDEN_KEY = "forbidden-key-1"
STATES = {
    "classified": "hash-classified",
    "not_classified": "hash-not-classified",
    "no_completed_request": "hash-no-completed-request",
    "expired": "hash-expired",
}


def conformance_config(**overrides: Any) -> EmulatorConfig:
    states = {
        (media, content_hash): status for media in spec_paths() for status, content_hash in STATES.items()
    }
    return EmulatorConfig(states=states, forbidden_keys=(FORBIDDEN_KEY,), **overrides)


Provoke = Callable[[aiohttp.ClientSession, str, str], Awaitable[Reply]]


async def _already_submitted(session: aiohttp.ClientSession, url: str, media: str) -> Reply:
    first = await post(session, url, media, STATES["classified"], {"classification": "artificial"})
    assert first.status == 201
    # A different classification the second time: still "already submitted", nothing changes.
    return await post(session, url, media, STATES["classified"], {"classification": "human"})


async def _too_many(session: aiohttp.ClientSession, url: str, media: str) -> Reply:
    assert (await post(session, url, media, "any-hash")).status == 400
    return await post(session, url, media, "any-hash")


# (status, example name) -> how to provoke it. The example name of a response documented with a
# single `example` is its status code.
PROVOKE: dict[tuple[str, str], Provoke] = {
    ("400", "validation_required"): lambda s, u, m: post(s, u, m, STATES["classified"], {}),
    ("400", "validation_invalid"): lambda s, u, m: post(
        s, u, m, STATES["classified"], {"classification": "robot"}
    ),
    ("400", "no_request"): lambda s, u, m: post(s, u, m, "hash-never-requested"),
    ("400", "already_submitted"): _already_submitted,
    ("400", "not_classified"): lambda s, u, m: post(s, u, m, STATES["not_classified"]),
    ("400", "no_longer_possible"): lambda s, u, m: post(s, u, m, STATES["expired"]),
    ("400", "no_completed_request"): lambda s, u, m: post(s, u, m, STATES["no_completed_request"]),
    ("401", "401"): lambda s, u, m: post(s, u, m, STATES["classified"], key=None),
    ("403", "403"): lambda s, u, m: post(s, u, m, STATES["classified"], key=FORBIDDEN_KEY),
    ("429", "429"): _too_many,
}


def documented_examples() -> list[tuple[str, str, str, Any]]:
    """(media, status, example name, example body) for every non-201 example in the spec."""
    cases = []
    for media, path in spec_paths().items():
        for status, response in load_spec()["paths"][path]["post"]["responses"].items():
            if status == "201":
                continue
            content = response["content"]["application/json"]
            if "examples" in content:
                cases += [(media, status, name, ex["value"]) for name, ex in content["examples"].items()]
            else:
                cases.append((media, status, status, content["example"]))
    return cases


def test_the_spec_documents_three_media_and_every_example_is_covered() -> None:
    assert sorted(spec_paths()) == ["audio", "image", "video"]
    for media in spec_paths():
        documented = {(status, name) for m, status, name, _ in documented_examples() if m == media}
        assert documented == set(PROVOKE), media


@pytest.mark.parametrize(
    ("media", "status", "name", "expected"),
    documented_examples(),
    ids=[f"{media}-{status}-{name}" for media, status, name, _ in documented_examples()],
)
async def test_documented_response_body_equals_the_spec_example(
    serve: Serve,
    session: aiohttp.ClientSession,
    clock: VirtualClock,
    media: str,
    status: str,
    name: str,
    expected: Any,
) -> None:
    rate_limit = (1, 60.0) if status == "429" else None
    emulator = await serve(conformance_config(rate_limit=rate_limit, clock=clock))
    reply = await PROVOKE[status, name](session, emulator.url, media)
    assert reply.status == int(status)
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.json() == expected


@pytest.mark.parametrize("media", sorted(spec_paths()))
@pytest.mark.parametrize("classification", ["human", "artificial"])
async def test_created_body_validates_against_the_spec_schema(
    serve: Serve, session: aiohttp.ClientSession, media: str, classification: str
) -> None:
    emulator = await serve(conformance_config())
    reply = await post(session, emulator.url, media, STATES["classified"], {"classification": classification})
    assert reply.status == 201
    assert reply.headers["Content-Type"] == "application/json"
    operation = load_spec()["paths"][spec_paths()[media]]["post"]
    jsonschema.validate(reply.json(), operation["responses"]["201"]["content"]["application/json"]["schema"])
    assert reply.json() == {"classification": classification, "type": media, "hash": STATES["classified"]}
    # The request the emulator accepts must itself be valid per the spec's request schema.
    jsonschema.validate(
        {"classification": classification}, operation["requestBody"]["content"]["application/json"]["schema"]
    )
    assert emulator.overrides() == [
        {"media": media, "hash": STATES["classified"], "classification": classification}
    ]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (None, None),  # no body at all
        (b"", "application/json"),
        (b"{not json", "application/json"),
        (b'["human"]', "application/json"),
        (b'"human"', "application/json"),
        (b'{"classification": null}', "application/json"),
        (b'{"classification": ""}', "application/json"),
        (b'{"classification": "   "}', "application/json"),
        (b'{"classification": []}', "application/json"),
        (b'{"other": "human"}', "application/json"),
        # Valid JSON but not declared as JSON: Laravel does not parse it, so the field is missing.
        (b'{"classification": "human"}', "text/plain"),
    ],
)
async def test_body_without_a_classification_is_answered_field_required(
    serve: Serve, session: aiohttp.ClientSession, data: bytes | None, content_type: str | None
) -> None:
    emulator = await serve(conformance_config())
    reply = await post(
        session, emulator.url, "image", STATES["classified"], raw=True, data=data, content_type=content_type
    )
    assert (reply.status, reply.json()) == (
        400,
        {"classification": ["The classification field is required."]},
    )
    assert emulator.overrides() == []


@pytest.mark.parametrize("value", ["Human", "ARTIFICIAL", " human", "robot", 1, True, ["human"], {"a": 1}])
async def test_classification_other_than_human_or_artificial_is_invalid(
    serve: Serve, session: aiohttp.ClientSession, value: Any
) -> None:
    emulator = await serve(conformance_config())
    reply = await post(session, emulator.url, "video", STATES["classified"], {"classification": value})
    assert (reply.status, reply.json()) == (
        400,
        {"classification": ["The selected classification is invalid."]},
    )


async def test_json_content_type_with_charset_or_suffix_is_parsed(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    emulator = await serve(conformance_config())
    body = b'{"classification": "human"}'
    first = await post(
        session,
        emulator.url,
        "audio",
        STATES["classified"],
        raw=True,
        data=body,
        content_type="application/json; charset=utf-8",
    )
    second = await post(
        session,
        emulator.url,
        "image",
        STATES["classified"],
        raw=True,
        data=body,
        content_type="application/vnd.api+json",
    )
    assert (first.status, second.status) == (201, 201)


async def test_unknown_key_is_unauthorized_and_forbidden_key_wins_over_validation(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    emulator = await serve(conformance_config())
    unknown = await post(session, emulator.url, "image", STATES["classified"], key="not-a-key")
    empty = await post(session, emulator.url, "image", STATES["classified"], key="")
    forbidden = await post(session, emulator.url, "image", STATES["classified"], {}, key=FORBIDDEN_KEY)
    assert (unknown.status, unknown.json()) == (401, {"error": "Unauthorized"})
    assert empty.status == 401
    assert (forbidden.status, forbidden.json()) == (403, {"error": "Forbidden"})


async def test_unknown_content_counts_as_classified_when_configured(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    emulator = await serve(conformance_config(unknown="classified"))
    assert (await post(session, emulator.url, "video", "never-seen")).status == 201
    # Listed statuses still apply.
    assert (await post(session, emulator.url, "video", STATES["expired"])).status == 400


async def test_each_key_may_override_the_same_content_once(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    emulator = await serve(conformance_config(api_keys=(DEMO_API_KEY, "second-key")))
    content = STATES["classified"]
    assert (await post(session, emulator.url, "image", content)).status == 201
    assert (await post(session, emulator.url, "image", content, key="second-key")).status == 201
    again = await post(session, emulator.url, "image", content, key="second-key")
    assert again.json() == {"error": "You have already submitted a report for this content."}
    # Same hash under another media is other content.
    assert (await post(session, emulator.url, "video", content)).status == 201
    assert len(emulator.overrides()) == 3


async def test_hash_is_any_string_and_is_echoed_json_escaped(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    emulator = await serve(conformance_config(unknown="classified"))
    reply = await post(session, emulator.url, "image", "we%22ird%20h%C3%A4sh")
    assert reply.status == 201
    assert reply.json()["hash"] == 'we"ird häsh'

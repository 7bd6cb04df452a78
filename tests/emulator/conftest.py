from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from batch_override.emulator import Emulator, EmulatorConfig

Serve = Callable[[EmulatorConfig], Awaitable[Emulator]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start emulators on ephemeral loopback ports; all are stopped when the test ends."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(config: EmulatorConfig) -> Emulator:
            return await stack.enter_async_context(Emulator(config))

        yield start

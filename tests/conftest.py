from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batch_override.emulator import DEMO_API_KEY, Emulator, EmulatorConfig
from tests.clock import VirtualClock

Serve = Callable[..., Awaitable[Emulator]]


@pytest.fixture(autouse=True)
def _logger_restored() -> Iterator[None]:
    """The ``batch_override`` logger as it was: a command run in-process installs a handler on
    that test's captured stderr, which is closed once the test ends."""
    logger = logging.getLogger("batch_override")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


@pytest.fixture
def clock() -> VirtualClock:
    """The virtual clock (:mod:`tests.clock`), fresh for each test at :data:`tests.clock.START`."""
    return VirtualClock()


@pytest.fixture
async def emulator_factory() -> AsyncIterator[Serve]:
    """``await emulator_factory(unknown="classified", rate_limit=(5, 1.0))``: an emulator on an
    ephemeral loopback port, stopped when the test ends."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**config: Any) -> Emulator:
            return await stack.enter_async_context(Emulator(EmulatorConfig(**config)))

        yield start


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("IDENTIFAI_API_KEY", DEMO_API_KEY)
    return DEMO_API_KEY


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty temporary directory where this process puts its temporary files (copies of stdin
    or of an object): a test asserts it is empty again once the run ended."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    return folder

"""An emulator served from a thread of its own: for tests whose own thread blocks in ``run_job``."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from batch_override.emulator import Emulator, EmulatorConfig


@contextlib.contextmanager
def emulator_in_thread(**config: Any) -> Iterator[Emulator]:
    """An emulator on an ephemeral loopback port, on its own loop in a daemon thread; stopped
    (and the thread joined) when the block ends."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with Emulator(EmulatorConfig(**config)) as emulator:
            box["emulator"], box["loop"], box["done"] = emulator, asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await box["done"].wait()

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=main, name="emulator", daemon=True)
    thread.start()
    assert ready.wait(10), "the emulator did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield box["emulator"]
    finally:
        box["loop"].call_soon_threadsafe(box["done"].set)
        thread.join(10)

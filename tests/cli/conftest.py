"""Fixtures for the command line's tests: a real Pushgateway."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.binaries import debian_binary


@pytest.fixture
async def pushgateway(tmp_path: Path) -> AsyncIterator[str]:
    """A real Pushgateway on an ephemeral loopback port, without persistence; its base URL."""
    binary = debian_binary("prometheus-pushgateway", "prometheus-pushgateway")
    proc = await asyncio.create_subprocess_exec(
        binary, "--web.listen-address=127.0.0.1:0", "--persistence.file=",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        address = None
        while address is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "the Pushgateway exited before listening"
            match = re.search(r'msg="Listening on" address=(127\.0\.0\.1:\d+)', line)
            address = match.group(1) if match else None
        yield f"http://{address}"
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()

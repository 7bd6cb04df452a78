"""The run's deadline (``--max-duration``, ``--stop-at``): a stop as on SIGTERM, exit 7.

Trap: ``--stop-at`` is a wall-clock time of day, taken once at the start; a clock changed
(or a laptop suspended) during the run does not move the stop, the loop's timer does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

from ..config import RunConfig
from ..errors import ExitCode
from ..schedule import format_duration
from ..stopping import Stopper

log = logging.getLogger("batch_override")


def deadline_in(config: RunConfig, now: float) -> tuple[float, str] | None:
    """Seconds from ``now`` (a Unix time) to the run's deadline and the option that sets it."""
    found: list[tuple[float, str]] = []
    if config.max_duration is not None:
        found.append((config.max_duration, f"--max-duration {format_duration(config.max_duration)}"))
    if config.stop_at is not None:
        found.append((config.stop_at.next_after(now) - now, f"--stop-at {config.stop_at}"))
    return min(found) if found else None


@contextlib.contextmanager
def deadline_armed(config: RunConfig, stopper: Stopper) -> Iterator[None]:
    """Stop the run as on SIGTERM (exit 7) at its deadline, if it has one."""
    deadline = deadline_in(config, time.time())
    if deadline is None:
        yield
        return
    seconds, option = deadline
    log.info("deadline: %s, in %.0fs", option, seconds)
    reason = f"deadline ({option}) reached: finishing in-flight rows, leaving the rest for the next run"
    timer = asyncio.get_running_loop().call_later(seconds, stopper.request, ExitCode.DEADLINE, reason)
    try:
        yield
    finally:
        timer.cancel()

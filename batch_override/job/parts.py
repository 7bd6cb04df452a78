"""The run's replaceable parts: the seam tests use to make one stage fail on purpose.

Production runs use the defaults.  A test passes, say, a ledger writer whose third write raises
``ENOSPC``, or a client whose k-th request raises, and checks that the run still ends cleanly;
nothing in the package is monkeypatched for that.  Each factory takes the same arguments as the
class it stands for (``source`` takes the run's config and its ``halted`` event).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp.abc import AbstractResolver

from ..config import Rate, RunConfig
from ..input.open_input import open_input
from ..input.source import BatchSource
from ..ledger.writer import LedgerWriter
from ..pacing.backoff import Backoff
from ..pacing.pacer import Pacer
from ..sending.client import Client


class LedgerWriterFactory(Protocol):
    """How the run makes its ledger writer (:class:`LedgerWriter` itself, or a test's subclass)."""

    def __call__(
        self, path: Path, carried: Sequence[str], run_id: str, *, neutralize: bool, fsync_interval: float
    ) -> LedgerWriter: ...


class PacerFactory(Protocol):
    """How the run makes its pacer (:class:`Pacer` itself, or a test's subclass)."""

    def __call__(
        self, rate: Rate | None, *, headroom: float, stopped: asyncio.Event, backoff: Backoff
    ) -> Pacer: ...


class SourceFactory(Protocol):
    """How the run opens its input (:func:`open_input`, or a test's): ``halted`` is set when the
    run stops, which a copy still waiting for data ends on (the run abandons it anyway)."""

    def __call__(self, config: RunConfig, halted: threading.Event) -> BatchSource: ...


@dataclass(frozen=True, slots=True)
class Parts:
    source: SourceFactory = open_input
    ledger_writer: LedgerWriterFactory = LedgerWriter
    pacer: PacerFactory = Pacer
    client: Callable[[aiohttp.ClientSession, str], Client] = Client
    #: Makes the resolver of each session (None: aiohttp's, the system's): a name that does not
    #: exist, or a resolver that is down, without a DNS server.
    resolver: Callable[[], AbstractResolver] | None = None
    #: The monotonic clock of the outage breaker and the preflight's warnings: a test's outage of
    #: minutes passes in milliseconds.
    clock: Callable[[], float] = time.monotonic


DEFAULT_PARTS = Parts()

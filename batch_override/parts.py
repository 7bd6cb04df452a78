"""The run's replaceable parts: the seam tests use to make one stage fail on purpose.

Production runs use the defaults.  A test passes, say, a ledger writer whose third write raises
``ENOSPC``, or a client whose k-th request raises, and checks that the run still ends cleanly;
nothing in the package is monkeypatched for that.  Each factory takes the same arguments as the
class it stands for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from .client import Client
from .ledger_writer import LedgerWriter
from .pacing import Pacer
from .source import CorrectionsFile


@dataclass(frozen=True, slots=True)
class Parts:
    source: Callable[..., CorrectionsFile] = CorrectionsFile
    ledger_writer: Callable[..., LedgerWriter] = LedgerWriter
    pacer: Callable[..., Pacer] = Pacer
    client: Callable[[aiohttp.ClientSession, str], Client] = Client


DEFAULT_PARTS = Parts()

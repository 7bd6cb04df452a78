"""The run's replaceable parts: the seam tests use to make one stage fail on purpose.

Production runs use the defaults.  A test passes, say, a ledger writer whose third write raises
``ENOSPC``, or a client whose k-th request raises, and checks that the run still ends cleanly;
nothing in the package is monkeypatched for that.  Each factory takes the same arguments as the
class it stands for (``source`` takes the run's config).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from ..config import RunConfig
from ..input.batch import InputOptions
from ..input.file_input import CorrectionsFile
from ..input.source import BatchSource
from ..ledger.writer import LedgerWriter
from ..pacing.pacer import Pacer
from ..sending.client import Client


def open_input(config: RunConfig) -> BatchSource:
    """The run's input: a file (or ``-``), or a DataFrame / pyarrow Table given from Python."""
    if not isinstance(config.input, str):
        from ..ledger.frames import TableInput  # pandas only for a DataFrame or Table input

        return TableInput(config.input, InputOptions.of(config))
    return CorrectionsFile(config.input, InputOptions.of(config))


@dataclass(frozen=True, slots=True)
class Parts:
    source: Callable[[RunConfig], BatchSource] = open_input
    ledger_writer: Callable[..., LedgerWriter] = LedgerWriter
    pacer: Callable[..., Pacer] = Pacer
    client: Callable[[aiohttp.ClientSession, str], Client] = Client


DEFAULT_PARTS = Parts()

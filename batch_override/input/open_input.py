"""The job's input, whatever was given: a file path (``-`` for standard input) or a table."""

from __future__ import annotations

import threading

from ..config import RunConfig
from .batch import InputOptions
from .file_input import CorrectionsFile
from .source import BatchSource


def open_input(config: RunConfig, halted: threading.Event | None = None) -> BatchSource:
    """The run's input: a file (or ``-``), or a DataFrame / pyarrow Table given from Python.
    A copy of standard input, a FIFO or an object still waiting for data when ``halted`` is set
    ends with :class:`~batch_override.stopping.Halted`, removed.

    The trap: pandas is imported only here, and only for a table input, so that the command line
    (always a path) never imports it.
    """
    if not isinstance(config.input, str):
        from .frame_input import TableInput

        return TableInput(config.input, InputOptions.of(config))
    return CorrectionsFile(config.input, InputOptions.of(config), halted)

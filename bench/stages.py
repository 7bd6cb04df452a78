"""Runs that go together: slow runs (pacing a few requests a second) of one or more sections,
started at the same time, each against its own server.

A section that has such runs is *staged*: measuring it runs its CPU-bound cases at once, each
alone, and hands back its slow runs and a ``finish`` that turns their results into the section.
:func:`finish_together` starts the slow runs of every staged section at the same time, so the
field's and the shared key's minute-long cases cost the longest of them, not their sum.

The trap: runs that go together measure each other.  Only runs that are not CPU-bound belong
here (on 2 cores, a CPU-heavy run beside them would move its figures and theirs), and every
section whose runs went together must say so, with whom (``finish`` is told).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.procs import wait_for_quiet
from bench.report import Section

#: Runs that go together start this far apart: a job's start-up (imports, planning: ~2 s alone)
#: crowded by three others' left it no time before a latency jump 8 s after its emulator's start.
TOGETHER_STAGGER = 4.0
T = TypeVar("T")


def together(runs: Sequence[Callable[[], T]], stagger: float = TOGETHER_STAGGER) -> list[T]:
    """Call every one of ``runs`` at the same time, each in its own thread, the n-th ``n * stagger``
    seconds after the first; their results, in order.  Put the longest first: the whole takes the
    longest run's time plus its start's delay.

    Trap: one run's exception is raised only once every run has ended (a thread cannot be
    cancelled; each run is bounded by its own timeout).
    """

    def one(n: int) -> T:
        time.sleep(n * stagger)
        return runs[n]()

    with concurrent.futures.ThreadPoolExecutor(max(1, len(runs))) as pool:
        return list(pool.map(one, range(len(runs))))


@dataclass(frozen=True, slots=True)
class Staged:
    """A section whose CPU-bound cases have run: its slow runs, longest first, and how to finish.

    ``finish(results, others)`` gets the slow runs' results in the order of ``slow`` and, in
    ``others``, the ``label`` of every other section whose slow runs went at the same time.
    """

    label: str  # its slow cases, for the text of the sections they run beside
    slow: list[Callable[[], Any]]
    finish: Callable[[list[Any], list[str]], Section]


def finish_together(staged: Sequence[Staged]) -> list[list[Any] | BaseException]:
    """Start the slow runs of every one of ``staged`` at the same time (taking turns, so each
    section's longest run starts early) after one short wait for a quiet machine; each section's
    results in order, or the exception one of its runs raised (the others are still measured)."""
    order = [
        (i, j) for j in range(max((len(s.slow) for s in staged), default=0))
        for i, s in enumerate(staged) if j < len(s.slow)
    ]  # fmt: skip

    def guarded(run: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            try:
                return run()
            except Exception as exc:  # handed to the section it belongs to
                return exc

        return call

    wait_for_quiet(max_wait=3.0)  # pacing is not CPU-bound: a short wait is enough
    results = together([guarded(staged[i].slow[j]) for i, j in order])
    per: list[list[Any]] = [[None] * len(s.slow) for s in staged]
    for (i, j), result in zip(order, results, strict=True):
        per[i][j] = result
    out: list[list[Any] | BaseException] = []
    for found in per:
        failed = next((r for r in found if isinstance(r, BaseException)), None)
        out.append(failed if failed is not None else found)
    return out

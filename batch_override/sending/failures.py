"""The failure threshold: stop a run whose recent rows mostly fail (wrong --media, key or input).

Contract: :meth:`FailureThreshold.add` judges nothing until ``size`` rows have finished, then the
share of failed or rejected rows among the last ``size``.  The trap it closes: a size of 0 (or
less) would divide by zero on the first row; it is taken as 1, and :class:`~.config.RunConfig`
rejects such values before a run starts anyway.
"""

from __future__ import annotations

from collections import deque


class FailureThreshold:
    """The share of failed or rejected rows among the last ``size`` finished (``--failure-window``)."""

    __slots__ = ("_failed", "_max_rate", "_recent", "_size")

    def __init__(self, size: int, max_rate: float) -> None:
        self._size = max(1, size)
        self._max_rate = max_rate
        self._recent: deque[bool] = deque(maxlen=self._size)
        self._failed = 0  # failures in _recent, kept as rows come and go

    def add(self, failed: bool) -> str | None:
        """Count one finished row; the reason to stop the run, or None to go on."""
        if len(self._recent) == self._size and self._recent[0]:
            self._failed -= 1
        self._recent.append(failed)
        self._failed += failed
        if len(self._recent) < self._size:
            return None
        rate = self._failed / self._size
        if rate <= self._max_rate:
            return None
        return (
            f"{rate:.0%} of the last {self._size} rows failed or were rejected "
            f"(--max-failure-rate {self._max_rate:g}): wrong --media, key or input?"
        )

"""How long a run will take, said before sending: the requests it will make at the pace the
preflight's ``X-RateLimit-Limit`` allows (less ``--headroom``, over the window), or ``--rate``.

The trap: the server's window is only *assumed* (a minute, Laravel's default) until one is seen
to end, so an estimate made from one answer is right for a minute window and wrong for others;
the text says so.  With a deadline it also says how many windows (nights) the work needs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ..config import RunConfig
from ..pacing.pacer import FALLBACK_RATE, Pacer
from ..schedule import format_duration
from .deadline import deadline_in


@dataclass(frozen=True, slots=True)
class Estimate:
    requests: int
    rate: float  # requests per second
    seconds: float
    assumption: str  # "" when the pace is known (a fixed --rate)
    up_to: bool = False  # rows the ledger may skip are counted: an upper bound
    windows: str = ""  # "; with --stop-at 06:00 nightly from 22:00: ~77 nights"

    def __str__(self) -> str:
        bound = "up to " if self.up_to else "~"
        text = f"{bound}{self.requests:,} requests at {pace(self.rate)}: {human(self.seconds)}{self.windows}"
        return text + (f" ({self.assumption})" if self.assumption else "")


def estimate(
    config: RunConfig, pacer: Pacer | None, requests: int, *, up_to: bool = False, now: float | None = None
) -> Estimate:
    """The estimate for ``requests`` sends at ``pacer``'s pace (after the preflight's answer);
    without one (no key, ``--no-preflight``), at ``--rate`` or the 60/min auto assumes."""
    rate: float | None = pacer.rate if pacer is not None else None
    assumption = ""
    if config.fixed_rate is not None:
        rate = config.fixed_rate.limit / config.fixed_rate.period
    elif rate is None or pacer is None:
        rate = FALLBACK_RATE.limit / FALLBACK_RATE.period
        assumption = "no X-RateLimit-Limit seen: 60/min assumed"
    elif pacer.model.fallback:
        assumption = "the server sends no X-RateLimit headers: 60/min"
    elif not pacer.model.learner.known:
        assumption = f"the server's window is assumed to last {pacer.period:g}s until one ends"
    seconds = requests / rate if rate > 0 else math.inf
    windows = _windows(config, seconds, time.time() if now is None else now)
    return Estimate(requests, rate, seconds, assumption, up_to, windows)


def _windows(config: RunConfig, seconds: float, now: float) -> str:
    deadline = deadline_in(config, now)
    if deadline is None or seconds <= deadline[0]:
        return ""
    length, option = deadline
    n = math.ceil(seconds / length)
    if config.stop_at is not None and option.startswith("--stop-at"):
        start = time.strftime("%H:%M", time.localtime(now))
        return f"; with {option} nightly from {start}: ~{n:,} nights"
    return f"; with {option} per run: ~{n:,} runs"


def pace(rate: float) -> str:
    """``54/min``, ``9/s``: a rate as a person reads it."""
    if rate >= 100:
        return f"{rate:,.0f}/s"
    return f"{rate:.3g}/s" if rate >= 10 else f"{rate * 60:.3g}/min"


def human(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "never"
    if seconds < 90:
        return f"~{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"~{format_duration(round(seconds / 60) * 60)}"
    return f"~{seconds / 86400:.0f} days"

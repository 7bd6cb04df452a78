"""How long a run will take, said before sending: the requests it will make at the pace the
preflight's ``X-RateLimit-Limit`` allows (less ``--headroom``, over the window), or ``--rate``.

The trap: the server's window is unknown until one is seen to end, and the pace is the limit
*per window*: the same 45 may be 45/s or 45/min.  Until then the estimate is the range the
unknown window allows (from a one-second window to a minute, the longest the pacer assumes), not
one duration; once a window has ended the runner logs the estimate again (:func:`estimate` with
the learnt pace).  With a deadline it also says how many windows (nights, runs) the work needs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ..config import RunConfig
from ..pacing.pacer import FALLBACK_RATE, Pacer
from ..schedule import format_duration
from .deadline import deadline_in

#: The shortest server window the range allows for (Laravel's throttle counts whole seconds).
SHORTEST_WINDOW = 1.0


@dataclass(frozen=True, slots=True)
class Estimate:
    requests: int
    rate: float  # requests per second; while the window is unknown, the slowest (a minute's)
    seconds: float  # at ``rate``: the longest the run may take
    assumption: str  # "" when the pace is known (a fixed --rate, or a window seen to end)
    windows: str = ""  # "; with --stop-at 06:00 nightly from 22:00: ~77 nights"
    #: While the window is unknown: the pace of a one-second window, and the duration at it.
    fastest: float | None = None
    shortest: float | None = None

    def __str__(self) -> str:
        n = f"~{self.requests:,} requests at "
        if self.fastest is None or self.shortest is None:
            text = f"{n}{pace(self.rate)}: {human(self.seconds)}{self.windows}"
        else:
            text = (
                f"{n}{pace(self.fastest)} to {pace(self.rate)}: "
                f"{human(self.shortest)} to {human(self.seconds)}{self.windows}"
            )
        return text + (f" ({self.assumption})" if self.assumption else "")


def estimate(config: RunConfig, pacer: Pacer | None, requests: int, *, now: float | None = None) -> Estimate:
    """The estimate for ``requests`` sends at ``pacer``'s pace (after the preflight's answer);
    without one (no key, ``--no-preflight``), at ``--rate`` or the 60/min auto assumes.  While
    the server's window is unknown, the range from a one-second window to the assumed one."""
    rate: float | None = pacer.rate if pacer is not None else None
    assumption = ""
    fastest: float | None = None
    if config.fixed_rate is not None:
        rate = config.fixed_rate.limit / config.fixed_rate.period
    elif rate is None or pacer is None:
        rate = FALLBACK_RATE.limit / FALLBACK_RATE.period
        assumption = "no X-RateLimit-Limit seen: 60/min assumed"
    elif pacer.model.fallback:
        assumption = "the server sends no X-RateLimit headers: 60/min"
    elif not pacer.model.learner.known:
        fastest = rate * pacer.period / SHORTEST_WINDOW  # the same budget per window, a shorter one
        assumption = (
            f"the server's window is not known until one ends: {format_duration(SHORTEST_WINDOW)} "
            f"to {format_duration(pacer.period)}"
        )
    seconds = requests / rate if rate > 0 else math.inf
    at = time.time() if now is None else now
    if fastest is None:
        return Estimate(requests, rate, seconds, assumption, _windows(config, seconds, at))
    shortest = requests / fastest
    return Estimate(
        requests, rate, seconds, assumption, _windows(config, seconds, at, shortest), fastest, shortest
    )


def _windows(config: RunConfig, seconds: float, now: float, shortest: float | None = None) -> str:
    """How many runs (or nights) ``seconds`` of work need under the run's deadline ("" when one
    is enough, or there is no deadline); ``shortest``: the low end of a range."""
    deadline = deadline_in(config, now)
    if deadline is None or seconds <= deadline[0]:
        return ""
    length, option = deadline
    most = math.ceil(seconds / length)
    count = f"~{most:,}"
    if shortest is not None and (least := max(1, math.ceil(shortest / length))) != most:
        count = f"~{least:,} to ~{most:,}"
    if config.stop_at is not None and option.startswith("--stop-at"):
        start = time.strftime("%H:%M", time.localtime(now))
        return f"; with {option} nightly from {start}: {count} nights"
    return f"; with {option} per run: {count} runs"


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

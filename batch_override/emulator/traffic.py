"""What else happens on the server: other traffic on the same key, and a maintenance stretch.

Other traffic (``--other-traffic RATE[:BURST]``) is the customer's own app, a colleague's
backfill: ``RATE`` requests a second on average, in bursts of ``BURST`` at once (1: evenly
spaced), from the moment the emulator starts, counted against the first API key's window.  It
is played lazily: before the throttle counts a request (or stats are read), every request of
the other traffic due by then is counted at its own time, in order.  A fixed window depends
only on the order and times of its hits, so this is exactly what a real neighbour would do,
with a fake clock as with the real one, and no task to cancel.  The other traffic does not
retry a 429; it counts it.

Maintenance (``--maintenance AFTER:SECONDS[:RETRY_AFTER]``) is Laravel's ``php artisan down
--retry=RETRY_AFTER``: from ``AFTER`` seconds after the start, for ``SECONDS``, every request is
answered 503 ``{"message": "Service Unavailable"}`` with ``Retry-After`` (when given) and no
``X-RateLimit`` headers; it is a global middleware, so nothing is authenticated or counted,
the other traffic's requests neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from batch_override.emulator import responses
from batch_override.emulator.config import EmulatorConfig
from batch_override.emulator.faults import Failure
from batch_override.emulator.throttle import FixedWindowThrottle


@dataclass(slots=True)
class OtherTraffic:
    """The neighbour's schedule: burst ``n`` of ``burst`` requests goes at ``start + n * burst / rate``."""

    rate: float
    burst: int
    start: float
    key: str
    accepted: int = 0
    throttled: int = 0
    _bursts: int = field(default=0, init=False)  # bursts played so far

    def play(self, throttle: FixedWindowThrottle, now: float, paused: Maintenance | None) -> None:
        """Count every request due by ``now`` (none during maintenance: the server turns it away)."""
        every = self.burst / self.rate
        due = math.floor((now - self.start) / every) + 1  # bursts due by now, the first at start
        for n in range(self._bursts, max(self._bursts, due)):
            at = self.start + n * every
            if paused is not None and paused.active(at):
                continue
            for _ in range(self.burst):
                if throttle.hit(self.key, at, other=True).allowed:
                    self.accepted += 1
                else:
                    self.throttled += 1
        self._bursts = max(self._bursts, due)

    def stats(self) -> dict[str, float | int]:
        return {
            "rate": self.rate,
            "burst": self.burst,
            "accepted": self.accepted,
            "throttled": self.throttled,
        }


@dataclass(frozen=True, slots=True)
class Maintenance:
    """503 from ``start`` for ``seconds``, with ``Retry-After: retry_after`` unless None."""

    start: float
    seconds: float
    retry_after: int | None

    def active(self, now: float) -> bool:
        return self.start <= now < self.start + self.seconds

    def headers(self) -> dict[str, str] | None:
        return None if self.retry_after is None else {"Retry-After": str(self.retry_after)}

    def stats(self) -> dict[str, float | int | None]:
        """When it ran (unix seconds, the arrivals' clock) and its ``Retry-After``."""
        return {"start": self.start, "end": self.start + self.seconds, "retry_after": self.retry_after}


@dataclass(frozen=True, slots=True)
class Traffic:
    """What else happens on one emulator: its other traffic and its maintenance (either None)."""

    other: OtherTraffic | None
    maintenance: Maintenance | None

    @classmethod
    def of(cls, config: EmulatorConfig, started: float) -> Traffic:
        other = None
        if config.other_traffic is not None:
            rate, burst = config.other_traffic
            other = OtherTraffic(rate, burst, started, config.api_keys[0])
        maintenance = None
        if config.maintenance is not None:
            after, seconds, retry_after = config.maintenance
            maintenance = Maintenance(started + after, seconds, retry_after)
        return cls(other, maintenance)

    def down(self, now: float) -> tuple[bytes, dict[str, str] | None, str] | None:
        """The 503's body, headers and content type while the maintenance is on at ``now``."""
        if self.maintenance is None or not self.maintenance.active(now):
            return None
        page, kind = responses.FAILURES[Failure.SERVICE_UNAVAILABLE]
        return page, self.maintenance.headers(), kind

    def play(self, throttle: FixedWindowThrottle | None, now: float) -> None:
        """Count the other traffic due by ``now``."""
        if self.other is not None and throttle is not None:
            self.other.play(throttle, now, self.maintenance)

    def stats(self, throttle: FixedWindowThrottle | None, now: float) -> dict[str, Any]:
        """``other_traffic`` for ``GET /_emulator/stats``, once what is due by ``now`` is counted."""
        self.play(throttle, now)
        found: dict[str, Any] = {} if self.other is None else {"other_traffic": self.other.stats()}
        if self.maintenance is not None:
            found["maintenance"] = self.maintenance.stats()
        return found

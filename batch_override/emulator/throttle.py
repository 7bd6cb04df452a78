"""Laravel's ``ThrottleRequests`` middleware: a fixed window per API key.

The contract, as Laravel implements it (and as NOTES.md describes it):

- A key's window opens at its first request and lasts ``period`` seconds, whatever happens after.
- The first ``limit`` requests of a window pass; each passed response says how many remain.
- Later requests in the same window get 429 and do *not* count, so hammering does not extend it.
- The first request after the window's end opens a new window.

``laravel_windows`` copies what Laravel 8's ``RateLimiter`` does with whole-second timestamps,
which depends on its cache store:

- ``"file"``: the store expires the window at ``floor(start + period)``, so a 15 s window lasts
  between 14 and 15 s; ``Retry-After`` and ``X-RateLimit-Reset`` are exact.
- ``"redis"``: Redis expires the window exactly ``period`` after its first request, but the
  headers still come from the whole-second timer ``floor(start + period)``: ``X-RateLimit-Reset``
  is up to a second early, and in the window's last fraction of a second ``Retry-After`` is 0
  while the server still answers 429 (seen on Laravel 8.83 with Redis, ``tests/laravel``).

The trap for clients: this is not a leaky bucket. A client that bursts ``limit`` requests spends
the whole window in its first instant and is then answered 429 until the window ends, however slowly
it retries. ``Retry-After`` is therefore the time to the *window's end*, not a fixed backoff.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field


@dataclass(slots=True)
class Window:
    """One fixed window of one key; kept after it ends so stats can show the whole history."""

    key_id: str
    start: float
    end: float
    accepted: int = 0  # everyone's: the server's count (X-RateLimit-Limit - Remaining)
    throttled: int = 0
    # Of those, the emulated other traffic's (``--other-traffic``): the client's are the rest.
    other_accepted: int = 0
    other_throttled: int = 0
    # Accepted requests per tenth of the period: shows a burst that the totals hide.
    tenths: list[int] = field(default_factory=lambda: [0] * 10)

    def stats(self, *, other: bool = False) -> dict[str, object]:
        """The window as ``GET /_emulator/stats`` lists it (the key only as its label; the other
        traffic's counts only when there is other traffic)."""
        stats = asdict(self)  # a copy: the lists handed out never alias the live window
        stats["key"] = stats.pop("key_id")
        if not other:
            del stats["other_accepted"], stats["other_throttled"]
        return stats


@dataclass(frozen=True, slots=True)
class Decision:
    """The throttle's answer for one request.

    ``remaining`` is for ``X-RateLimit-Remaining``. When ``allowed`` is false, ``retry_after``
    (whole seconds, >= 1, but >= 0 with Laravel's Redis windows) and ``reset`` (unix seconds,
    integer) are for ``Retry-After`` and ``X-RateLimit-Reset``; when it is true they are 0.
    """

    allowed: bool
    remaining: int
    retry_after: int = 0
    reset: int = 0


@dataclass(slots=True)
class FixedWindowThrottle:
    """Counts requests per key in fixed windows, reading time only from the injected ``clock``.

    ``key_id`` turns a key into the label stored in ``windows`` (stats must never show the key).
    Single-threaded by design: ``hit`` never awaits, so on one event loop it is atomic.
    """

    limit: int
    period: float
    clock: Callable[[], float]
    key_id: Callable[[str], str]
    laravel_windows: str | None = None
    _current: dict[str, Window] = field(default_factory=dict, init=False, repr=False)
    # Appended as windows open, so it is in order of start for a clock that never goes back.
    windows: list[Window] = field(default_factory=list, init=False)

    def hit(self, key: str, at: float | None = None, *, other: bool = False) -> Decision:
        """Count one request for ``key`` now (or at ``at``, not before an earlier hit), unless the
        key's current window is spent.  ``other``: the emulated other traffic's request."""
        now = self.clock() if at is None else at
        window = self._current.get(key)
        if window is None or now >= window.end:
            end = now + self.period
            if self.laravel_windows == "file":
                end = math.floor(end)
            window = Window(self.key_id(key), now, end)
            self._current[key] = window
            self.windows.append(window)
        if window.accepted < self.limit:
            window.accepted += 1
            window.other_accepted += other
            window.tenths[min(9, int((now - window.start) * 10 / self.period))] += 1
            return Decision(True, self.limit - window.accepted)
        window.throttled += 1
        window.other_throttled += other
        if self.laravel_windows == "redis":
            timer = math.floor(window.start + self.period)
            return Decision(False, 0, max(0, timer - math.floor(now)), timer)
        # Rounded up, as a client that waits exactly Retry-After seconds must find the window over.
        retry_after = max(1, math.ceil(window.end - now))
        return Decision(False, 0, retry_after, math.ceil(window.end))

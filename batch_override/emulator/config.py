"""The emulator's configuration: one immutable value object, validated once at construction.

Everything the server does is decided by an :class:`EmulatorConfig` and the requests it receives;
there is no global state and no environment lookup, so two emulators in one process never interfere.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

DEMO_API_KEY: Final = "demo-key-0000"
"""The documented default key: the emulator accepts it unless told otherwise."""

Media = Literal["image", "video", "audio"]
MEDIA: Final[tuple[Media, ...]] = ("image", "video", "audio")

Status = Literal["classified", "not_classified", "no_completed_request", "expired"]
STATUSES: Final[tuple[Status, ...]] = ("classified", "not_classified", "no_completed_request", "expired")

Unknown = Literal["no_request", "classified"]
UNKNOWN_CHOICES: Final[tuple[Unknown, ...]] = ("no_request", "classified")

LARAVEL_STORES: Final = (None, "file", "redis")


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How an emulated identifAI server behaves.

    - ``api_keys``: keys answered normally. Any other key (or none) gets 401.
    - ``forbidden_keys``: keys that are known but not allowed: 403. A key listed here gets 403 even
      if it is not also in ``api_keys``.
    - ``rate_limit``: ``(N, seconds)``, Laravel's fixed window per key; ``None`` turns throttling off.
    - ``states``: ``(media, hash) -> status``; hashes are matched exactly (case-sensitive), as sent.
    - ``unknown``: what a ``(media, hash)`` missing from ``states`` means: ``"no_request"`` (400
      "You haven't got any request...") or ``"classified"`` (accepts every override; handy for load).
    - ``latency_ms``: added before every override request is answered, including 401/429; with
      ``latency_p99_ms`` it is the median of a lognormal delay drawn per request from ``seed``.
    - ``capacity`` / ``service_ms``: at most ``capacity`` requests (``None``: unlimited) are served
      at once, each for ``service_ms``; the rest queue, so latency grows with load.
    - ``rate_headers``: ``False`` strips ``X-RateLimit-*`` and ``Retry-After`` from every answer, as
      a proxy in front of the server may; the throttle still answers 429.
    - ``laravel_windows``: ``None`` (exact windows and headers), or Laravel's whole-second timer as
      its ``"file"`` store (the window ends at ``floor(start + period)``) or its ``"redis"`` store
      (the window lasts exactly ``period``, the headers say ``floor(start + period)``, and
      ``Retry-After`` may be 0) expires it; see ``throttle.py``.
    - ``fail_rate`` / ``drop_rate`` / ``drop_after_record_rate``: fault probabilities, consecutive
      bands of one draw, so their sum must not exceed 1. Decided from ``seed`` (see ``faults.py``).
    - ``other_traffic``: ``(rate, burst)``: another client on the first of ``api_keys``, ``rate``
      requests a second in bursts of ``burst`` (1: evenly spaced), from the emulator's start;
      needs ``rate_limit`` (see ``traffic.py``).  ``None``: the client is alone on its key.
    - ``maintenance``: ``(after, seconds, retry_after)``: Laravel's maintenance mode from ``after``
      seconds after the start for ``seconds``: 503 with ``Retry-After: retry_after`` (``None``:
      no such header) and no rate-limit headers.
    - ``latency_jump``: ``(after, median_ms, p99_ms)``: from ``after`` seconds after the start, every
      request's round trip is ``median_ms`` (lognormal with ``p99_ms`` unless it is ``None``, as
      ``latency_ms``/``latency_p99_ms``) instead; decided as the request arrives (see ``network.py``).
    - ``stuck_remaining``: every answer the throttle passes says ``X-RateLimit-Remaining: 0`` (a
      broken proxy or cache) while the throttle goes on counting and accepting up to the limit;
      needs ``rate_limit`` and the rate headers.
    - ``clock``: unix seconds. The throttle reads only this, so tests inject a fake clock.

    Trap: ``api_keys`` must be a tuple (or list) of keys; a bare string is rejected rather than
    silently split into one-character keys.
    """

    api_keys: tuple[str, ...] = (DEMO_API_KEY,)
    forbidden_keys: tuple[str, ...] = ()
    rate_limit: tuple[int, float] | None = None
    states: Mapping[tuple[str, str], str] = field(default_factory=dict)
    unknown: str = "no_request"
    latency_ms: float = 0
    latency_p99_ms: float | None = None
    capacity: int | None = None
    service_ms: float = 0
    rate_headers: bool = True
    laravel_windows: str | None = None
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    drop_after_record_rate: float = 0.0
    seed: int = 0
    other_traffic: tuple[float, int] | None = None
    maintenance: tuple[float, float, int | None] | None = None
    latency_jump: tuple[float, float, float | None] | None = None
    stuck_remaining: bool = False
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        # Normalising here (a frozen dataclass allows it only through object.__setattr__) means every
        # later reader can trust the types instead of re-checking them per request.
        object.__setattr__(self, "api_keys", _keys("api_keys", self.api_keys))
        object.__setattr__(self, "forbidden_keys", _keys("forbidden_keys", self.forbidden_keys))
        if self.rate_limit is not None:
            limit, period = self.rate_limit
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValueError("rate_limit: the number of requests must be an integer >= 1")
            if not math.isfinite(period) or period <= 0:
                raise ValueError("rate_limit: the window must be a positive number of seconds")
            object.__setattr__(self, "rate_limit", (limit, float(period)))
        for (media, _hash), status in self.states.items():
            if media not in MEDIA:
                raise ValueError(f"states: unknown media {media!r} (expected one of {', '.join(MEDIA)})")
            if status not in STATUSES:
                raise ValueError(f"states: unknown status {status!r} (expected one of {', '.join(STATUSES)})")
        if self.unknown not in UNKNOWN_CHOICES:
            raise ValueError(f"unknown: must be one of {', '.join(UNKNOWN_CHOICES)}, not {self.unknown!r}")
        if not math.isfinite(self.latency_ms) or self.latency_ms < 0:
            raise ValueError("latency_ms: must be a finite number >= 0")
        p99 = self.latency_p99_ms
        if p99 is not None and not (self.latency_ms > 0 and math.isfinite(p99) and p99 >= self.latency_ms):
            raise ValueError("latency_p99_ms: needs a median latency_ms > 0 and must be >= it (and finite)")
        if self.capacity is not None and (isinstance(self.capacity, bool) or self.capacity < 1):
            raise ValueError("capacity: must be an integer >= 1 (or None: unlimited)")
        if not math.isfinite(self.service_ms) or self.service_ms < 0:
            raise ValueError("service_ms: must be a finite number >= 0")
        if self.laravel_windows not in LARAVEL_STORES:
            raise ValueError(f"laravel_windows: None, 'file' or 'redis', not {self.laravel_windows!r}")
        if self.laravel_windows and (self.rate_limit is None or self.rate_limit[1] < 1):
            # Laravel's throttle breaks below one second (the decay is cast to whole seconds).
            raise ValueError("laravel_windows: needs a rate_limit whose window is at least 1 second")
        if self.other_traffic is not None:
            rate, burst = self.other_traffic
            if not (math.isfinite(rate) and rate > 0) or isinstance(burst, bool) or burst < 1:
                raise ValueError("other_traffic: (rate > 0 per second, burst >= 1 requests)")
            if self.rate_limit is None:
                raise ValueError("other_traffic: needs a rate_limit (there is no count to share otherwise)")
        if self.maintenance is not None:
            after, seconds, retry_after = self.maintenance
            if not (math.isfinite(after) and after >= 0 and math.isfinite(seconds) and seconds > 0):
                raise ValueError("maintenance: (after >= 0, seconds > 0, retry_after) in seconds")
            if retry_after is not None and (isinstance(retry_after, bool) or retry_after < 0):
                raise ValueError("maintenance: retry_after must be whole seconds >= 0 (or None)")
        if self.latency_jump is not None:
            after, median, p99 = self.latency_jump
            if not (math.isfinite(after) and after >= 0 and math.isfinite(median) and median >= 0):
                raise ValueError("latency_jump: (after >= 0 seconds, median >= 0 ms, p99 ms or None)")
            if p99 is not None and not (median > 0 and math.isfinite(p99) and p99 >= median):
                raise ValueError("latency_jump: a p99 needs a median > 0 and must be >= it (and finite)")
        if self.stuck_remaining and (self.rate_limit is None or not self.rate_headers):
            raise ValueError("stuck_remaining: needs a rate_limit and its headers (rate_headers=True)")
        rates = {
            "fail_rate": self.fail_rate,
            "drop_rate": self.drop_rate,
            "drop_after_record_rate": self.drop_after_record_rate,
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name}: must be a probability in [0, 1], not {rate!r}")
        # A small tolerance so that e.g. 0.7 + 0.2 + 0.1 is not rejected for float rounding.
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fail_rate + drop_rate + drop_after_record_rate must not exceed 1")


def _keys(name: str, keys: object) -> tuple[str, ...]:
    if isinstance(keys, str) or not isinstance(keys, tuple | list):
        raise TypeError(f"{name}: expected a tuple of keys")
    if not all(isinstance(key, str) and key for key in keys):
        # The message never echoes the keys: they are secrets.
        raise ValueError(f"{name}: every key must be a non-empty string")
    return tuple(keys)

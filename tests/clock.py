"""The tests' one virtual clock: time that moves only when a test moves it (trio's ``MockClock`` in spirit).

Inject the clock itself where the code takes a ``clock: Callable[[], float]`` (the pacer, the
breaker, the concurrency meter, the emulator's throttle): calling it reads the time, as
:meth:`VirtualClock.now` does.  :meth:`~VirtualClock.advance` moves it; ``await clock.sleep(s)``
moves it by ``s`` and then lets the other ready tasks run once, so a simulated sleeper never waits
on the wall clock.

The trap: :meth:`~VirtualClock.sleep` does not wait for anything else to happen; code that sleeps
on :func:`asyncio.sleep` itself (not on an injected sleep) still sleeps for real, however far the
clock has moved.
"""

from __future__ import annotations

import asyncio

#: Where the ``clock`` fixture starts: a Unix time with a fractional second, so code that rounds
#: to whole seconds (Laravel's windows, Retry-After) is exercised off the second boundary.
START = 1_700_000_000.25


class VirtualClock:
    """A clock the test moves by hand; it never goes backwards."""

    def __init__(self, start: float = START) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds} s)")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` (none if negative, as :func:`asyncio.sleep`), then yield once."""
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

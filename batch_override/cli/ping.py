"""``--ping-url URL``: a dead man's switch in the healthchecks.io convention.

``URL/start`` when the run starts, then ``URL`` when it exits 0 or ``URL/<exit code>`` otherwise
(healthchecks.io, Cronitor's and Uptime Kuma's push monitors read the same shape), so a job that
stopped running at all is noticed by the absence of pings, and a failed one by its code.  The
final ping's body is the run's summary (what the on-call person reads in the check's log).

Contract:
- Every ping of a run shares one total deadline (:data:`PING_TIMEOUT`, 10 s): a receiver that
  hangs costs the run at most that, however many pings.  A ping never raises and never changes
  the exit code; any failure (unreachable, slow, an answer that is not 2xx) is one warning per run.
- Nothing of the API goes with it: no key, no cookie, no auth header.  Redirects are not
  followed (a 3xx is a failure), and ``HTTPS_PROXY``/``NO_PROXY`` are honoured as for the API.

Trap: the URL is a capability (whoever knows it can ping the check), so messages name its
scheme and host only, and a job file (``ping_url = ...``) keeps it out of ``ps``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp

from ..errors import ExitCode, first_line
from ..sending.client import env_proxy, user_agent
from ..urls import where

log = logging.getLogger("batch_override")

#: Seconds all the pings of one run may take together.
PING_TIMEOUT = 10.0
#: The final ping's body is cut here (healthchecks.io keeps the first 100 kB).
MAX_BODY = 10_000


class Pinger:
    """The pings of one run, under one deadline (``budget`` seconds, from the first ping)."""

    def __init__(
        self, url: str, *, budget: float = PING_TIMEOUT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.url = url.rstrip("/")
        self.budget = budget
        self._clock = clock
        self._deadline: float | None = None
        self._warned = False

    def start(self) -> None:
        """``URL/start``."""
        self._ping(self.url + "/start", b"")

    def finish(self, exit_code: int, body: str = "") -> None:
        """``URL`` for exit 0, else ``URL/<exit code>``, with ``body`` (the summary)."""
        url = self.url if exit_code == ExitCode.OK else f"{self.url}/{exit_code}"
        self._ping(url, body.encode("utf-8")[:MAX_BODY])

    def _ping(self, url: str, body: bytes) -> None:
        if self._deadline is None:
            self._deadline = self._clock() + self.budget
        left = self._deadline - self._clock()
        if left <= 0:
            self._warn(f"no time left of its {self.budget:g} s")
            return
        try:
            status = asyncio.run(_post(url, body, left))
        except TimeoutError:
            self._warn(f"no answer within its {self.budget:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            self._warn(first_line(exc) or type(exc).__name__)
        except Exception as exc:  # a ping must never change how the run ends
            self._warn(f"{type(exc).__name__}: {first_line(exc)}")
        else:
            if not 200 <= status < 300:
                followed = " (redirects are not followed)" if 300 <= status < 400 else ""
                self._warn(f"HTTP {status}{followed}")

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("cannot ping --ping-url %s: %s", where(self.url), why)


async def _post(url: str, body: bytes, deadline: float) -> int:
    proxy, proxy_auth = env_proxy(url)
    timeout = aiohttp.ClientTimeout(total=deadline)
    async with (
        asyncio.timeout(deadline),  # the name lookup and the connection's close too
        aiohttp.ClientSession(
            timeout=timeout, trust_env=False, headers={"User-Agent": user_agent()}
        ) as session,
        session.post(url, data=body, allow_redirects=False, proxy=proxy, proxy_auth=proxy_auth) as response,
    ):
        return response.status


__all__ = ["PING_TIMEOUT", "Pinger"]

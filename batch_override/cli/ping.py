"""``--ping-url URL``: a dead man's switch in the healthchecks.io convention.

``URL/start`` when the run starts, then ``URL`` when it exits 0 or ``URL/<exit code>`` otherwise
(healthchecks.io, Cronitor's and Uptime Kuma's push monitors read the same shape), so a job that
stopped running at all is noticed by the absence of pings, and a failed one by its code.  The
final ping's body is the run's summary (what the on-call person reads in the check's log).

Contract:
- Each ping has its own deadline (:data:`PING_TIMEOUT`, 10 s, from its own send): the final ping
  goes out after a run of any length, and a receiver that hangs costs the run at most 10 s a ping.
  A ping never raises and never changes the exit code; a failure (unreachable, slow, an answer
  that is not 2xx) is one warning per ping.  The final ping's is printed even under ``--quiet``:
  the check will alert for that night, and cron mails what is printed.
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
from .logs import warn_always

log = logging.getLogger("batch_override")

#: Seconds each ping may take, from its own send.
PING_TIMEOUT = 10.0
#: The final ping's body is cut here (healthchecks.io keeps the first 100 kB).
MAX_BODY = 10_000


class Pinger:
    """The pings of one run, each under its own deadline (``budget`` seconds from its send).

    ``clock`` times each ping (a ``-v`` line says how long it took); a test injects one to stand
    for a run of hours between the start and the final ping.  The trap this class used to fall
    in: one deadline counted from the start ping left no time for the final ping of any run
    longer than 10 s, so the check alerted after every real night.
    """

    def __init__(
        self, url: str, *, budget: float = PING_TIMEOUT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.url = url.rstrip("/")
        self.budget = budget
        self._clock = clock

    def start(self) -> None:
        """``URL/start``; a failure is a warning (``--quiet`` hides it)."""
        if (why := self._ping(self.url + "/start", b"")) is not None:
            log.warning("cannot ping --ping-url %s (start): %s", where(self.url), why)

    def finish(self, exit_code: int, body: str = "") -> None:
        """``URL`` for exit 0, else ``URL/<exit code>``, with ``body`` (the summary).  A failure
        is a warning printed even under ``--quiet``: the check will alert for this run."""
        url = self.url if exit_code == ExitCode.OK else f"{self.url}/{exit_code}"
        if (why := self._ping(url, body.encode("utf-8")[:MAX_BODY])) is not None:
            warn_always(
                log,
                "cannot ping --ping-url %s (exit %d): %s; the check will see this run as missed",
                where(self.url),
                exit_code,
                why,
            )

    def _ping(self, url: str, body: bytes) -> str | None:
        """Why the ping to ``url`` failed, or None when it was answered 2xx in time."""
        sent = self._clock()
        try:
            status = asyncio.run(_post(url, body, self.budget))
        except TimeoutError:
            return f"no answer within its {self.budget:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return first_line(exc) or type(exc).__name__
        except Exception as exc:  # a ping must never change how the run ends
            return f"{type(exc).__name__}: {first_line(exc)}"
        if not 200 <= status < 300:
            followed = " (redirects are not followed)" if 300 <= status < 400 else ""
            return f"HTTP {status}{followed}"
        log.debug("pinged --ping-url %s: HTTP %d in %.2f s", where(self.url), status, self._clock() - sent)
        return None


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

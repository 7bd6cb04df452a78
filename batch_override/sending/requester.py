"""One request's machinery: a concurrency slot, then the pacer, then the client; counts what was sent.

Contract: :meth:`Requester.attempt` returns None when the run stopped before the request could be
sent (nothing was sent) and :data:`INTERRUPTED` when the grace period cut it off in flight (it
may have reached the server: a rerun sends it again, and "already submitted" is a success).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ..outcome import Action, ErrorCode, Outcome, Verdict
from ..pacing.concurrency import Concurrency
from ..pacing.pacer import Pacer
from ..stopping import Stopper
from .client import Answer, Client

log = logging.getLogger("batch_override")

#: The answer of a request cut off in flight at the end of the grace period.
INTERRUPTED = Answer(
    Verdict(
        Outcome.ABORTED,
        ErrorCode.INTERRUPTED,
        Action.DONE,
        "request cut off at the end of the grace period; a rerun sends it again",
    ),
    None,
    {},
)


class Requester:
    """One request at a time under a concurrency slot and the pacer; counts what was sent."""

    def __init__(self, client: Client, pacer: Pacer, stopper: Stopper, slots: Concurrency) -> None:
        self.client = client
        self.pacer = pacer
        self.slots = slots
        self.requests = 0
        self._stopper = stopper

    async def attempt(
        self,
        media: str,
        sha256: str,
        body: bytes,
        turn: Callable[[], Awaitable[bool]] | None = None,
        on_sent: Callable[[], object] | None = None,
    ) -> Answer | None:
        """One request; None when the run stopped before it could be sent, :data:`INTERRUPTED`
        when the grace period cut it off in flight.  ``turn`` (the outage breaker's) is awaited
        last, once the slot and the pacer's turn are had: True when it made the sender wait (the
        pacer's turn is then stale, and taken again).  Asked before them, every sender queued at
        the slot or the pacer when the breaker opened sent once more (64 during an outage).
        ``on_sent`` is called as the request goes out (from then on it may reach the server)."""
        await self.slots.acquire()  # a slot first: a sender waiting at the pacer is ready to go
        try:
            return await self._paced(media, sha256, body, turn, on_sent)
        finally:
            self.slots.release()

    async def _paced(
        self,
        media: str,
        sha256: str,
        body: bytes,
        turn: Callable[[], Awaitable[bool]] | None,
        on_sent: Callable[[], object] | None,
    ) -> Answer | None:
        ticket = await self.pacer.acquire()
        if ticket is not None and turn is not None and await turn():
            self.pacer.observe(ticket, None, {})  # not sent: nothing to learn
            ticket = await self.pacer.acquire()
        if ticket is None:
            return None
        self.requests += 1
        if on_sent is not None:
            on_sent()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("POST %s %s (%d bytes)", media, sha256, len(body))
        slots = self.slots
        slots.pace(self.pacer.rate)
        slots.started()
        answer: Answer | None = None
        try:
            answer = await self.client.post(media, sha256, body)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and self._stopper.was_cut_off(task):
                return INTERRUPTED
            raise
        finally:
            slots.finished(_capacity_latency(answer, ticket.sent_at))
        self.pacer.observe(ticket, answer.status, answer.headers)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "  -> %s %s in %.0f ms (%s)",
                answer.status or "no answer",
                answer.verdict.error_code or answer.verdict.outcome.value,
                (time.monotonic() - ticket.sent_at) * 1000,
                slots.describe(),
            )
        return answer


def _capacity_latency(answer: Answer | None, sent_at: float) -> float | None:
    """The answer's latency when it tells of the server's capacity: not a 429 (the pacer's
    business), a 5xx or no answer at all (the outage breaker's)."""
    if answer is None or answer.status is None or answer.status == 429 or answer.status >= 500:
        return None
    return time.monotonic() - sent_at

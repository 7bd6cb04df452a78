"""The senders: each takes rows from the queue and works on one at a time until it is finished.

Contract: a sender never dies with its row.  A row that raises is recorded ``aborted`` and
stops the run (exit 70); a row still being worked on when the grace period ends is cut off
and recorded (``interrupted`` if its request was in flight); either way the sender goes back
to the queue, so the queue is always drained and the producer can never block on it.  Only a
cancel of the run itself ends a sender early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from ..config import RunConfig
from ..errors import ExitCode
from ..outcome import Action, Outcome, Verdict
from ..pacing.concurrency import Concurrency
from ..pacing.pacer import Pacer, retry_after_seconds
from ..sending.breaker import Breaker, OutageTooLong
from ..sending.client import BODIES, EMPTY_BODY, Answer, Client
from ..sending.failures import FailureWindow
from ..sending.retry import Step, backoff_delay, decide
from ..stopping import Stopper
from .recorder import Item, Recorder

log = logging.getLogger("batch_override")

#: The answer of a request cut off in flight at the end of the grace period.
INTERRUPTED = Answer(
    Verdict(
        Outcome.ABORTED,
        "interrupted",
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
        self, media: str, sha256: str, body: bytes, turn: Callable[[], Awaitable[bool]] | None = None
    ) -> Answer | None:
        """One request; None when the run stopped before it could be sent, :data:`INTERRUPTED`
        when the grace period cut it off in flight.  ``turn`` (the outage breaker's) is awaited
        last, once the slot and the pacer's turn are had: True when it made the sender wait (the
        pacer's turn is then stale, and taken again).  Asked before them, every sender queued at
        the slot or the pacer when the breaker opened sent once more (64 during an outage)."""
        await self.slots.acquire()  # a slot first: a sender waiting at the pacer is ready to go
        try:
            return await self._paced(media, sha256, body, turn)
        finally:
            self.slots.release()

    async def _paced(
        self, media: str, sha256: str, body: bytes, turn: Callable[[], Awaitable[bool]] | None
    ) -> Answer | None:
        ticket = await self.pacer.acquire()
        if ticket is not None and turn is not None and await turn():
            self.pacer.observe(ticket, None, {})  # not sent: nothing to learn
            ticket = await self.pacer.acquire()
        if ticket is None:
            return None
        self.requests += 1
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


class Sender:
    """The senders' shared state: the outage breaker, the failure window, the preflight."""

    def __init__(
        self,
        config: RunConfig,
        requester: Requester,
        breaker: Breaker,
        recorder: Recorder,
        stopper: Stopper,
    ) -> None:
        self.config = config
        self.requester = requester
        self.breaker = breaker
        self.recorder = recorder
        self.stopper = stopper
        self.failures = FailureWindow(config.failure_window, config.max_failure_rate)
        self.last_answer = time.monotonic()
        self.rng = random.Random()
        self._preflight_lock = asyncio.Lock()
        self._preflight_done = not config.preflight

    async def work(self, queue: asyncio.Queue[Item | None]) -> None:
        """One sender: rows from ``queue`` until its ``None``."""
        while (item := await queue.get()) is not None:
            with self.stopper.busy() as task:
                try:
                    await self._work_on(item)
                except asyncio.CancelledError:
                    if not self.stopper.was_cut_off(task):
                        raise
                except OutageTooLong as exc:
                    self.stopper.request(ExitCode.OUTAGE, str(exc))
                except Exception as exc:
                    self.stopper.fail(exc)
            if not item.done:
                self.recorder.abort(item)

    async def _work_on(self, item: Item) -> None:
        if not self.stopper.stops and not self._preflight_done:
            async with self._preflight_lock:
                if not self._preflight_done:
                    await preflight(self, item)
                    self._preflight_done = True
        if not self.stopper.stops:
            await self._process(item)

    async def _process(self, item: Item) -> None:
        attempts = retries = 0
        body = BODIES[item.classification]
        last: Answer | None = None
        while True:
            if self.stopper.stops:
                if last is not None:  # a row mid-retry ends with its last answer
                    self._finish(item, last, attempts)
                return  # else the caller records it aborted
            probe = False

            async def turn() -> bool:
                nonlocal probe
                if not self.breaker.is_open:
                    return False
                probe = await self.breaker.wait_turn()
                return True

            try:
                answer = await self.requester.attempt(item.media, item.hash, body, turn)
            except OutageTooLong as exc:
                self.stopper.request(ExitCode.OUTAGE, str(exc))
                continue
            if answer is None:
                continue  # stopped before sending: the check above ends the row
            if answer is INTERRUPTED:
                self._finish(item, answer, attempts + 1)
                return
            attempts += 1
            last = answer
            action = answer.verdict.action
            if action in (Action.RETRY, Action.THROTTLED):
                self.recorder.retrying(item.row)
            in_outage = False
            if action is Action.RETRY:
                wait = retry_after_seconds(answer.headers)  # a 503's: when service returns
                in_outage = self.breaker.failed(answer.verdict.error_code, probe, item.row, wait)
            else:
                self.breaker.succeeded(probe)
            step, retries = decide(
                action, retries=retries, max_retries=self.config.max_retries, in_outage=in_outage
            )
            if action is Action.THROTTLED:
                self.check_wait(answer)
            elif action is not Action.RETRY:
                self.last_answer = time.monotonic()
            if step is Step.BACK_OFF:
                await self.backoff(retries - 1)
            elif step is not Step.AGAIN:
                self._finish(item, answer, attempts)
                if step is Step.STOP:
                    self.stopper.request(ExitCode.ABORTED, why(answer))
                return

    def _finish(self, item: Item, answer: Answer, attempts: int) -> None:
        verdict = answer.verdict
        outcome, code, message = verdict.outcome, verdict.error_code, verdict.message
        days = self.config.give_up_after_days
        if outcome is Outcome.NOT_READY and days is not None and time.time() - item.first_seen > days * 86400:
            since = time.strftime("%Y-%m-%d", time.gmtime(item.first_seen))
            outcome, code = Outcome.REJECTED, "gave_up"
            message = f"not ready since {since}; gave up after {days:g} days (--give-up-after): {message}"
        self.recorder.finish(item, outcome, code, answer.status, attempts, message)
        reason = self.failures.add(verdict.outcome in (Outcome.FAILED, Outcome.REJECTED))
        if reason is not None:
            self.stopper.request(ExitCode.ABORTED, reason)

    def check_wait(self, answer: Answer) -> None:
        """A 429: stop if the server asks to wait too long, or has throttled us too long."""
        config = self.config
        wait = retry_after_seconds(answer.headers)
        if wait is not None and wait > config.max_wait:
            self.stopper.request(
                ExitCode.OUTAGE,
                f"the server asks to wait {wait:.0f}s (> --max-wait {config.max_wait:g}s): quota spent?",
            )
        elif time.monotonic() - self.last_answer > config.max_outage:
            self.stopper.request(ExitCode.OUTAGE, f"throttled for over --max-outage {config.max_outage:g}s")

    async def backoff(self, n: int) -> None:
        """Sleep before retry ``n``; wake at once when the run stops."""
        delay = backoff_delay(n, base=self.config.backoff_base, cap=self.config.backoff_cap, rng=self.rng)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopper.stopped.wait(), timeout=delay)


async def preflight(sender: Sender, item: Item) -> None:
    """An empty body proves the key works (validation 400) without recording anything."""
    stopper, breaker = sender.stopper, sender.breaker
    tries = 0
    while not stopper.stops:
        tries += 1
        probe = await breaker.wait_turn()
        answer = await sender.requester.attempt(item.media, item.hash, EMPTY_BODY)
        if answer is None or answer is INTERRUPTED:
            return
        verdict = answer.verdict
        if verdict.action is Action.ABORT:
            stopper.request(ExitCode.ABORTED, f"preflight: {why(answer)}")
            return
        if verdict.action is Action.RETRY:
            # Nothing else is in flight: each failed try stands for another sender.
            breaker.failed(verdict.error_code, probe, -tries, retry_after_seconds(answer.headers))
            await sender.backoff(0)
            continue
        breaker.succeeded(probe)
        if verdict.action is Action.THROTTLED:
            sender.check_wait(answer)
            continue
        log.info(
            "preflight: the key is accepted by %s (pacing %s; concurrency %s)",
            sender.config.api_url,
            sender.requester.pacer.describe(),
            sender.requester.slots.describe(),
        )
        return


def why(answer: Answer) -> str:
    """The one-line reason an answer stops the run, with a hint at the fix."""
    verdict = answer.verdict
    hints = {
        "unauthorized": "the API key was refused (401): check IDENTIFAI_API_KEY / --api-key-file",
        "forbidden": "the key is not allowed (403): API access or terms of service",
        "not_found": "404 from the server: is --api-url right?",
        "method_not_allowed": "405 from the server: is --api-url right?",
        "redirect": f"HTTP {answer.status} redirect (not followed): is --api-url right?",
        "tls_error": "the server's TLS certificate is not trusted: use --ca-bundle PEM or SSL_CERT_FILE",
    }
    return hints.get(verdict.error_code, f"{verdict.error_code}: {verdict.message}")

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
import time
from collections.abc import Callable

from ..config import RunConfig
from ..errors import ExitCode
from ..outcome import Action, ErrorCode, Outcome
from ..pacing.backoff import Backoff
from ..pacing.pacer import retry_after_seconds
from ..schedule import format_duration
from ..sending.breaker import Breaker, OutageTooLong
from ..sending.client import BODIES, EMPTY_BODY, Answer
from ..sending.failures import FailureThreshold
from ..sending.requester import INTERRUPTED, Requester
from ..sending.retry import Step, decide, give_up
from ..stopping import Stopper
from .recorder import Item, Recorder

log = logging.getLogger("batch_override")


class Sender:
    """The senders' shared state: the outage breaker, the failure threshold, the preflight."""

    def __init__(
        self,
        config: RunConfig,
        requester: Requester,
        breaker: Breaker,
        recorder: Recorder,
        stopper: Stopper,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock  # the preflight's warnings (the breaker has its own, the same in a run)
        self.requester = requester
        self.breaker = breaker
        self.recorder = recorder
        self.stopper = stopper
        self.failures = FailureThreshold(config.failure_window, config.max_failure_rate)
        self.last_answer = time.monotonic()
        self.retry_backoff = Backoff(config.backoff_base, config.backoff_cap)
        self._preflight_lock = asyncio.Lock()
        self._preflight_done = not config.preflight
        #: Called once the preflight's answer was learnt from (the runner's estimate).
        self.after_preflight: Callable[[], None] | None = None
        #: Called once, at the first answer after which the server's window is known (the
        #: runner's revised estimate, when the first was a range).
        self.on_window_known: Callable[[], None] | None = None

    async def work(self, queue: asyncio.Queue[Item | None]) -> None:
        """One sender: rows from ``queue`` until its ``None``."""
        while (item := await queue.get()) is not None:
            with self.stopper.busy() as task:
                try:
                    await self._work_on(item)
                except asyncio.CancelledError:
                    if not self.stopper.was_cut_off(task):
                        # The run itself is cancelled (asyncio.run ending on a host's exception
                        # cancels every task): the row is recorded as a stop records it.
                        if not item.done:
                            self.recorder.abort(item)
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
                    await preflight(self, item.media, item.hash)
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
                answer = await self.requester.attempt(item.media, item.hash, body, turn, item.sent)
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
            if self.on_window_known is not None and self.requester.pacer.model.learner.known:
                told, self.on_window_known = self.on_window_known, None
                told()
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
        kept = give_up(
            verdict, first_seen=item.first_seen, now=time.time(), days=self.config.give_up_after_days
        )
        self.recorder.finish(item, kept, status=answer.status, attempts=attempts)
        # The answer's own outcome: a row given up on is no sign of a failing server.
        reason = self.failures.add(verdict.outcome in (Outcome.FAILED, Outcome.REJECTED))
        if reason is not None:  # the URL too: a server that is not the API fails every row
            self.stopper.request(ExitCode.ABORTED, f"{reason} (sent to {self.config.api_url})")

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
        delay = self.retry_backoff.delay(n)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopper.stopped.wait(), timeout=delay)


#: Seconds between the preflight's warnings while it waits for a server it cannot reach: half a
#: minute, so that with tries up to 30 s apart (the back-off's cap) one comes at least once a minute.
WARN_EVERY = 30.0


async def preflight(sender: Sender, media: str, sha256: str) -> bool:
    """One POST with an empty body before any row: True when the key is accepted (the API
    answers that body a validation error, and 401 or 403 to a refused key).  Nothing is recorded.

    What no retry can fix stops the run with exit 3 before any row is sent: a refused key, a
    wrong URL (a redirect, 404, 405, a name that does not exist), or a 2xx (the API never accepts
    an empty body: whatever did is not the API, and rows would carry the key to it).  No answer
    (connection refused, a timeout, a resolver that is down, a 5xx) is retried under the outage
    breaker until ``--max-outage`` (:class:`OutageTooLong`, exit 5), with a warning naming the URL
    and the error at once and then at least once a minute: a wrong port is said in a moment, not
    after half an hour of silence.  The trap: the URL is named as configured, which
    :class:`RunConfig` has refused if it carried credentials.
    """
    stopper, breaker, url = sender.stopper, sender.breaker, sender.config.api_url
    silence = _Silence(sender.clock)
    tries = 0
    while not stopper.stops:
        tries += 1
        probe = await breaker.wait_turn()
        answer = await sender.requester.attempt(media, sha256, EMPTY_BODY)
        if answer is None or answer is INTERRUPTED:
            return False
        if (wrong := _wrong_url(answer)) is not None:
            stopper.request(ExitCode.ABORTED, f"preflight: {url}: {wrong}")
            return False
        verdict = answer.verdict
        if verdict.action is Action.RETRY:
            # Nothing else is in flight: each failed try stands for another sender.
            breaker.failed(verdict.error_code, probe, -tries, retry_after_seconds(answer.headers))
            silence.broken(url, answer.detail or f"{verdict.error_code}: {verdict.message}", sender.config)
            await sender.backoff(0)
            continue
        breaker.succeeded(probe)
        if verdict.action is Action.THROTTLED:
            sender.check_wait(answer)
            continue
        log.info(
            "preflight: the key is accepted by %s (pacing %s; concurrency %s)",
            url,
            sender.requester.pacer.describe(),
            sender.requester.slots.describe(),
        )
        if sender.after_preflight is not None:
            sender.after_preflight()
        return True
    return False


def _wrong_url(answer: Answer) -> str | None:
    """Why the preflight's answer shows that no retry can help (a wrong URL or key), else None."""
    if answer.no_such_host:
        return f"{answer.detail}: is --api-url right?"
    if answer.status is not None and 200 <= answer.status < 300:
        return (
            f"HTTP {answer.status} to an empty body, which the API never accepts: not the "
            "identifAI API; is --api-url right?"
        )
    if answer.verdict.action is Action.ABORT:
        return why(answer)
    return None


class _Silence:
    """When the preflight last said it cannot reach the server: at the first failure, then at
    least every :data:`WARN_EVERY` seconds of ``clock``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._first: float | None = None
        self._told: float | None = None

    def broken(self, url: str, error: str, config: RunConfig) -> None:
        now = self._clock()
        if self._first is None:
            self._first = now
        if self._told is not None and now - self._told < WARN_EVERY:
            return
        self._told = now
        log.warning(
            "preflight: no answer from %s: %s; retrying until --max-outage %s (%s so far)",
            url,
            error,
            format_duration(config.max_outage),
            format_duration(round(now - self._first)),
        )


def why(answer: Answer) -> str:
    """The one-line reason an answer stops the run, with a hint at the fix."""
    verdict = answer.verdict
    hints: dict[str, str] = {
        ErrorCode.UNAUTHORIZED: "the API key was refused (401): check IDENTIFAI_API_KEY / --api-key-file",
        ErrorCode.FORBIDDEN: "the key is not allowed (403): API access or terms of service",
        ErrorCode.NOT_FOUND: "404 from the server: is --api-url right?",
        ErrorCode.METHOD_NOT_ALLOWED: "405 from the server: is --api-url right?",
        ErrorCode.REDIRECT: f"HTTP {answer.status} redirect (not followed): is --api-url right?",
        ErrorCode.TLS_ERROR: (
            "the server's TLS certificate is not trusted: use --ca-bundle PEM or SSL_CERT_FILE"
        ),
    }
    return hints.get(verdict.error_code, f"{verdict.error_code}: {verdict.message}")

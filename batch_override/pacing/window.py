"""Learning how long the server's fixed window lasts, from what its answers reveal.

Laravel's throttle opens a window at a key's first request; the window lasts its decay ``D``
(whole seconds), except that the cache expires it at ``floor(first hit + D)``: a real window
lasts between ``D - 1`` and ``D`` seconds.  Answers bound the length of the windows we see:

* a request still counted in a window, sent ``x`` seconds after that window's opener was
  answered: the window lasts longer than ``x`` (:meth:`WindowLearner.longer`);
* a new window opening, answered ``x`` seconds after the previous opener was sent: the previous
  window lasted at most ``x`` (:meth:`WindowLearner.shorter`).

Once a window has ended, the estimate is the longest whole second up to the upper bound, when
that is above the lower bound (pacing the budget over it is safe: a window at most ``hi`` long
gets at most the budget), else the smallest whole second above the lower bound; both bounds
only tighten, so it settles.  (The smallest whole second the bounds allow put a 15 s Laravel
window, first seen to last between 13.3 and 15 s, at 14 s: 38 requests a window on 36.)
Before any window has reopened it is ``guess`` (Laravel's default decay, 60 s), doubled each
time a window outlives it (an hour in six steps).

The trap: bounds come from other windows than the current one, and the server may change its
throttle (or share the key with other traffic): when the bounds contradict each other, the
newest wins rather than the learner getting stuck.
"""

from __future__ import annotations

import math
from typing import NamedTuple

#: The window assumed before answers tell: Laravel's default throttle is 60 per minute.
DEFAULT_WINDOW = 60.0
#: Unanswered sends remembered at most (more than any concurrency; a stop leaves some unanswered).
_FLYING_MAX = 4096


class WindowLearner:
    """The server's window length in seconds, narrowed by answers; read :attr:`estimate`."""

    __slots__ = ("estimate", "guess", "hi", "lo")

    def __init__(self, guess: float = DEFAULT_WINDOW) -> None:
        self.guess = guess
        self.lo = 0.0  # some window lasted longer than this
        self.hi = math.inf  # some window lasted at most this
        self.estimate = guess

    @property
    def known(self) -> bool:
        """True once a window was seen to end (before that, :attr:`estimate` is a guess)."""
        return math.isfinite(self.hi)

    def _settle(self, hint: float = 0.0) -> None:
        lo, hi = self.lo, self.hi
        if not self.known:
            self.estimate = max(self.estimate, hint, math.floor(lo) + 1.0)
        else:
            self.estimate = max(1.0, math.floor(lo) + 1.0)
            # hi is loose by a send's spacing (an exact 15 s window may first show as 16 s, until
            # a later window tightens it): a second too long costs little, a second short costs
            # the headroom.
            if math.floor(hi) > lo:
                self.estimate = max(self.estimate, float(math.floor(hi)))
            if lo >= hi / 2:  # the lower bound came from a search (an hour window): not far below hi
                self.estimate = max(self.estimate, float(math.floor(0.9 * hi)))
            if self.estimate >= hi + 1:
                self.estimate = max(hi, lo)  # not whole seconds (not Laravel): the safe bound

    def longer(self, seconds: float) -> None:
        """A window lasted longer than ``seconds``."""
        if seconds > self.lo:
            self.lo = seconds
            if self.lo >= self.hi + 1:
                self.hi = math.inf  # the server changed its window: forget the old bound
            self._settle()

    def shorter(self, seconds: float) -> None:
        """A window lasted at most ``seconds``."""
        if seconds < self.hi:
            self.hi = max(seconds, 0.0)
            if self.lo >= self.hi + 1:
                self.lo = 0.0
            self._settle()

    def outlived(self, seconds: float) -> None:
        """The window was still open ``seconds`` after it opened, past the estimate: look further
        (double while no window has ended; after that the bounds move the estimate)."""
        before = self.estimate
        self.longer(seconds)
        if not self.known:
            self._settle(hint=2 * before)


class Opener(NamedTuple):
    """The request that opened a server window: its sequence number, send and answer times (None
    while unknown).  The server opened the window in between, so answer time + length is when it
    surely ends."""

    seq: int
    sent: float | None
    answered: float | None


class ServerWindow:
    """Where the client stands in the server's current window, from ``X-RateLimit-Remaining``.

    Contract: :meth:`hold` says how long the next send must wait once ``cap`` sends are counted
    in the current window; the counts and times of the answers feed :attr:`learner`.  The trap:
    answers arrive out of order and after later sends went out.  A count ``c`` covers what the
    server had counted by then, including later sends that overtook this request; of the later
    sends, only those still unanswered may yet be counted.  So the window holds about ``c`` plus
    the later sends still in flight, the most by any answer.  (Adding every later send counts the
    ones that overtook twice: on a long-tailed network that overfills the estimate and holds the
    pacer for nothing; BENCHMARKS.md quotes a run.)  What it leaves out, earlier
    sends still in flight that are counted later, are a long tail's few stragglers: the cap has
    the headroom for them.
    """

    __slots__ = ("_assumed_from", "_exact", "_flying", "learner", "opener", "used")

    def __init__(self, learner: WindowLearner, *, exact: bool = False) -> None:
        self.learner = learner
        self._exact = exact  # paced at the limit itself: only an answer proves a window over
        self.opener: Opener | None = None
        self.used = 0  # sends counted (or assumed counted) in the current window
        self._assumed_from: int | None = None  # first send after we assumed the window ended
        self._flying: dict[int, float] = {}  # sends not answered yet: seq -> sent

    def _end(self) -> float:
        """When the current window ends by a known estimate (opener sent + length), else inf.
        Sends after it are the next window's, which a slow answer would otherwise count here."""
        opener = self.opener
        if self.learner.known and opener is not None and opener.sent is not None and not self._exact:
            return opener.sent + self.learner.estimate
        return math.inf

    def sent(self, seq: int, at: float) -> None:
        self.used += at < self._end()
        flying = self._flying
        if len(flying) >= _FLYING_MAX:  # sends cut off by a stop are never answered
            del flying[next(iter(flying))]
        flying[seq] = at

    def answered(self, seq: int) -> None:
        """Send ``seq`` has its answer (or none will come): no longer in flight."""
        self._flying.pop(seq, None)

    def _later(self, seq: int) -> int:
        """Sends after ``seq``, still in flight, that may count in the current window."""
        end = self._end()
        return sum(other > seq and at < end for other, at in self._flying.items())

    def hold(self, now: float, cap: int, next_seq: int) -> float | None:
        """Seconds the next send must wait for the window to end (0: go now); None: wait for
        the opener's answer, which dates the window."""
        if self.used < cap:
            return 0.0
        opener = self.opener
        if opener is None or opener.answered is None:
            return None
        end = opener.answered + self.learner.estimate
        if now < end:
            return end - now
        self.assume_ended(next_seq)
        return 0.0

    def assume_ended(self, next_seq: int) -> None:
        """The window has surely ended by our estimate: the next send opens a new one."""
        self.used = 0
        self._assumed_from = next_seq

    def counted(self, seq: int, sent: float, counted: int, now: float) -> bool:
        """The answer to send ``seq`` says it was the ``counted``-th of its window.  True when
        this send opened a window and showed, for the first time, how long windows last."""
        opener, learner = self.opener, self.learner
        if counted == 1:
            known = learner.known
            if opener is not None and opener.sent is not None and seq > opener.seq:
                learner.shorter(now - opener.sent)  # the previous window ended before this one opened
            if opener is None or seq >= opener.seq:
                self.opener, self._assumed_from = Opener(seq, sent, now), None
                self.used = 1 + self._later(seq)
                return not known and learner.known and not self._exact
            return False
        first = seq - counted + 1  # the window's opener, counting only our own sends
        if opener is None or first > opener.seq:
            # A newer window whose opener has not answered yet (or other traffic opened it).
            self.opener, self._assumed_from = Opener(first, None, None), None
            self.used = counted + self._later(seq)
            return False
        if seq < opener.seq:
            return False  # an answer from an earlier window says nothing of the current one
        if opener.answered is not None:
            if self._assumed_from is not None and seq >= self._assumed_from:
                learner.outlived(sent - opener.answered)  # we thought it over: it was not
            else:
                learner.longer(sent - opener.answered)
        fresh = self._assumed_from is not None and seq >= self._assumed_from
        held = counted + self._later(seq)
        self.used = held if fresh else max(self.used, held)
        if fresh:
            self._assumed_from = None
        return False

    def throttled(self, seq: int, sent: float, wait: float, now: float) -> None:
        """A 429 asked to wait ``wait`` whole seconds: the window ends then (to a second either
        way, as Laravel and the emulator round differently), and the next one starts afresh."""
        opener = self.opener
        if opener is not None and opener.sent is not None and seq >= opener.seq:
            self.learner.shorter(now + wait + 1 - opener.sent)
            if opener.answered is not None:
                # Still open when this arrived: after an assumed end, the window outlived it.
                lasted = sent + max(0.0, wait - 1) - opener.answered
                if self._assumed_from is not None and seq >= self._assumed_from:
                    self.learner.outlived(lasted)
                else:
                    self.learner.longer(lasted)
        self.used = 0
        self._assumed_from = None

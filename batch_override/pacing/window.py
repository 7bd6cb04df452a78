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

:class:`ServerWindow` is where the client stands in the server's current window, from
``X-RateLimit-Remaining``.  The server's count (``Limit - Remaining``) is the truth: it is
everyone's use of the window,
ours and other traffic's on the key; ours is what we sent into it; the difference is the
other traffic (a lower bound from each answer), whose share per window (``others``, the more
of the last window's and this one's) sets what the pacer leaves it: :meth:`reserved`, what
it has taken of the current window plus what it took of the last one after this point in it
(:class:`OtherShare`, with its trap).  A window is dated whoever opened it:
the count restarting between two of our answers (a send after an answer counted no more
than it) bounds the new window's start between those two.

Contract: :meth:`hold` says how long the next send must wait once ``cap`` requests are
counted in the current window; the counts and times of the answers feed :attr:`learner`.
The trap: answers arrive out of order and after later sends went out.  A count ``c`` covers
what the server had counted by then, including later sends that overtook this request; of
the later sends, only those still unanswered may yet be counted.  So the window holds about
``c`` plus the later sends still in flight, the most by any answer.  (Adding every later
send counts the ones that overtook twice: on a long-tailed network, 150 ms median and 1.5 s
p99, that put 110 into windows holding 90 and held the pacer for nothing.)  What it leaves
out, earlier sends still in flight that are counted later, are a long tail's few
stragglers: the cap has the headroom for them.  A count that does not move between two
answers, the second sent after the first was answered (``Remaining: 0`` on every accepted
answer behind a broken proxy), contradicts itself: ``contradictions`` counts those in a row,
and the pacer stops reading the count after ``CONTRADICTIONS``.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
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
    """Our first send counted in the server's current window: its sequence number, and when the
    window opened, at the earliest (``sent``) and at the latest (``answered``; None while unknown).
    When our send opened the window these are its send and answer times; when someone else's
    did (other traffic on the key, a second job), ``sent`` is the send of our last request still
    counted in the window before (-inf: none seen) and ``answered`` the answer that showed the
    count restarting.  ``answered`` + length is when the window surely ends."""

    seq: int
    sent: float | None
    answered: float | None


class _Top(NamedTuple):
    """Our newest answer (by send) counted in the current window, and its count."""

    seq: int
    sent: float
    answered: float
    total: int


class OtherShare:
    """Other traffic on the key, window by window, from the counts: what it has taken of the
    current window (``now``, a lower bound from each answer), what it took of the last one
    (``last``) and when in it; :meth:`reserved` is what of the current window to leave it.

    Contract: the reserve is what the other traffic has taken of this window so far, plus what
    it took of the last window after this point in it; at most its expected share
    (:attr:`expected`, the more of ``last`` and ``now``), at least what it has taken.  So a
    steady neighbour keeps its whole share (what it has taken by now is what it had by then),
    and so does a burst at the same point of each window, early or late, and a burst already
    in; a neighbour that went away (a second job that ended) frees its share from the point
    where it stopped in its last window, not a window later (40 per 15 s, two jobs on the key:
    13 of 40 used in the window after the first one ended, and 0.79 of the limit over the two
    jobs' windows; 0.86 with this).  Points in a window are seconds after the answer that dated
    it (a late answer reads as early in the window: more is left reserved).

    The trap: it bets that the other traffic keeps the timing it had in the last window.  A
    neighbour that bursts at a random point of each window finds the window taken when its
    burst comes later than the last one did (simulated, 16 at once per 40 per 15 s: 7-15 % of
    its requests answered 429, 4-9 % keeping its whole share all window long).  Releasing the
    share evenly over the window instead (``expected`` times the share of the window left)
    frees less of a finished job's share (0.80 of the limit over the two jobs) and fails a
    neighbour that bursts at the same late point of each window (at 90 % of it: 38 % of its
    requests answered 429).
    """

    __slots__ = ("_last", "_seen", "last", "now")

    def __init__(self) -> None:
        self.now = 0
        self.last = 0
        self._seen: list[tuple[float, int]] = []  # (seconds into the window, now) as ``now`` grew
        self._last: list[tuple[float, int]] = []  # the same, of the last window

    @property
    def expected(self) -> int:
        """Requests the other traffic is expected to take of a window."""
        return max(self.now, self.last)

    def seen(self, others: int, elapsed: float | None) -> None:
        """An answer shows ``others`` of the current window the other traffic's, ``elapsed``
        seconds into it (None: the window is not dated)."""
        if others <= self.now:
            return
        self.now = others
        if elapsed is not None:  # kept in order for the bisect, should the window be dated anew
            self._seen.append((max(elapsed, self._seen[-1][0]) if self._seen else elapsed, others))

    def opened(self) -> None:
        """A new window: the current one becomes the last."""
        self.last, self.now = self.now, 0
        self._last, self._seen = self._seen, []

    def reserved(self, elapsed: float | None) -> int:
        """What of the current window to leave the other traffic, ``elapsed`` seconds into it
        (None: not dated, its whole expected share)."""
        if elapsed is None:
            return self.expected
        taken = bisect.bisect_right(self._last, elapsed, key=lambda point: point[0])
        by_then = self._last[taken - 1][1] if taken else 0
        return max(self.now, min(self.expected, self.now + self.last - by_then))


#: Answers in a row whose count contradicts itself before the count is called broken.
CONTRADICTIONS = 3


class _Position:
    """Where the client stands in the server's current window: our sends in flight, the requests
    counted (``used``, everyone's), the window's opener and the other traffic seen; how long
    to hold.  :class:`ServerWindow` reads the answers' counts into it."""

    __slots__ = (
        "_assumed_from",
        "_exact",
        "_first_possible",
        "_flying",
        "_last_sent",
        "_others",
        "_top",
        "_tops",
        "contradictions",
        "learner",
        "opener",
        "used",
    )

    def __init__(self, learner: WindowLearner, *, exact: bool = False) -> None:
        self.learner = learner
        self._exact = exact  # paced at the limit itself: only an answer proves a window over
        self.opener: Opener | None = None
        self.used = 0  # requests counted (or assumed counted) in the current window, everyone's
        self._assumed_from: int | None = None  # first send after we assumed the window ended
        self._flying: dict[int, float] = {}  # sends not answered yet: seq -> sent
        self._top: _Top | None = None
        self._tops: deque[_Top] = deque(maxlen=_FLYING_MAX)  # the current window's, by send
        self._first_possible = 1  # our earliest send that may be counted in the current window
        self._last_sent = 0
        self._others = OtherShare()  # the other traffic seen, this window and the last
        self.contradictions = 0

    @property
    def others(self) -> int:
        """Other traffic's expected requests per window: the more of the last window's and this one's."""
        return self._others.expected

    def _into(self, now: float) -> float | None:
        """Seconds into the current window, from the answer that dated it (None: not dated)."""
        opener = self.opener
        return None if opener is None or opener.answered is None else now - opener.answered

    @property
    def _shared(self) -> bool:
        """Other traffic has shown on the key (or the first answer found a window open): only
        then is a count restart read as a window someone else opened.  Alone, our own counts
        date every window (a restart read from the counts of a long tail's reordered answers
        only misdates it)."""
        return bool(self.others) or (self.opener is not None and self.opener.sent == -math.inf)

    @property
    def in_flight(self) -> int:
        return len(self._flying)

    def _end(self) -> float:
        """When the current window ends by a known estimate (opener sent + length), else inf.
        Sends after it are the next window's, which a slow answer would otherwise count here."""
        opener = self.opener
        if (
            self.learner.known
            and opener is not None
            and opener.sent is not None
            and math.isfinite(opener.sent)
            and not self._exact
        ):
            return opener.sent + self.learner.estimate
        return math.inf

    def sent(self, seq: int, at: float) -> None:
        self.used += at < self._end()
        self._last_sent = seq
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
        the opener's answer, which dates the window.  Never a guessed window asleep with nothing
        in flight: ``cap`` counted (someone else's, or a broken header) while the length is a
        guess, a probe goes once the window has lasted twice as long as at our last answer in it
        (a second at least, by the guessed end at most), so a restart shows within about a window.
        The trap: the guessed end is a minute asleep on a 15 s window; no wait at all sends into a
        full window at the meter's pace; probes cost a request each, a handful a window (doubling)."""
        if self.used < cap:
            return 0.0
        opener, top = self.opener, self._top
        if not self._flying and not self.learner.known:  # a guess, nothing in flight: the probe
            if opener is None or opener.answered is None or top is None:
                return 0.0
            seen = max(top.answered - opener.answered, 1.0)
            return max(0.0, min(top.answered + seen, opener.answered + self.learner.estimate) - now)
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

    def _opened(self, opener: Opener, first_possible: int, top: _Top, used: int) -> None:
        """A new window: ``opener`` dates it; our sends from ``first_possible`` may count in it."""
        self._others.opened()
        self.opener, self._assumed_from, self._first_possible = opener, None, first_possible
        self._top, self.used = top, used
        self._tops.clear()
        self._tops.append(top)

    def _answered_before(self, sent: float) -> _Top | None:
        """Our newest answer in the current window that came before ``sent`` (pipelined sends
        go out before the answers to the ones just before them)."""
        for top in reversed(self._tops):
            if top.answered <= sent:
                return top
        return None

    def throttled(self, seq: int, sent: float, wait: float, now: float) -> None:
        """A 429 asked to wait ``wait`` whole seconds.  That is a pause, not the window's length
        (a WAF's penalty or a downgrade's first 429 asks for 30 s on a 1 s window): it only says
        the window ends by then (to a second either way, as Laravel and the emulator round
        differently); the windows that follow tell how long they last."""
        opener = self.opener
        if (
            opener is not None
            and opener.sent is not None
            and math.isfinite(opener.sent)
            and seq >= opener.seq
        ):
            self.learner.shorter(now + wait + 1 - opener.sent)
        self.used = 0
        self._assumed_from = None


class ServerWindow(_Position):
    """Where the client stands in the server's current window, from ``X-RateLimit-Remaining``:
    :meth:`counted` reads each answer's count (see the module docstring for the contract and
    its traps), :meth:`~_Position.hold` says how long the next send must wait, :meth:`reserved`
    what of the window to leave to other traffic on the key."""

    __slots__ = ()

    def reserved(self, now: float) -> int:
        """Of the current window, the other traffic's share left to it (:class:`OtherShare`)."""
        return self._others.reserved(self._into(now) if self.learner.known else None)

    def _note_others(self, counted: int, full: bool, now: float) -> None:
        # Our sends that may be counted by now: every one from the window's first possible on.
        # Only while none of ours is in flight from before it: a long tail's stragglers land in
        # later windows, and answers overtaken say the count of a window we misplace.
        first = self._first_possible
        if full or any(seq < first for seq in self._flying):
            return  # full: the next answer, a 429 in the same window, tells more (or a stuck header)
        ours = self._last_sent - first + 1
        self._others.seen(counted - ours, self._into(now))

    def counted(self, seq: int, sent: float, counted: int, now: float, *, full: bool = False) -> bool:
        """The answer to send ``seq`` says the server had counted ``counted`` in its window
        (``full``: all of its limit, ``Remaining: 0``).  True when this send opened a window and
        showed, for the first time, how long windows last."""
        opener, learner, top = self.opener, self.learner, self._top
        here = _Top(seq, sent, now, counted)
        before = self._answered_before(sent)
        if before is not None and top is not None and seq > top.seq:
            top = before  # the count to compare with: the newest this send surely came after
        # Answered before the current window can have ended (it lasts longer than ``lo``): not a
        # restart, whatever the count (the newest answer may be a long tail's straggler).
        young = opener is not None and opener.sent is not None and now < opener.sent + learner.lo
        if (
            top is not None
            and seq > top.seq
            and sent >= top.answered
            and counted <= top.total
            and not young
            and self._shared
        ):
            if counted == top.total and full:
                # Accepted after an answer that said the window was full, in the same window: the
                # count is stuck (a new window opened by others exactly to our limit is not likely).
                self.contradictions += 1
                return False
            self.contradictions = 0
            # The count restarted between two of our answers: a new window, opened by this send
            # (counted 1) or by someone else's after our last one counted in the old window.
            known = learner.known
            if opener is not None and opener.sent is not None and math.isfinite(opener.sent):
                learner.shorter(now - opener.sent)  # the previous window ended before this one opened
            if counted == 1:
                self._opened(Opener(seq, sent, now), seq, here, 1 + self._later(seq))
                return not known and learner.known and not self._exact
            self._opened(Opener(seq, top.sent, now), top.seq + 1, here, counted + self._later(seq))
            self._note_others(counted, full, now)
            return False
        self.contradictions = 0
        if counted == 1:
            if opener is not None and seq < opener.seq:
                if seq < self._first_possible or not self._shared:
                    return False  # an earlier window's opener, answered late
                # The true opener of the current window, answered after a later send showed it.
                bound = opener.answered if opener.answered is not None else now
                self.opener = Opener(seq, max(sent, opener.sent or sent), min(now, bound))
                self._first_possible = seq
                return False
            known = learner.known
            if (
                opener is not None
                and opener.sent is not None
                and math.isfinite(opener.sent)
                and seq > opener.seq
            ):
                learner.shorter(now - opener.sent)  # the previous window ended before this one opened
            self._opened(Opener(seq, sent, now), seq, here, 1 + self._later(seq))
            return not known and learner.known and not self._exact
        first = seq - counted + 1  # at the latest, our first send counted in this answer's window
        if opener is not None and first > opener.seq:
            # A newer window: even if all but this one were ours, our sends since the opener are
            # more than the count.  Its opener (a long tail's late answer, or other traffic) is
            # unknown: the window opened by this answer, after the last send of the old one.
            after = top.sent if top is not None and top.seq < first else None
            # Alone on the key, its own opener's answer will date it exactly: wait for that.
            dated = Opener(first, after, now) if self.others else Opener(first, None, None)
            self._opened(dated, first, here, counted + self._later(seq))
            self._note_others(counted, full, now)
            return False
        if opener is None:
            # The first answer finds a window open: other traffic's (or an earlier run's).
            self._opened(Opener(seq, -math.inf, now), 1, here, counted + self._later(seq))
            self._note_others(counted, full, now)
            return False
        if seq < self._first_possible:
            return False  # an answer from an earlier window says nothing of the current one
        # Shared, a count that rose may be a new window's (others sent more into it than into
        # the old one's rest): no lower bound from an answer that came a window's length late.
        doubtful = self._shared and sent - (top.answered if top is not None else sent) >= learner.lo
        if opener.answered is not None and seq >= opener.seq and not doubtful:
            if self._assumed_from is not None and seq >= self._assumed_from:
                learner.outlived(sent - opener.answered)  # we thought it over: it was not
            else:
                learner.longer(sent - opener.answered)
        fresh = self._assumed_from is not None and seq >= self._assumed_from
        held = counted + self._later(seq)
        self.used = held if fresh else max(self.used, held)
        if fresh:
            self._assumed_from = None
        if self._top is None or seq > self._top.seq:
            self._top = here
            self._tops.append(here)
        if seq >= opener.seq:  # sent before the opener, it may be the last window's straggler
            self._note_others(counted, full, now)
        return False

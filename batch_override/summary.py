"""The summary of a run: what a person reads at the end and what an orchestrator gets back."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ExitCode
from .outcome import SUCCESS_OUTCOMES, Outcome


@dataclass(slots=True)
class Summary:
    run_id: str
    ledger: str | None
    api_url: str
    dry_run: bool = False
    rows: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    throttled: int = 0
    duration: float = 0.0
    #: Rows read but never attempted (past ``--limit``, or not reached before a stop): no ledger
    #: line; ``rows`` is always the outcomes' sum plus this.
    not_attempted: int = 0
    exit_code: int = ExitCode.OK
    stop_reason: str = ""
    ok_outcomes: frozenset[str] = frozenset(o.value for o in SUCCESS_OUTCOMES)
    concurrency: dict[str, Any] = field(default_factory=dict)  # see Concurrency.report()
    estimate: str = ""  # said before sending: requests, pace, duration (see job/estimate.py)
    estimate_s: float | None = None  # the duration it names (of a range, the longest)
    #: Said again once the server's window was seen to end, when the first was a range.
    revised_estimate: str = ""
    revised_estimate_s: float | None = None

    def count(self, outcome: Outcome | str, error_code: str = "", n: int = 1) -> None:
        self.outcomes[str(outcome)] += n
        if error_code:
            self.error_codes[error_code] += n

    @property
    def all_succeeded(self) -> bool:
        return all(o in self.ok_outcomes for o, n in self.outcomes.items() if n)

    @property
    def sent_rate(self) -> float:
        return self.requests / self.duration if self.duration > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "ledger": self.ledger,
            "api_url": self.api_url,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "outcomes": dict(sorted(self.outcomes.items())),
            "error_codes": dict(sorted(self.error_codes.items())),
            "requests": self.requests,
            "throttled_429": self.throttled,
            "duration_s": round(self.duration, 3),
            "requests_per_s": round(self.sent_rate, 3),
            "not_attempted": self.not_attempted,
            "exit_code": self.exit_code,
            "stop_reason": self.stop_reason,
            "concurrency": self.concurrency,
            "estimate": self.estimate,
            "estimate_s": _rounded(self.estimate_s),
            "revised_estimate": self.revised_estimate,
            "revised_estimate_s": None
            if self.revised_estimate_s is None
            else round(self.revised_estimate_s, 1),
        }

    def render(self) -> str:
        lines = [f"run {self.run_id}: {self.rows} rows in {self.duration:.1f}s -> exit {self.exit_code}"]
        if self.estimate:
            lines.append(f"  estimate: {self.estimate}")
        if self.revised_estimate:
            lines.append(f"  revised once the window was known: {self.revised_estimate}")
        if self.stop_reason:
            lines.append(f"  stopped: {self.stop_reason}")
        for outcome in Outcome:
            n = self.outcomes.get(outcome.value, 0)
            if n:
                lines.append(f"  {outcome.value:<18}{n:>10}")
        if self.error_codes:
            codes = ", ".join(f"{k}={v}" for k, v in sorted(self.error_codes.items()))
            lines.append(f"  error codes: {codes}")
        if self.not_attempted:
            lines.append(
                f"  not attempted: {self.not_attempted} rows never reached (--limit or a stop), "
                "no ledger line; the next run of the input sends them"
            )
        lines.append(
            f"  requests: {self.requests} ({self.sent_rate:.1f}/s), 429 answers: {self.throttled}, "
            f"ledger: {self.ledger or '-'}"
        )
        if self.concurrency:
            c = self.concurrency
            lines.append(
                f"  concurrency: {c['mode']} (max {c['max']}), {c['mean_in_flight']:.1f} in flight on "
                f"average, {c['peak_in_flight']} at most, limit {c['limit']} at the end"
            )
        return "\n".join(lines)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """A running job at one moment: what ``on_progress`` gets (about once a second and once at
    the end, ``final``), what a ``--progress-interval`` line says and what the in-progress
    metrics show.  A copy, so it may be kept or handed to another thread.

    ``rows_per_s`` is the rows to send (the plan's, less what the ledger settled) finished per
    second, over the last seconds only (ten for ``on_progress``, a minute for progress lines); rows
    finished without a request (skipped from the ledger, invalid, duplicates) are not a rate: a
    resume skips thousands in its first second.  ``eta_s`` is the rows left to send at that rate,
    None until one finished.  The trap: ``rows_done`` and ``rows_total`` count every row, the
    rate only the sent ones; ``rows_total`` leaves out the rows ``--limit`` will not attempt.
    """

    run_id: str
    rows_done: int
    rows_total: int
    outcomes: Mapping[str, int]  # read-only
    requests: int
    elapsed_s: float  # since the run started
    rows_per_s: float
    eta_s: float | None
    pace: str  # the pacer's own words, e.g. "auto: 54/60s, window assumed until one ends"
    window_s: float | None  # the server window learnt (or assumed), None before sending
    in_flight: int
    concurrency_limit: int | None
    throttled: int = 0  # requests answered 429 so far
    last_progress: float = 0.0  # Unix time rows_done last grew (a stuck run's stays put)
    final: bool = False

    def line(self) -> str:
        """``progress 40/100 rows (40%): submitted=38, not_ready=2; 5.0 rows/s; ...; ETA 0:00:12``."""
        share = f" ({100 * self.rows_done / self.rows_total:.0f}%)" if self.rows_total else ""
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()) if v) or "none yet"
        parts = [f"progress {self.rows_done}/{self.rows_total} rows{share}: {counts}"]
        parts.append(f"{self.rows_per_s:.1f} rows/s")
        parts.append(f"{self.requests} requests, {self.throttled} answered 429")
        if self.window_s is not None:
            parts.append(f"pace {self.pace}")
        if self.concurrency_limit is not None:
            parts.append(f"in flight {self.in_flight}/{self.concurrency_limit}")
        parts.append(f"ETA {_clock(self.eta_s)}")
        return "; ".join(parts)

    def fields(self) -> dict[str, Any]:
        """The numbers, for a JSON log line's ``progress`` object (the attribute names)."""
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("run_id", "final")
        }
        out["outcomes"] = dict(self.outcomes)
        out["rows_per_s"] = round(self.rows_per_s, 3)
        out["elapsed_s"] = round(self.elapsed_s, 3)
        out["eta_s"] = None if self.eta_s is None else round(self.eta_s, 1)
        return out


#: What ``on_progress`` (and ``on_tick``) is: called with each snapshot; what it returns is ignored.
OnProgress = Callable[[ProgressSnapshot], object]


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"

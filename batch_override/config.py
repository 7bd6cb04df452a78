"""The run's configuration: one frozen object built from a job file, the environment and flags."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from .errors import UsageError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

MEDIA = ("video", "image", "audio")
CLASSIFICATIONS = ("human", "artificial")
DEFAULT_API_URL = "https://backend.identifai.net"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

_PERIODS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``limit`` requests in any window of ``period`` seconds, spaced evenly (no burst)."""

    limit: int
    period: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Parse ``60/min``, ``5/s``, ``3600/h`` or ``50/2s``."""
        match = _RATE.match(text.lower())
        if not match or match.group(3) not in _PERIODS or int(match.group(1)) < 1:
            raise UsageError(f"--rate {text!r}: expected N/PERIOD such as 60/min, 5/s, 3600/h, or 'auto'")
        count = float(match.group(2)) if match.group(2) else 1.0
        if count <= 0:
            raise UsageError(f"--rate {text!r}: the period must be positive")
        return cls(int(match.group(1)), count * _PERIODS[match.group(3)])

    @property
    def interval(self) -> float:
        return self.period / self.limit

    def __str__(self) -> str:
        return f"{self.limit}/{self.period:g}s"


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything a run needs except the API key, which travels separately (see :mod:`apikey`).

    ``input`` is a file path (``-`` for standard input), a ``pandas.DataFrame`` or a
    ``pyarrow.Table``; it takes no part in equality and hashing (two configs differing only in
    their input are the same job settings, and a DataFrame cannot be hashed).
    """

    input: str | pd.DataFrame | pa.Table = field(compare=False, hash=False)
    ledger: Path | None = None
    api_url: str = DEFAULT_API_URL
    media: str = "video"
    hash_column: str = "hash"
    classification_column: str = "classification"
    media_column: str = "media"
    concurrency: int = 8
    rate: Rate | Literal["auto"] = "auto"
    headroom: float = 0.1
    max_retries: int = 5
    timeout: float = 30.0
    limit: int | None = None
    dry_run: bool = False
    retry_rejected: bool = False
    max_outage: float = 1800.0
    max_wait: float = 900.0
    max_failure_rate: float = 0.5
    failure_window: int = 200
    grace: float = 10.0
    preflight: bool = True
    neutralize_formulas: bool = True
    label_map: tuple[tuple[str, str], ...] = ()
    ok_outcomes: frozenset[str] | None = None
    give_up_after_days: float | None = None
    progress: bool | None = None
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    ca_bundle: str | None = None
    encoding: str | None = None
    fsync_interval: float = 2.0
    batch_rows: int = 65_536

    def __post_init__(self) -> None:
        if self.media not in MEDIA:
            raise UsageError(f"--media {self.media!r}: expected one of {', '.join(MEDIA)}")
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if self.max_retries < 0:
            raise UsageError("--max-retries must be 0 or more")
        if self.timeout <= 0:
            raise UsageError("--timeout must be positive")
        if self.limit is not None and self.limit < 0:
            raise UsageError("--limit must be 0 or more")
        if not 0 <= self.headroom < 1:
            raise UsageError("--headroom must be in [0, 1)")
        if not 0 < self.max_failure_rate <= 1:
            raise UsageError("--max-failure-rate must be in (0, 1]")
        check_api_url(self.api_url)
        for _, target in self.label_map:
            if target not in CLASSIFICATIONS:
                raise UsageError(f"--label-map: {target!r} is not human or artificial")
        if self.ok_outcomes is not None:
            from .outcome import Outcome

            unknown = sorted(set(self.ok_outcomes) - {o.value for o in Outcome})
            if unknown:
                raise UsageError(f"--ok-outcomes: unknown outcome(s) {', '.join(unknown)}")
        if self.give_up_after_days is not None and self.give_up_after_days <= 0:
            raise UsageError("--give-up-after must be a positive number of days")


def parse_label_map(text: str) -> tuple[tuple[str, str], ...]:
    """``ai=artificial,real=human`` -> pairs; words are matched after trimming and lowercasing."""
    pairs = []
    for part in text.split(","):
        if not part.strip():
            continue
        word, sep, target = part.partition("=")
        if not sep or not word.strip():
            raise UsageError(f"--label-map {text!r}: expected WORD=human|artificial pairs, comma-separated")
        target = target.strip().lower()
        if target not in CLASSIFICATIONS:
            raise UsageError(f"--label-map: {target!r} is not human or artificial")
        pairs.append((word.strip().lower(), target))
    return tuple(pairs)


def parse_outcomes(text: str) -> frozenset[str]:
    return frozenset(w.strip().lower() for w in text.split(",") if w.strip())


def check_api_url(url: str) -> None:
    """HTTPS only, except a loopback host (the emulator): the key must never travel in clear."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--api-url {url!r}: expected https://HOST")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise UsageError(f"--api-url {url!r}: plain http is allowed only for loopback hosts (the emulator)")
    if parts.query or parts.fragment:
        raise UsageError(f"--api-url {url!r}: must not carry a query or fragment")

"""The run's configuration: one frozen object built from a job file, the environment and flags."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from .domain import CLASSIFICATION_COLUMN, HASH_COLUMN, MEDIA, LabelMap, label_pairs, parse_label_map
from .errors import InputError, UsageError
from .files import INPUT_EXTENSIONS, kind_of
from .schedule import StopAt, parse_duration
from .urls import API_URL, check_url, endpoint, is_object_uri, object_parts

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

DEFAULT_API_URL = "https://backend.identifai.net"
#: More requests in flight than this is a typo, not a plan (one connection and task each).
MAX_CONCURRENCY = 1024

_PERIODS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
}  # fmt: skip
#: Requests per period at most: the pacer keeps one timestamp per request of a period.
MAX_RATE = 1_000_000
MAX_PERIOD = 100 * 86_400.0
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``limit`` requests in any span of ``period`` seconds, spaced evenly (no burst)."""

    limit: int
    period: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Parse ``60/min``, ``5/s``, ``3600/h`` or ``50/2s``."""
        match = _RATE.match(text.lower())
        if not match or match.group(3) not in _PERIODS or int(match.group(1)) < 1:
            raise UsageError(f"--rate {text!r}: expected N/PERIOD such as 60/min, 5/s, 3600/h, or 'auto'")
        number = match.group(2)
        count = float(number) if number.strip(".") else 1.0  # "60/min" and "60/.min" alike
        return cls(int(match.group(1)), count * _PERIODS[match.group(3)])

    def __post_init__(self) -> None:
        if not (isinstance(self.limit, int) and 1 <= self.limit <= MAX_RATE):
            raise UsageError(f"--rate: N must be an integer >= 1 and <= {MAX_RATE}")
        if not (isinstance(self.period, int | float) and 0 < self.period <= MAX_PERIOD):
            raise UsageError("--rate: the period must be > 0 and <= 100 days")

    @property
    def interval(self) -> float:
        return self.period / self.limit

    def __str__(self) -> str:
        return f"{self.limit}/{self.period:g}s"


@dataclass(frozen=True, slots=True)
class Allowed:
    """The values one option accepts: a kind and, for numbers, bounds (``None``: unbounded).

    The trap: NaN compares false with everything, so bounds are checked as "inside", never as
    "not outside", and infinities are refused (an infinite timeout overflows the event loop's timer).
    """

    kind: type[bool] | type[int] | type[float]
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # ``low`` itself is not allowed
    high_open: bool = False
    optional: bool = False  # None (unset) is allowed
    auto: bool = False  # the word "auto" is allowed (the job decides)

    def accepts(self, value: object) -> bool:
        if value is None:
            return self.optional
        if value == "auto":
            return self.auto
        if self.kind is bool or isinstance(value, bool):
            return self.kind is bool and isinstance(value, bool)
        if self.kind is int and not isinstance(value, int):
            return False
        if not isinstance(value, int | float) or not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        if self.kind is bool:
            return "true or false"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {_number(self.low)}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {_number(self.high)}")
        number = " ".join(["an integer" if self.kind is int else "a number", " and ".join(bounds)]).strip()
        return f"auto or {number}" if self.auto else number

    def check(self, name: str, value: object) -> None:
        if not self.accepts(value):
            shown = repr(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise UsageError(f"{option_name(name)} must be {self.describe()} (got {shown})")


def check_media(media: object) -> None:
    """Raise :class:`UsageError` unless ``media`` is one of :data:`MEDIA` (the default media)."""
    if media not in MEDIA:
        raise UsageError(f"--media {media!r}: expected one of {', '.join(MEDIA)}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


_DAY = 86_400.0
#: Every numeric and boolean field of :class:`RunConfig` and what it accepts: the one place
#: options are range-checked, whether they come from flags, a job file or the Python API.
#: The upper bounds keep values inside what the event loop and the counters can hold.
_RANGES: dict[str, Allowed] = {
    "concurrency": Allowed(int, 1, MAX_CONCURRENCY, auto=True),
    "max_concurrency": Allowed(int, 1, MAX_CONCURRENCY),
    "headroom": Allowed(float, 0, 1, high_open=True),
    "max_retries": Allowed(int, 0, 100),
    "timeout": Allowed(float, 0, _DAY, low_open=True),
    "limit": Allowed(int, 0, None, optional=True),
    "max_outage": Allowed(float, 0, 100 * _DAY, low_open=True),
    "max_wait": Allowed(float, 0, 100 * _DAY),
    "max_failure_rate": Allowed(float, 0, 1, low_open=True),
    "failure_window": Allowed(int, 1, 1_000_000),
    "grace": Allowed(float, 0, _DAY),
    "give_up_after_days": Allowed(float, 0, 36_500, low_open=True, optional=True),
    "backoff_base": Allowed(float, 0, 3600, low_open=True),
    "backoff_cap": Allowed(float, 0, _DAY, low_open=True),
    "fsync_interval": Allowed(float, 0, 3600, low_open=True),
    "batch_rows": Allowed(int, 1, 10_000_000),
    "dry_run": Allowed(bool),
    "retry_rejected": Allowed(bool),
    "record_skipped": Allowed(bool),
    "allow_empty": Allowed(bool),
    "preflight": Allowed(bool),
    "neutralize_formulas": Allowed(bool),
    "progress": Allowed(bool, optional=True),
    "progress_interval": Allowed(float, 0, _DAY, low_open=True, optional=True),
    "max_duration": Allowed(float, 0, 100 * _DAY, low_open=True, optional=True),
    "raise_on_failure": Allowed(bool),
    "anonymous": Allowed(bool),
}
#: Fields whose flag is not ``--`` plus the field name (the negated booleans: their job-file key).
_FLAGS = {
    "give_up_after_days": "--give-up-after",
    "neutralize_formulas": "neutralize_formulas",
    "preflight": "preflight",
}


def option_name(field: str) -> str:
    """How a message names a :class:`RunConfig` field: its flag (job-file keys are the same words)."""
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


_V = TypeVar("_V")  # what the field holds
_A = TypeVar("_A")  # what else it accepts at construction (the flag's text)


class Parsed(Generic[_V, _A]):
    """A :class:`RunConfig` field that is given as its flag's text too, and holds the parsed value.

    ``RunConfig(rate="60/min")`` holds ``Rate(60, 60.0)``: the constructor's parameter is typed
    ``_V | _A`` (mypy reads a descriptor field's ``__init__`` type from ``__set__``) and the
    attribute ``_V``, so ``config.rate`` needs no narrowing.  ``accept`` turns any value into
    ``_V`` with the flag's own parser, or raises the flag's one-line :class:`UsageError`.

    The trap: a descriptor cannot share its name with a slot, so :class:`RunConfig` is not
    slotted; the value lives in the instance's ``__dict__`` under ``_`` plus the field's name.
    """

    def __init__(self, default: _V, accept: Callable[[object], _V]) -> None:
        self._default = default
        self._accept = accept
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = "_" + name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _V: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> _V: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> _V:
        if obj is None:  # the class's attribute: the default (dataclasses reads it so)
            return self._default
        value: _V = obj.__dict__[self._name]
        return value

    def __set__(self, obj: object, value: _V | _A) -> None:
        obj.__dict__[self._name] = self._accept(value)


def _shown(value: object) -> str:
    """A value as a message quotes it: its repr, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _accept_rate(value: object) -> Rate | Literal["auto"]:
    if isinstance(value, str):
        return parse_rate(value)
    if isinstance(value, Rate):
        return value
    raise UsageError(
        f"--rate: expected N/PERIOD such as 60/min, 5/s, 3600/h, or 'auto' (got {_shown(value)})"
    )


def _accept_stop_at(value: object) -> StopAt | None:
    if value is None or isinstance(value, StopAt):
        return value
    if isinstance(value, str):
        return StopAt.parse(value)
    raise UsageError(
        f"--stop-at: expected HH:MM, optionally with a zone (06:00 Europe/Rome) (got {_shown(value)})"
    )


def _accept_duration(value: object) -> float | None:
    """Text by :func:`parse_duration`; a number of seconds as it is (its range checked later)."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise UsageError(f"--max-duration: expected a duration such as 7h30m, or seconds (got {_shown(value)})")


def _accept_label_map(value: object) -> LabelMap:
    if isinstance(value, str):
        return parse_label_map(value)
    if isinstance(value, Mapping):
        return label_pairs(value.items())
    if isinstance(value, tuple | list):
        return label_pairs(value)
    raise UsageError(
        f"--label-map: expected WORD=human|artificial pairs as text or a mapping (got {_shown(value)})"
    )


def _accept_ledger(value: object) -> Path | None:
    if value is None or isinstance(value, Path):
        return value
    if isinstance(value, str | os.PathLike):
        return Path(value)
    raise UsageError(f"--ledger must be a path (got {_shown(value)})")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs except the API key, which travels separately (see :mod:`apikey`).

    ``input`` is a file path (``-`` for standard input), an ``s3://`` or ``gs://`` URI, a
    ``pandas.DataFrame`` or a ``pyarrow.Table``; it takes no part in equality and hashing (two
    configs differing only in their input are the same job settings, and a DataFrame cannot be
    hashed).

    The :class:`Parsed` fields (``ledger``, ``rate``, ``label_map``, ``max_duration``,
    ``stop_at``) also take the text their flag takes (``rate="60/min"``, ``label_map="ai=artificial"``
    or ``{"ai": "artificial"}``, ``stop_at="06:00 UTC"``, ``max_duration="7h30m"``) and hold the
    parsed value; a value none of the flag's spellings fits raises the flag's one-line
    :class:`UsageError`.
    """

    input: str | pd.DataFrame | pa.Table = field(compare=False, hash=False)
    ledger: Parsed[Path | None, str | os.PathLike[str]] = Parsed(None, _accept_ledger)
    api_url: str = DEFAULT_API_URL
    media: str = "video"
    hash_column: str = HASH_COLUMN
    classification_column: str = CLASSIFICATION_COLUMN
    #: None: use a column named ``media`` when the input has one; a name given must exist.
    media_column: str | None = None
    concurrency: int | Literal["auto"] = "auto"
    max_concurrency: int = 64
    rate: Parsed[Rate | Literal["auto"], str] = Parsed("auto", _accept_rate)
    headroom: float = 0.1
    max_retries: int = 5
    timeout: float = 30.0
    limit: int | None = None
    dry_run: bool = False
    retry_rejected: bool = False
    #: Also ledger the rows a run never attempts (``skipped``; ``rejected`` for rows rejected in an
    #: earlier run; ``aborted`` for rows a stop left unsent), one line each per run, as earlier
    #: versions did; off: they are counted only.
    record_skipped: bool = False
    #: A header-only input is a run of 0 rows (exit 0) instead of exit 2: for an input of the day's
    #: new corrections, where a quiet day has none; a cumulative export with no rows is broken.
    allow_empty: bool = False
    max_outage: float = 1800.0
    max_wait: float = 900.0
    max_failure_rate: float = 0.5
    failure_window: int = 200
    grace: float = 10.0
    preflight: bool = True
    neutralize_formulas: bool = True
    label_map: Parsed[LabelMap, str | Mapping[str, str]] = Parsed((), _accept_label_map)
    ok_outcomes: frozenset[str] | None = None
    give_up_after_days: float | None = None
    progress: bool | None = None
    #: Seconds between progress lines (and in-progress metrics); None: no lines.
    progress_interval: float | None = None
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    ca_bundle: str | None = None
    encoding: str | None = None
    fsync_interval: float = 2.0
    batch_rows: int = 65_536
    #: Seconds from the start after which the run stops as on SIGTERM (exit 7); ``"7h30m"`` too.
    max_duration: Parsed[float | None, str] = Parsed(None, _accept_duration)
    #: A time of day the run stops at (exit 7); ``"06:00 Europe/Rome"`` too.
    stop_at: Parsed[StopAt | None, str] = Parsed(None, _accept_stop_at)
    #: Raise a :class:`~.errors.RunFailed` subclass instead of returning a summary with exit != 0.
    raise_on_failure: bool = False
    #: Object-store inputs (``s3://``, ``gs://``): where the store is (None: the provider's own),
    #: the S3 region, and whether to read without credentials (else the provider's usual chain).
    s3_endpoint: str | None = None
    s3_region: str | None = None
    gcs_endpoint: str | None = None
    anonymous: bool = False

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunConfig:
        """A config from options as a job file or the command line gives them (field names as keys).

        Text becomes the field's value by the option's parser (a TOML list or table is joined
        into text first), a number the field's kind (a job file's ``30`` for a float option),
        ``ledger`` a Path; then every check of the class applies.  Raises :class:`UsageError`
        (one line) for a value it cannot use.  The trap: ``give_up_after`` (the job-file
        spelling) and ``give_up_after_days`` are one option; the one later in ``values`` wins.
        """
        out = {
            _ALIASES.get(key, key): _convert(_ALIASES.get(key, key), value) for key, value in values.items()
        }
        try:
            return cls(**out)
        except TypeError as exc:
            raise UsageError(f"bad option value: {exc}") from None

    @property
    def fixed_rate(self) -> Rate | None:
        """The rate given, or None for ``auto`` (learnt from the server's headers)."""
        return None if self.rate == "auto" else self.rate

    @property
    def fixed_concurrency(self) -> int | None:
        """The concurrency given, or None for ``auto`` (the controller decides)."""
        return None if self.concurrency == "auto" else self.concurrency

    @property
    def senders(self) -> int:
        """Requests in flight at most: ``--concurrency N``, else ``--max-concurrency``.  The
        connection pool and the queue size from it."""
        return self.fixed_concurrency or self.max_concurrency

    def __post_init__(self) -> None:
        for name, allowed in _RANGES.items():
            allowed.check(name, getattr(self, name))
        for name in ("hash_column", "classification_column"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise UsageError(f"{option_name(name)} must name a column")
        if self.media_column is not None and (
            not isinstance(self.media_column, str) or not self.media_column.strip()
        ):
            raise UsageError("--media-column must name a column")
        check_media(self.media)
        check_url(API_URL, self.api_url)
        for name in ("s3_endpoint", "gcs_endpoint"):
            if getattr(self, name) is not None:
                check_url(endpoint(option_name(name)), getattr(self, name))
        if is_object_uri(self.input):  # a misshapen URI is said now, before the ledger's lock
            _, _, key = object_parts(self.input)
            if kind_of(Path(key)) is None:  # as ObjectCopy says it, but before the lock
                raise InputError(f"{self.input}: unknown extension; expected {INPUT_EXTENSIONS}")
        if self.s3_region is not None and not (isinstance(self.s3_region, str) and self.s3_region.strip()):
            raise UsageError("--s3-region must name a region, such as eu-west-1")
        if self.ok_outcomes is not None:
            from .outcome import Outcome

            unknown = sorted(set(self.ok_outcomes) - {o.value for o in Outcome})
            if unknown:
                raise UsageError(f"--ok-outcomes: unknown outcome(s) {', '.join(unknown)}")


_T = TypeVar("_T")


def _auto_or(parse: Callable[[str], _T], text: str) -> _T | Literal["auto"]:
    """``auto`` (any case, spaces around it) or what ``parse`` makes of ``text``."""
    return "auto" if text.strip().lower() == "auto" else parse(text)


def parse_rate(text: str) -> Rate | Literal["auto"]:
    """``auto`` or N/PERIOD (see :meth:`Rate.parse`)."""
    return _auto_or(Rate.parse, text)


def parse_concurrency(text: str) -> int | Literal["auto"]:
    """``auto`` or a whole number (range-checked by :class:`RunConfig`)."""

    def whole(text: str) -> int:
        try:
            return int(text.strip())
        except ValueError:
            raise UsageError(f"--concurrency {text!r}: expected auto or a whole number") from None

    return _auto_or(whole, text)


def parse_outcomes(text: str) -> frozenset[str]:
    return frozenset(w.strip().lower() for w in text.split(",") if w.strip())


#: Options whose text needs more than ``str``, ``int`` or ``float`` to become a value.
PARSERS: dict[str, Callable[[str], Any]] = {
    "rate": parse_rate,
    "concurrency": parse_concurrency,
    "label_map": parse_label_map,
    "ok_outcomes": parse_outcomes,
    "max_duration": parse_duration,
    "stop_at": StopAt.parse,
}
#: Other spellings of a field's name (job files say ``give_up_after``, as the flag does).
_ALIASES = {"give_up_after": "give_up_after_days"}


def text_parser(name: str) -> Callable[[str], Any] | None:
    """How the text of field ``name``'s flag becomes its value; None for a switch (a boolean)."""
    if name in PARSERS:
        return PARSERS[name]
    allowed = _RANGES.get(name)
    if allowed is None:
        return str
    return None if allowed.kind is bool else allowed.kind


#: The fields that take their flag's text themselves (:class:`Parsed`).
_PARSED = frozenset(name for name, value in vars(RunConfig).items() if isinstance(value, Parsed))


def _convert(name: str, value: Any) -> Any:
    """One option's value as its field holds it; a value it cannot convert is left to the checks."""
    if name in PARSERS:
        if isinstance(value, list):  # a TOML array: the flag's comma-separated text
            value = ",".join(str(v) for v in value)
        elif isinstance(value, dict) and name not in _PARSED:
            value = ",".join(f"{k}={v}" for k, v in value.items())
        return PARSERS[name](value) if isinstance(value, str) and name not in _PARSED else value
    allowed = _RANGES.get(name)
    plain_number = allowed is not None and allowed.kind is not bool and not (allowed.optional or allowed.auto)
    if plain_number and isinstance(value, int | float):
        assert allowed is not None
        return allowed.kind(value)
    return value

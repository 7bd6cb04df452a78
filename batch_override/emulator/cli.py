"""``batch-override emulator`` / ``python -m batch_override.emulator``: serve the emulator until stopped.

Once the server accepts connections it prints exactly one line to stdout, flushed::

    batch-override emulator listening on http://127.0.0.1:8080

Scripts (benchmarks) take the URL as the line's last token; with ``--port 0`` it holds the real port.
SIGINT and SIGTERM stop it cleanly with exit status 0. Bad arguments exit 2 (argparse); a port that
cannot be bound exits 1. API keys are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import Sequence

from batch_override.emulator.config import DEMO_API_KEY, UNKNOWN_CHOICES, EmulatorConfig
from batch_override.emulator.server import Emulator
from batch_override.emulator.state import load_state_csv

_UNITS = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}
_RATE = re.compile(r"(\d+)\s*/\s*(\d+(?:\.\d*)?|\.\d+)?\s*([a-z]*)")


def parse_rate_limit(text: str) -> tuple[int, float]:
    """``"60/min"`` -> ``(60, 60.0)``; ``"5/2s"`` -> ``(5, 2.0)``; ``"5/2"`` -> ``(5, 2.0)`` (seconds).

    Raises ``argparse.ArgumentTypeError`` for anything else, including a zero count or period.
    """
    match = _RATE.fullmatch(text.strip().lower())
    if match is None or match[3] not in _UNITS or (match[2] is None and not match[3]):
        raise argparse.ArgumentTypeError(
            f"invalid rate limit {text!r}: expected N/PERIOD such as 60/min, 5/2s, 1000/h"
        )
    limit = int(match[1])
    period = float(match[2] or 1) * _UNITS[match[3]]
    if limit < 1 or period <= 0:
        raise argparse.ArgumentTypeError(f"invalid rate limit {text!r}: count and period must be > 0")
    return limit, period


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1, not {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, not {text!r}")
    return value


def _latency(text: str) -> tuple[float, float | None]:
    """``"200"`` -> ``(200.0, None)``: fixed; ``"150:1500"`` -> median 150 ms, p99 1.5 s (lognormal)."""
    median_text, colon, p99_text = text.partition(":")
    median = _non_negative(median_text)
    if not colon:
        return median, None
    p99 = _non_negative(p99_text)
    if median <= 0 or p99 < median:
        raise argparse.ArgumentTypeError(f"expected MEDIAN:P99 with 0 < MEDIAN <= P99, not {text!r}")
    return median, p99


def _other_traffic(text: str) -> tuple[float, int]:
    """``"20"``: 20/s evenly; ``"80:80"``: 80/s in bursts of 80; ``"12/15s:12"``: 12 at once per 15 s."""
    rate_text, colon, burst_text = text.partition(":")
    if "/" in rate_text:
        count, period = parse_rate_limit(rate_text)
        rate = count / period
    else:
        try:
            rate = float(rate_text)
        except ValueError:
            rate = -1.0
    if not (0 < rate < float("inf")) or (colon and not (burst_text.isdigit() and int(burst_text) >= 1)):
        raise argparse.ArgumentTypeError(
            f"expected RATE[:BURST] such as 20, 12/15s or 80:80 (RATE > 0, BURST >= 1), not {text!r}"
        )
    return rate, int(burst_text) if colon else 1


def _maintenance(text: str) -> tuple[float, float, int | None]:
    """``"10:20:5"`` -> from 10 s after the start, for 20 s, ``Retry-After: 5``; ``"10:20"``: none."""
    parts = text.split(":")
    try:
        after, seconds = float(parts[0]), float(parts[1])
        retry_after = int(parts[2]) if len(parts) == 3 else None
    except (ValueError, IndexError):
        after = seconds = -1.0
        retry_after = None
    if (
        len(parts) > 3
        or not (0 <= after < float("inf") and 0 < seconds < float("inf"))
        or (retry_after is not None and retry_after < 0)
    ):
        raise argparse.ArgumentTypeError(
            f"expected AFTER:SECONDS[:RETRY_AFTER] such as 10:20:5, not {text!r}"
        )
    return after, seconds, retry_after


def _latency_jump(text: str) -> tuple[float, float, float | None]:
    """``"5:2000"`` -> from 5 s after the start, a 2 s round trip; ``"5:150:1500"``: lognormal."""
    after_text, colon, latency_text = text.partition(":")
    try:
        after = float(after_text)
    except ValueError:
        after = -1.0
    if not (colon and latency_text and 0 <= after < float("inf")):
        raise argparse.ArgumentTypeError(f"expected AFTER:MEDIAN[:P99] such as 5:2000, not {text!r}")
    median, p99 = _latency(latency_text)
    return after, median, p99


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, not {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batch-override emulator",
        description="Serve an emulator of the identifAI override API (for tests, demos, benchmarks).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=_port, default=8080, help="0 picks a free port (default: %(default)s)")
    parser.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        metavar="KEY",
        help=f"accepted key; repeatable (default: the demo key {DEMO_API_KEY})",
    )
    parser.add_argument(
        "--forbidden-key",
        dest="forbidden_keys",
        action="append",
        default=[],
        metavar="KEY",
        help="key answered 403",
    )
    parser.add_argument(
        "--rate-limit",
        type=parse_rate_limit,
        metavar="N/PERIOD",
        help="Laravel fixed window per key, e.g. 60/min, 5/2s (default: no throttling)",
    )
    parser.add_argument("--state", metavar="FILE", help="CSV with header media,hash,status")
    parser.add_argument(
        "--unknown",
        choices=UNKNOWN_CHOICES,
        default="no_request",
        help="status of hashes not in --state (default: %(default)s)",
    )
    parser.add_argument(
        "--laravel-windows",
        nargs="?",
        const="file",
        choices=("file", "redis"),
        metavar="STORE",
        help="whole-second windows as Laravel's cache STORE keeps them: file (default; the window "
        "ends at floor(start + period)) or redis (exact window, headers from floor(start + period), "
        "Retry-After may be 0); needs --rate-limit >= 1 s",
    )
    parser.add_argument(
        "--no-rate-headers",
        dest="rate_headers",
        action="store_false",
        help="strip X-RateLimit-* and Retry-After from every answer, as a proxy may",
    )
    parser.add_argument(
        "--stuck-remaining",
        action="store_true",
        help="a broken proxy or cache: every answer the throttle passes says X-RateLimit-Remaining: 0 "
        "while the server goes on accepting up to the limit; needs --rate-limit",
    )
    parser.add_argument(
        "--latency-ms",
        type=_latency,
        default=(0.0, None),
        metavar="MEDIAN[:P99]",
        help="network round trip per request, in ms (half before it is counted, half after): fixed, "
        "or lognormal with that median and "
        "99th percentile (drawn from --seed)",
    )
    parser.add_argument(
        "--latency-jump",
        type=_latency_jump,
        metavar="AFTER:MEDIAN[:P99]",
        help="a route that changes mid-run: from AFTER s after the start, every request's round trip "
        "is MEDIAN ms (or lognormal MEDIAN:P99, as --latency-ms) instead of --latency-ms; no queue at "
        "the server (unless --capacity); /_emulator/stats shows when and how many",
    )
    parser.add_argument(
        "--capacity",
        type=_positive_int,
        metavar="N",
        help="serve at most N requests at once; the rest queue (default: unlimited)",
    )
    parser.add_argument(
        "--service-ms",
        type=_non_negative,
        default=0.0,
        metavar="S",
        help="milliseconds each request holds a worker (see --capacity; default: 0)",
    )
    parser.add_argument(
        "--other-traffic",
        type=_other_traffic,
        metavar="RATE[:BURST]",
        help="another client on the (first) API key, counted by --rate-limit from the start: RATE "
        "requests/s (or N/PERIOD) in bursts of BURST at once (default 1: evenly spaced); "
        "/_emulator/stats shows its accepted and throttled counts",
    )
    parser.add_argument(
        "--maintenance",
        type=_maintenance,
        metavar="AFTER:SECONDS[:RETRY_AFTER]",
        help="Laravel's maintenance mode: from AFTER s after the start, for SECONDS, answer 503 "
        "with Retry-After: RETRY_AFTER (omitted: none) and no rate-limit headers",
    )
    for name, what in (
        ("fail", "answer 500/502/503"),
        ("drop", "close the connection without answering"),
        ("drop-after-record", "record the override, then close without answering"),
    ):
        parser.add_argument(
            f"--{name}-rate", type=_probability, default=0.0, metavar="P", help=f"chance to {what}"
        )
    parser.add_argument("--seed", type=int, default=0, help="fault and latency seed (default: %(default)s)")
    return parser


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> EmulatorConfig:
    """Build the config, turning every invalid combination into an argparse error (exit 2)."""
    states: dict[tuple[str, str], str] = {}
    if args.state is not None:
        try:
            states = load_state_csv(args.state)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            parser.error(f"--state: {exc}")
    try:
        return EmulatorConfig(
            api_keys=tuple(args.api_keys or (DEMO_API_KEY,)),
            forbidden_keys=tuple(args.forbidden_keys),
            rate_limit=args.rate_limit,
            states=states,
            unknown=args.unknown,
            latency_ms=args.latency_ms[0],
            latency_p99_ms=args.latency_ms[1],
            capacity=args.capacity,
            service_ms=args.service_ms,
            rate_headers=args.rate_headers,
            laravel_windows=args.laravel_windows,
            fail_rate=args.fail_rate,
            drop_rate=args.drop_rate,
            drop_after_record_rate=args.drop_after_record_rate,
            seed=args.seed,
            other_traffic=args.other_traffic,
            maintenance=args.maintenance,
            latency_jump=args.latency_jump,
            stuck_remaining=args.stuck_remaining,
        )
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))


async def serve(config: EmulatorConfig, host: str, port: int) -> int:
    """Serve until SIGINT or SIGTERM; return the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Installed before the "listening" line, so a signal sent as soon as it is read is handled.
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                emulator = await stack.enter_async_context(Emulator(config, host, port))
            except OSError as exc:
                reason = exc.strerror or exc
                print(f"batch-override emulator: cannot listen on {host}:{port}: {reason}", file=sys.stderr)
                return 1
            print(f"batch-override emulator listening on {emulator.url}", flush=True)
            await stop.wait()
        return 0
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and serve; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(args, parser)
    return asyncio.run(serve(config, args.host, args.port))

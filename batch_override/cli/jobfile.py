"""Job files (``jobs/*.toml``): any ``run`` option, spelled as on the command line without ``--``.

Precedence: built-in defaults < job file < command-line flags.  Unknown keys are an error (a
typo in a cron job's file must not silently fall back to a default).  The API key is never
read from a job file: a job file gets copied, committed and mailed around.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ..errors import UsageError

FORBIDDEN = frozenset({"api_key", "key", "x_api_key"})


def load_job(path: str | Path, allowed: set[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--job {p}: cannot read ({exc.strerror or type(exc).__name__})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--job {p}: not valid TOML ({exc})") from None
    table = data.get("run", data)
    if not isinstance(table, dict):
        raise UsageError(f"--job {p}: expected a [run] table")
    out: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        if key in FORBIDDEN:
            raise UsageError(
                f"--job {p}: a job file must not hold the API key; use IDENTIFAI_API_KEY or api_key_file"
            )
        if key not in allowed:
            raise UsageError(f"--job {p}: unknown option {raw_key!r}")
        out[key] = value
    return out

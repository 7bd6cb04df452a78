"""The API key: read from the environment or a file, never printed.

:class:`ApiKey` hides its value from ``repr``/``str`` so it cannot leak through a log line, a
traceback's locals or a summary.  Only :meth:`ApiKey.header_value` gives the secret, for the one
header that needs it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import UsageError

ENV_VAR = "IDENTIFAI_API_KEY"


class ApiKey:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value:
            raise UsageError("the API key is empty")
        if any(ch.isspace() or not ch.isprintable() for ch in value):
            raise UsageError("the API key contains whitespace or control characters")
        self._value = value

    def header_value(self) -> str:
        return self._value

    @property
    def fingerprint(self) -> str:
        """A short one-way tag that tells runs with different keys apart in the run log."""
        return hashlib.sha256(b"batch-override:" + self._value.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"ApiKey(fingerprint={self.fingerprint})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("ApiKey is not picklable")


def load_api_key(key_file: str | Path | None, environ: dict[str, str] | None = None) -> ApiKey:
    """The key from ``key_file`` if given, else from ``$IDENTIFAI_API_KEY``."""
    env = os.environ if environ is None else environ
    if key_file is not None:
        path = Path(key_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--api-key-file {path}: cannot read ({type(exc).__name__})") from None
        return ApiKey(text)
    value = env.get(ENV_VAR)
    if not value:
        raise UsageError(f"no API key: set {ENV_VAR} or pass --api-key-file PATH")
    return ApiKey(value)

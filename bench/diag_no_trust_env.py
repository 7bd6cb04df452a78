"""Diagnostic, not the shipped job: ``batch-override`` with aiohttp's ``trust_env`` forced off.

``batch_override.client.make_session`` builds its session with ``trust_env=True`` (to honour
``HTTPS_PROXY``).  aiohttp then looks up ``~/.netrc`` and the proxy environment *per request*,
each in a worker thread (``run_in_executor`` / ``to_thread``): two thread round trips per row.
Running the job through this wrapper shows what that costs; the overhead benchmark reports it
beside the job.  Against a loopback emulator no proxy applies, so the requests are the same.

    python -m bench.diag_no_trust_env run INPUT --ledger L --api-url URL ...
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp

_original_init = aiohttp.ClientSession.__init__


def _init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
    kwargs["trust_env"] = False
    _original_init(self, *args, **kwargs)


if __name__ == "__main__":
    aiohttp.ClientSession.__init__ = _init  # type: ignore[method-assign]
    from batch_override.cli import main

    sys.exit(main(sys.argv[1:]))

"""Diagnostic, not the shipped job: ``batch-override`` with aiohttp's ``trust_env`` forced off.

Up to commit 1a13892 ``batch_override.sending.client.make_session`` built its session with
``trust_env=True`` (to honour ``HTTPS_PROXY``); aiohttp then looks up ``~/.netrc`` and the proxy
environment *per request*, each in a worker thread (``run_in_executor`` / ``to_thread``): two
thread round trips per row, ~3x the job's CPU per row.  The overhead benchmark runs the job through
this wrapper beside the job itself: while the two rows differ, the job still pays for it; once
they agree, it does not.  Against a loopback emulator no proxy applies, so the requests are the same.

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
    from batch_override.cli.main import main

    sys.exit(main(sys.argv[1:]))

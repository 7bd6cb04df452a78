"""``python -m bench.measure RESULT.json TIMEOUT ARGV...``: run ARGV and record what it cost.

Why a separate, small process: on Linux a child's ``ru_maxrss`` starts at the peak RSS of the
process it was forked from (the high-water mark survives ``exec``), so a child of the benchmark
process, which holds pyarrow and generated data, would report the benchmark's memory, not its
own.  Forked from this process (stdlib only, ~10 MiB) the floor is negligible.

RESULT.json gets ``returncode``, ``wall`` (s), ``user``/``system`` (CPU s of ARGV and every
descendant it reaped), ``maxrss_kib``, ``ended_unix`` and ``timed_out``.  ARGV is killed (by PID)
after TIMEOUT seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def measure(argv: list[str], timeout: float) -> dict[str, object]:
    started = time.monotonic()
    proc = subprocess.Popen(argv)
    timed_out = False
    while True:  # bounded by the timeout
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if not timed_out and time.monotonic() - started > timeout:
            timed_out = True
            os.kill(proc.pid, signal.SIGKILL)
        time.sleep(0.002)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: Popen must not wait
    return {
        "returncode": proc.returncode,
        "wall": wall,
        "user": usage.ru_utime,
        "system": usage.ru_stime,
        "maxrss_kib": usage.ru_maxrss,
        "ended_unix": time.time(),
        "timed_out": timed_out,
    }


if __name__ == "__main__":
    result = measure(sys.argv[3:], float(sys.argv[2]))
    with open(sys.argv[1], "w", encoding="utf-8") as fh:
        json.dump(result, fh)

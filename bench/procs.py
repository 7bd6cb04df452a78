"""Processes the benchmarks start: the emulator and measured clients, each stopped by its PID.

A measured child is reaped with ``os.wait4`` (in :mod:`bench.measure`), whose resource usage
covers the child *and* every descendant it reaped itself, so ``xargs -P 8 curl`` is charged for
all its curls.  ``ru_maxrss`` is the peak resident set of the child (or of its largest
descendant), in KiB.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEMO_API_KEY = "demo-key-0000"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark could not produce a trustworthy figure (a client failed, a server never started)."""


@dataclass(frozen=True, slots=True)
class Measured:
    """One finished child process: how long it ran and what it cost."""

    argv: tuple[str, ...]
    returncode: int
    wall: float  # seconds from spawn to reaped
    user: float  # CPU seconds, child and its reaped descendants
    system: float
    maxrss_kib: int
    ended_unix: float  # time.time() when the child was reaped
    stdout: str
    stderr: str
    machine_cpu: float  # busy CPU seconds of the whole machine while the child ran

    def foreign_cores(self, *also_ours: float) -> float:
        """Cores that other processes (not the child, not ``also_ours``) kept busy meanwhile."""
        return max(0.0, self.machine_cpu - self.cpu - sum(also_ours)) / self.wall

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def check(self, *ok: int) -> Measured:
        if self.returncode not in (ok or (0,)):
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise BenchError(f"{' '.join(self.argv[:4])} ... exited {self.returncode}:\n{tail}")
        return self


def bench_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of measured children: the demo key, no proxies (loopback only)."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["IDENTIFAI_API_KEY"] = DEMO_API_KEY
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_measured(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> Measured:
    """Run ``argv`` to the end (killed by PID after ``timeout`` seconds) and measure it.

    ``argv`` runs under :mod:`bench.measure`, a small stdlib-only process, so its peak RSS is its
    own and not this process's (see there); that process reaps it and reports its usage.
    """
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(tempfile.TemporaryFile("w+b"))
        err = stack.enter_context(tempfile.TemporaryFile("w+b"))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-measure-")))
        result_path = tmp / "result.json"
        busy_before = machine_busy_seconds()
        proc = subprocess.Popen(
            [PYTHON, "-m", "bench.measure", str(result_path), str(timeout), *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env or bench_env()),
            cwd=REPO,
        )
        try:
            proc.wait(timeout=timeout + 30)  # measure.py kills argv at `timeout` itself
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        machine_cpu = machine_busy_seconds() - busy_before
        if proc.returncode != 0 or not result_path.exists():
            raise BenchError(f"bench.measure failed ({proc.returncode}) running {' '.join(argv[:4])} ...")
        result = json.loads(result_path.read_text(encoding="utf-8"))
        if result["timed_out"]:
            raise BenchError(f"{' '.join(argv[:4])} ... ran over {timeout:.0f}s and was killed")
        out.seek(0)
        err.seek(0)
        return Measured(
            tuple(argv),
            int(result["returncode"]),
            float(result["wall"]),
            float(result["user"]),
            float(result["system"]),
            int(result["maxrss_kib"]),
            float(result["ended_unix"]),
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            machine_cpu,
        )


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs have spent busy since boot (``/proc/stat``), 0.0 where unavailable."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def wait_for_quiet(max_wait: float = 20.0, threshold: float = 0.3) -> float:
    """Wait (at most ``max_wait`` seconds) until other processes use under ``threshold`` cores;
    returns the last load seen, so a report can say the machine was busy."""
    deadline = time.monotonic() + max_wait
    while True:  # bounded by the deadline
        before, started = machine_busy_seconds(), time.monotonic()
        time.sleep(0.5)
        load = (machine_busy_seconds() - before) / (time.monotonic() - started)
        if load < threshold or time.monotonic() > deadline:
            return load


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process so far, from ``/proc/PID/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class EmulatorProcess:
    """``python -m batch_override.emulator --port 0 ...`` in its own process, on 127.0.0.1."""

    def __init__(self, *args: str) -> None:
        self.args = ("--host", "127.0.0.1", "--port", "0", *args)
        self._proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self, timeout: float = 20.0) -> None:
        self._proc = subprocess.Popen(
            [PYTHON, "-m", "batch_override.emulator", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env=bench_env(),
            cwd=REPO,
        )
        assert self._proc.stdout is not None
        os.set_blocking(self._proc.stdout.fileno(), False)
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:  # bounded by the deadline
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"the emulator did not start ({buf.decode(errors='replace')!r})")
            buf += self._proc.stdout.read() or b""
            time.sleep(0.01)
        line = buf.decode().splitlines()[0]
        if not line.startswith("batch-override emulator listening on http://127.0.0.1:"):
            self.stop()
            raise BenchError(f"unexpected emulator banner {line!r}")
        self.url = line.split()[-1]

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_emulator/stats", timeout=10) as resp:
            data: dict[str, Any] = json.load(resp)
        return data

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@contextlib.contextmanager
def emulator(*args: str) -> Iterator[EmulatorProcess]:
    """A fresh emulator process for one case, stopped (by PID) when the block ends."""
    server = EmulatorProcess(*args)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def job_argv(*args: str) -> list[str]:
    return [PYTHON, "-m", "batch_override", *args]

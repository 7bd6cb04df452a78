"""A genuine Laravel 8 throttle on loopback: ``redis-server`` and ``php -S server.php``, each started
on an ephemeral port and stopped by its PID.

Used by ``tests/laravel/test_conformance.py`` and by the benchmarks (``bench/field.py``); stdlib
only, synchronous, so either can drive it from a plain thread. What it needs comes from Debian
(``php-cli php-laravel-framework php-redis redis-server``; ``.ci/run`` installs them):
:func:`missing` names what is absent, in words a skip message can show.

Windows: Laravel keeps no history of its windows, so ``server.php`` logs every request (arrival
time, status, ``X-RateLimit-Remaining``, and the window's whole-second timer read from Redis) and
:meth:`LaravelApp.windows` groups them by timer: one timer, one window, opened at its first
request. (``X-RateLimit-Remaining`` cannot tell windows apart: concurrent workers report
duplicates.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
AUTOLOAD = Path("/usr/share/php/Illuminate/autoload.php")
PACKAGES = "php-cli php-laravel-framework php-redis redis-server"


def missing() -> str | None:
    """``None`` when everything is installed, else a plain sentence saying what is not."""
    absent = [name for name in ("php", "redis-server") if shutil.which(name) is None]
    if not AUTOLOAD.exists():
        absent.append(f"Laravel ({AUTOLOAD})")
    if (
        not absent
        and "redis"
        not in subprocess.run(
            ["php", "-m"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.split()
    ):
        absent.append("PHP's redis extension")
    if not absent:
        return None
    return f"needs {', '.join(absent)}: apt-get install {PACKAGES}"


def _free_port() -> int:
    # A small race (another process may take the port before the server binds it) that only
    # costs a failed start with a clear message; loopback only.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Server:
    """A child process whose output is drained by a thread; ``ready`` is set when ``marker`` shows."""

    def __init__(self, argv: list[str], marker: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._marker = marker
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=HERE,
            # Its own process group: php -S forks PHP_CLI_SERVER_WORKERS workers that outlive a
            # master stopped alone, so stop() signals the group (the PID of what we started).
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            if len(self.lines) < 200:  # php -S logs two lines a request: keep only the start
                self.lines.append(line.rstrip())
            if self._marker in line:
                self.ready.set()
        self.ready.set()  # the process ended: wake the waiter, who finds it dead

    def wait_ready(self, what: str, timeout: float = 30.0) -> None:
        if not self.ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            tail = "\n".join(self.lines[-10:])
            raise RuntimeError(f"{what} did not start:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # workers the master did not take down


@dataclass(frozen=True, slots=True)
class Request:
    """One request as ``server.php`` logged it; ``timer`` is ``None`` for a 401."""

    time: float
    status: int
    remaining: int | None
    timer: int | None


@dataclass(slots=True)
class Window:
    timer: int  # floor(first hit + decay), as Laravel stores it
    start: float
    accepted: int = 0
    throttled: int = 0
    requests: list[Request] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LaravelApp:
    url: str
    api_key: str
    limit: int
    log: Path

    def requests(self) -> list[Request]:
        out = []
        for line in self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []:
            time_text, status, remaining, timer = line.split()
            out.append(
                Request(
                    float(time_text),
                    int(status),
                    None if remaining == "-" else int(remaining),
                    None if timer == "-" else int(timer),
                )
            )
        return sorted(out, key=lambda r: r.time)

    def windows(self) -> list[Window]:
        """The throttle's windows, rebuilt from the log (see the module docstring)."""
        by_timer: dict[int, Window] = {}
        for request in self.requests():
            if request.timer is None:
                continue  # a 401: authenticated before the throttle, never counted
            window = by_timer.setdefault(request.timer, Window(request.timer, request.time))
            window.requests.append(request)
            if request.status == 429:
                window.throttled += 1
            else:
                window.accepted += 1
        return sorted(by_timer.values(), key=lambda w: w.start)


@contextlib.contextmanager
def laravel_app(
    limit: int, decay_minutes: str, api_key: str = "laravel-test-key", workers: int = 4
) -> Iterator[LaravelApp]:
    """Serve ``throttle:LIMIT,DECAY_MINUTES`` per API key on 127.0.0.1 until the block ends.

    ``decay_minutes`` is a string as the route writes it (``"0.25"`` is 15 s): Laravel casts the
    decay to whole seconds, and a decay under one second breaks its throttle.
    """
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="laravel-throttle-")))
        redis_port = _free_port()
        redis = _Server(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
             "--appendonly", "no", "--dir", str(tmp)],
            "Ready to accept connections",
        )  # fmt: skip
        stack.callback(redis.stop)
        redis.wait_ready("redis-server")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PHP_CLI_SERVER_WORKERS": str(workers),
            "REDIS_PORT": str(redis_port),
            "OVERRIDE_LIMIT": str(limit),
            "OVERRIDE_DECAY_MINUTES": decay_minutes,
            "OVERRIDE_API_KEY": api_key,
            "OVERRIDE_LOG": str(tmp / "requests.log"),
            "OVERRIDE_STORAGE": str(tmp),
        }
        port = _free_port()
        php = _Server(
            ["php", "-S", f"127.0.0.1:{port}", "server.php"],
            "Development Server",
            env,
        )
        stack.callback(php.stop)
        php.wait_ready("php -S")
        yield LaravelApp(f"http://127.0.0.1:{port}", api_key, limit, tmp / "requests.log")

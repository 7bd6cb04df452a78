"""A stderr nobody reads (a stalled log shipper, a full pipe) never stops the run nor its signals."""

from __future__ import annotations

import asyncio
import fcntl
import io
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from batch_override.cli.logs import QueuedStderr
from tests.clock import VirtualClock
from tests.support import FAST, REPO, cli_env, sha, write_csv

#: Seconds after which a wait that should end counts as a hang (never a verdict on speed).
NOT_A_HANG = 30.0


class _BlockedStream(io.StringIO):
    """A stream whose writes wait until ``release`` is set: a pipe nobody drains."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait()
        return super().write(text)


def test_a_log_record_to_a_blocked_stream_returns_at_once_and_the_overflow_is_counted() -> None:
    target = _BlockedStream()
    stream = QueuedStderr(target, maxsize=5)
    handler = logging.StreamHandler(stream)
    logger = logging.Logger("blocked")
    logger.addHandler(handler)
    # The stream stays blocked while the records are logged: had a record waited for it, the
    # logging thread would still be waiting (a blocked write never ends until released).
    logger.warning("line %d", 0)
    while stream._writing_since is None:  # the writer holds line 0, blocked: the queue only fills
        time.sleep(0.005)

    def log_the_rest() -> None:
        for i in range(1, 50):
            logger.warning("line %d", i)

    logging_thread = threading.Thread(target=log_the_rest)
    logging_thread.start()
    logging_thread.join(NOT_A_HANG)
    assert not logging_thread.is_alive()
    assert stream.dropped >= 44  # one in the writer's hands, five queued
    target.release.set()
    stream.close(patience=5)
    lines = target.getvalue().splitlines()
    assert lines[0] == "line 0"
    assert any(line.endswith("writes to stderr dropped: it was not being read") for line in lines)
    assert len(lines) <= 8


def test_closing_gives_up_on_a_stream_once_a_write_has_been_blocked_for_the_patience() -> None:
    """The README's blocked-stderr second, on a virtual clock: still waiting at 0.9 s of a 1-s
    patience, given up once the clock passes it."""
    target = _BlockedStream()
    clock = VirtualClock()
    stream = QueuedStderr(target, maxsize=5, clock=clock)
    stream.write("stuck\n")
    while stream._writing_since is None:  # the writer thread has begun the blocked write
        time.sleep(0.005)
    closing = threading.Thread(target=stream.close, kwargs={"patience": 1.0})
    closing.start()
    clock.advance(0.9)
    time.sleep(0.1)  # a slow machine only makes "still waiting" likelier, never a false failure
    assert closing.is_alive()
    clock.advance(0.2)
    closing.join(NOT_A_HANG)
    assert not closing.is_alive()
    target.release.set()


async def test_sigterm_ends_a_verbose_run_in_time_while_nobody_reads_its_stderr(
    tmp_path: Path, emulator_factory: Any
) -> None:
    emulator = await emulator_factory(unknown="classified")
    corrections = write_csv(tmp_path / "c.csv", [(sha(i), "human") for i in range(5_000)])
    ledger = tmp_path / "l.csv"
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, 4096)  # full after a few dozen -v lines
    args = ("run", str(corrections), "--ledger", str(ledger), "--api-url", emulator.url, *FAST)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batch_override", *args, "--rate", "200/s", "--grace", "1", "-v",
        env=cli_env(), cwd=str(REPO), stdout=asyncio.subprocess.DEVNULL, stderr=write_end,
    )  # fmt: skip
    os.close(write_end)
    try:
        # Rows keep being recorded long after the pipe is full: the loop never waits for stderr.
        deadline = time.monotonic() + 30
        while (ledger.stat().st_size if ledger.exists() else 0) < 40_000:
            assert time.monotonic() < deadline, "the run stopped recording rows"
            assert proc.returncode is None
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        # Not a hang: --grace 1 + 2 s is the promise, checked on virtual clocks (the grace in
        # tests/test_stopping.py, the stderr patience above); here, only that it ends at all.
        code = await asyncio.wait_for(proc.wait(), NOT_A_HANG)
        assert code == 143
    finally:
        if proc.returncode is None:
            proc.kill()  # our own child, by PID
            await proc.wait()
        os.close(read_end)


def test_the_progress_bar_on_a_blocked_stderr_never_waits(monkeypatch: Any) -> None:
    from batch_override.cli.logs import queued_stderr
    from batch_override.job.progress import Progress

    target = _BlockedStream()
    monkeypatch.setattr(sys, "stderr", target)

    def draw() -> None:
        with queued_stderr(patience=0.1), Progress(5000, enabled=True) as bar:
            for _ in range(5000):
                bar.advance("submitted")

    drawing = threading.Thread(target=draw)  # the stream stays blocked: a wait would never end
    drawing.start()
    drawing.join(NOT_A_HANG)
    assert not drawing.is_alive()
    target.release.set()

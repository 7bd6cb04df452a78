"""files: the atomic replace leaves the old content or the new one, and never a temporary file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batch_override.files import atomic_writer, complete_end


class _Stop(BaseException):
    """What ``hash``'s SIGTERM handler raises, wherever the main thread happens to be."""


def test_a_block_that_ends_well_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_bytes(b"old\n")
    with atomic_writer(path) as fh:
        fh.write(b"new\n")
    assert path.read_bytes() == b"new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_an_exception_in_the_block_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_bytes(b"old\n")
    with pytest.raises(_Stop), atomic_writer(path) as fh:
        fh.write(b"half")
        raise _Stop
    assert path.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_stop_raised_the_moment_the_temporary_file_exists_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The handler's exception lands right after the file was created, before anything holds its
    # descriptor: the case a full test run once hit (a .out.csv.*.tmp left behind).
    real_open = os.open
    opened: list[int] = []

    def open_then_stop(path: str, flags: int, mode: int = 0o777) -> int:
        opened.append(real_open(path, flags, mode))
        raise _Stop

    monkeypatch.setattr(os, "open", open_then_stop)
    with pytest.raises(_Stop), atomic_writer(tmp_path / "out.csv"):
        pass  # never reached
    monkeypatch.undo()
    os.close(opened[0])
    assert list(tmp_path.iterdir()) == []


def test_complete_end_is_past_the_last_line_break(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes(b"a\nb\ntorn")
    assert complete_end(path) == 4
    path.write_bytes(b"no break")
    assert complete_end(path) == 0

"""Who holds the embedded warehouse (sinks.embedded_lock), from the status file the engine writes and locks: a
lock held through another open file stands for the engine of another process. The real engine in another process
is in tests/component/test_embedded_lock_chdb.py."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sinks.embedded_lock import holder_pid

NO_SUCH_PID = 4_194_304 + 12_345  # above the largest pid_max Linux allows


@contextmanager
def locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the engine does
    try:
        yield
    finally:
        os.close(fd)


def status(directory: Path, pid: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "status"
    path.write_text(f"PID: {pid}\nStarted at: 2026-12-03 04:40:20\nRevision: 54515\n")
    return path


def test_a_live_process_holding_the_lock_is_named(tmp_path: Path) -> None:
    path = status(tmp_path / "warehouse", 1)
    with locked(path):
        assert holder_pid(path) == 1
    assert holder_pid(path) is None  # released: nobody holds it any more


@pytest.mark.parametrize("pid", [NO_SUCH_PID, os.getpid()], ids=["dead", "this process"])
def test_a_dead_process_or_this_one_holds_nothing_even_with_the_lock(tmp_path: Path, pid: int) -> None:
    path = status(tmp_path, pid)
    with locked(path):
        assert holder_pid(path) is None


def test_a_reused_pid_without_the_lock_holds_nothing(tmp_path: Path) -> None:
    """A crash leaves the file behind; its PID may now be another, unrelated process."""
    assert holder_pid(status(tmp_path, 1)) is None


@pytest.mark.parametrize("content", ["", "garbage\n", "PID: \n", "Started at: x\n"])
def test_a_missing_or_unreadable_status_holds_nothing(tmp_path: Path, content: str) -> None:
    assert holder_pid(tmp_path / "status") is None
    (tmp_path / "status").write_text(content)
    assert holder_pid(tmp_path / "status") is None

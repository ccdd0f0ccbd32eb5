"""Unit tests start nothing: no process, no network connection, no embedded ClickHouse. Each test runs with those
doors shut, so a test that needs one fails here with a pointer to tests/component (no Kafka needed) or
tests/integration."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

MOVE = "a unit test must not {what}: move it to tests/component (or tests/integration if it needs Kafka)"


def _refuse(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(MOVE.format(what=what))

    return refuse


@pytest.fixture(autouse=True)
def starts_nothing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start a process"))
    monkeypatch.setattr(socket.socket, "connect", _refuse("open a network connection"))
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse("open a network connection"))
    monkeypatch.setattr(socket.socket, "bind", _refuse("listen on a port"))
    monkeypatch.setitem(sys.modules, "chdb", None)  # `import chdb` raises ImportError: no embedded engine
    yield

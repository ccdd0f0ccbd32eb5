"""The idle socket check that replaces clickhouse-driver's ping before every query (sinks.native_connection)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from sinks.native_connection import is_stale


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def test_an_idle_open_connection_is_not_stale(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _theirs = pair
    assert not is_stale(ours)


def test_a_connection_the_peer_closed_is_stale(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.close()
    assert is_stale(ours)


def test_a_connection_with_unasked_bytes_waiting_is_stale(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(b"\x04")  # a packet no query asked for: the protocol is out of step
    assert is_stale(ours)


def test_a_socket_closed_here_or_missing_is_stale(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _theirs = pair
    ours.close()
    assert is_stale(ours)
    assert is_stale(None)

"""The native-protocol connection, without clickhouse-driver's ping before every query.

clickhouse-driver sends Ping and waits for Pong before each query on an open connection, to reconnect when the
server closed it. That is one more round trip per insert: with a dozen tables written per resolver batch, a
dozen round trips per batch, each of which also waits for the interpreter lock when another thread of the worker is
busy. ClickHouse's own client dropped the same ping in 2026 for a check that needs no round trip: an idle
connection has nothing to read, so a socket that is readable while idle was closed by the server (end of file) or
is out of step. The same check is made here. A connection that dies between the check and the query fails that
query; the resolver's retries then reconnect and resume the batch, as for any failed insert (a lost reply
included: docs/architecture.md, "State and exactly-once into ClickHouse").
"""

from __future__ import annotations

import select
from typing import Any

from clickhouse_driver.client import Client
from clickhouse_driver.connection import Connection


class PollCheckedConnection(Connection):  # type: ignore[misc]  # clickhouse-driver is untyped
    def force_connect(self) -> None:
        if self.connected and is_stale(self.socket):
            self.disconnect()
        if not self.connected:
            super().force_connect()
            return
        self.check_query_execution()


def is_stale(sock: Any) -> bool:
    """Whether an idle connection's socket is unusable: closed here, or readable (the server closed it, or sent
    what no query asked for)."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def client_checking_by_poll(**arguments: Any) -> Client:
    """A clickhouse-driver Client whose connection checks an idle socket by poll, not by ping."""
    client = Client(**arguments)
    # The Client builds its connection itself (with its settings wired in): only the staleness check changes.
    client.connection.__class__ = PollCheckedConnection
    return client

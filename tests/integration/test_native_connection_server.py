"""The native-protocol connection on a ClickHouse 18.16 server (sinks.native_connection): no ping before each
query, and a connection the server closed while idle is opened again."""

from __future__ import annotations

import time
from typing import Any

import pytest
from clickhouse_driver import Client
from clickhouse_driver.connection import Connection

from devtools.proxy import DelayProxy
from devtools.services import ClickHouseServer
from sinks.clickhouse import ServerWarehouse, connect
from sinks.native_connection import PollCheckedConnection, is_stale

pytestmark = pytest.mark.integration


def _counting_pings(monkeypatch: pytest.MonkeyPatch, cls: type[Any]) -> list[int]:
    pings: list[int] = []
    original = cls.ping

    def ping(self: Any) -> Any:
        pings.append(1)
        return original(self)
    monkeypatch.setattr(cls, "ping", ping)
    return pings


def test_the_stock_driver_pings_before_each_query(clickhouse: ClickHouseServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """What the warehouse's connection no longer does (and proof that the count below would see it)."""
    pings = _counting_pings(monkeypatch, Connection)
    client = Client(host="127.0.0.1", port=clickhouse.tcp_port)
    try:
        answers = [client.execute(f"SELECT {n}")[0][0] for n in range(5)]
    finally:
        client.disconnect()
    assert answers == [0, 1, 2, 3, 4]
    assert len(pings) == 4  # every query on the open connection but the first


def test_queries_on_an_open_connection_send_no_ping(clickhouse: ClickHouseServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pings = _counting_pings(monkeypatch, PollCheckedConnection)
    warehouse = connect(clickhouse.url)
    try:
        answers = [warehouse.query(f"SELECT {n}")[0][0] for n in range(5)]
    finally:
        warehouse.close()
    assert answers == [0, 1, 2, 3, 4]
    assert pings == []


def test_a_connection_the_server_closed_while_idle_is_opened_again(clickhouse: ClickHouseServer) -> None:
    with DelayProxy(clickhouse.tcp_port) as proxy:
        warehouse = connect(clickhouse.url.replace(f":{clickhouse.tcp_port}/", f":{proxy.port}/"))
        assert isinstance(warehouse, ServerWarehouse)
        try:
            assert warehouse.query("SELECT 1") == [(1,)]
            proxy.close_connections()
            socket = warehouse._client.connection.socket
            deadline = time.monotonic() + 10
            while not is_stale(socket) and time.monotonic() < deadline:  # the close reaches the client
                time.sleep(0.01)
            assert warehouse.query("SELECT 2") == [(2,)]
        finally:
            warehouse.close()
        assert proxy.connections == 2

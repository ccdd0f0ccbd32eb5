"""The warehouses the contract tests run against: the in-memory fake (sinks.fake), the embedded engine (chdb) and
a ClickHouse 18.16 server. Each runs in its own test layer, which binds the `backend` (and `engine`) fixture of
the contract classes: the fake in tests/unit, chdb in tests/component, the server in tests/integration.

Each backend gives migrated connections with the same insert faults (`faults.fail`, `faults.lose_reply`: in the
fake itself, around the real connections for the engines), and rejects the interaction rows whose text holds a
marker: a predicate in the fake, a real throwIf guard column on the engines, which is how a CHECK constraint is
written on 18.16 and the error code the service must recognise.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sinks.clickhouse import connect, open_migrated
from sinks.fake import FakeWarehouseServer, InsertFaults
from sinks.warehouse import Warehouse

_databases = itertools.count()


class FaultyWarehouse:
    """A real connection with the fake's insert faults around its inserts."""

    def __init__(self, inner: Warehouse, faults: InsertFaults) -> None:
        self.inner = inner
        self.faults = faults

    def insert(self, table: str, columns: dict[str, list[Any]]) -> None:
        self.faults.before_insert(table)
        self.inner.insert(table, columns)
        self.faults.after_insert(table)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Backend:
    name: str
    connect: Callable[[], Warehouse]  # a migrated connection, insert faults applied
    reject_text: Callable[[str], None]  # interaction rows whose text contains this are rejected from now on
    faults: InsertFaults
    patience: float  # seconds a known-bug test lets the service retry before it gives the batch up
    opened: list[Warehouse] = field(default_factory=list)

    def open(self) -> Warehouse:
        warehouse = self.connect()
        self.opened.append(warehouse)
        return warehouse

    def close(self) -> None:
        for warehouse in self.opened:
            with contextlib.suppress(Exception):
                warehouse.close()


def _fake() -> Backend:
    server = FakeWarehouseServer()

    def reject_text(marker: str) -> None:
        server.refuse_rows(lambda row: marker in row["text"])

    return Backend("fake", server.connect, reject_text, server.faults, 2.0)


def _engine(name: str, url: str) -> Backend:
    faults = InsertFaults()

    def reject_text(marker: str) -> None:
        warehouse = open_migrated(url)
        try:
            warehouse.command(f"ALTER TABLE {warehouse.database}.interaction_log ADD COLUMN reject_guard UInt8 "
                              f"DEFAULT throwIf(position(text, '{marker}') > 0)")
        finally:
            warehouse.close()

    return Backend(name, lambda: FaultyWarehouse(open_migrated(url), faults), reject_text,
                   faults, 8.0)


@contextlib.contextmanager
def fake_backend() -> Iterator[Backend]:
    made = _fake()
    try:
        yield made
    finally:
        made.close()


@contextlib.contextmanager
def chdb_backend(chdb_path: Path) -> Iterator[Backend]:
    """A database of its own under `chdb_path`: chdb serves one data directory per process, so a test session
    passes the same one every time."""
    made = _engine("chdb", f"chdb://{chdb_path}?database=contract_{next(_databases)}")
    try:
        yield made
    finally:
        made.close()


@contextlib.contextmanager
def server_backend(server_url: str) -> Iterator[Backend]:
    """A database of its own on the ClickHouse server, dropped afterwards."""
    database = f"contract_{next(_databases)}"
    made = _engine("server", server_url.rsplit("/", 1)[0] + "/" + database)
    try:
        yield made
    finally:
        made.close()
        admin = connect(server_url)
        admin.command(f"DROP DATABASE IF EXISTS {database}")
        admin.close()

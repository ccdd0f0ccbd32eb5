"""The warehouses every contract test runs against: the in-memory fake (sinks.fake), the embedded engine (chdb)
and a ClickHouse 18.16 server (the `clickhouse` fixture of tests/conftest.py; marked integration).

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

import pytest

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


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory for the whole session: chdb serves one path per process. A database per test."""
    return tmp_path_factory.mktemp("chdb-contract")


@contextlib.contextmanager
def _backend(kind: str, request: pytest.FixtureRequest, chdb_path: Path) -> Iterator[Backend]:
    database = f"contract_{next(_databases)}"
    if kind == "fake":
        made = _fake()
    elif kind == "chdb":
        made = _engine("chdb", f"chdb://{chdb_path}?database={database}")
    else:
        server_url = request.getfixturevalue("clickhouse").url
        made = _engine("server", server_url.rsplit("/", 1)[0] + "/" + database)
    try:
        yield made
    finally:
        made.close()
        if kind == "server":
            admin = connect(server_url)
            admin.command(f"DROP DATABASE IF EXISTS {database}")
            admin.close()


@pytest.fixture(params=["fake", "chdb", pytest.param("server", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest, chdb_path: Path) -> Iterator[Backend]:
    with _backend(request.param, request, chdb_path) as made:
        yield made


@pytest.fixture(params=["chdb", pytest.param("server", marks=pytest.mark.integration)])
def engine(request: pytest.FixtureRequest, chdb_path: Path) -> Iterator[Backend]:
    """The SQL engines only: for what the fake does not have (the analysts' views)."""
    with _backend(request.param, request, chdb_path) as made:
        yield made

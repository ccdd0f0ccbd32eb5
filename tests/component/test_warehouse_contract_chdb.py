"""The resolver service's exactly-once contract (tests/contract) and the analysts' views over what it wrote, on the
embedded engine (chdb): the same tests run on the in-memory fake in tests/unit (the views excepted) and on a
ClickHouse server in tests/integration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.backends import Backend, chdb_backend
from tests.contract.views_contract import ViewsContract
from tests.contract.warehouse_contract import WarehouseContract


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory for the whole session: chdb serves one path per process. A database per test."""
    return tmp_path_factory.mktemp("chdb-contract")


@pytest.fixture
def chdb(chdb_path: Path) -> Iterator[Backend]:
    with chdb_backend(chdb_path) as made:
        yield made


class TestWarehouseContractOnChdb(WarehouseContract):
    @pytest.fixture
    def backend(self, chdb: Backend) -> Backend:
        return chdb


class TestViewsOnChdb(ViewsContract):
    @pytest.fixture
    def engine(self, chdb: Backend) -> Backend:
        return chdb

"""The resolver service's exactly-once contract (tests/contract) and the analysts' views over what it wrote, on a
ClickHouse 18.16 server (the shared `clickhouse` fixture of tests/conftest.py; a database per test). No Kafka."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.services import ClickHouseServer
from tests.contract.backends import Backend, server_backend
from tests.contract.views_contract import ViewsContract
from tests.contract.warehouse_contract import WarehouseContract

pytestmark = pytest.mark.integration


@pytest.fixture
def server(clickhouse: ClickHouseServer) -> Iterator[Backend]:
    with server_backend(clickhouse.url) as made:
        yield made


class TestWarehouseContractOnTheServer(WarehouseContract):
    @pytest.fixture
    def backend(self, server: Backend) -> Backend:
        return server


class TestViewsOnTheServer(ViewsContract):
    @pytest.fixture
    def engine(self, server: Backend) -> Backend:
        return server

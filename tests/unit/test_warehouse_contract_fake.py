"""The resolver service's exactly-once contract (tests/contract/warehouse_contract.py) on the in-memory fake
warehouse: the same tests run on chdb in tests/component and on a ClickHouse server in tests/integration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.backends import Backend, fake_backend
from tests.contract.warehouse_contract import WarehouseContract


class TestWarehouseContractOnTheFake(WarehouseContract):
    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        with fake_backend() as made:
            yield made

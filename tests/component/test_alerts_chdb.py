"""The alerts contract (tests/contract/alerts_contract.py) on the embedded warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.alerts_contract import AlertsContract
from tests.contract.backends import Backend, chdb_backend


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    with chdb_backend(tmp_path / "warehouse") as made:
        yield made


class TestAlertsOnChdb(AlertsContract):
    pass

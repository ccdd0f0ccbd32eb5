"""The experience views (migration 0009_experience) on the embedded warehouse (chdb): six months of simulated
CX traffic (devtools.simulate_cx) written by the worker's own ingest and sink, every view compared row by row with
the same measure computed in Python from the traffic (tests/integration/experience_scenario.py); and late and
corrected data (tests/contract/experience_contract.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cem.settings import Settings
from devtools.simulate_cx import CxSimulator
from sinks.clickhouse import connect
from tests.contract.backends import Backend, chdb_backend
from tests.contract.experience_contract import ExperienceContract
from tests.integration import experience_scenario as scenario


def test_every_experience_view_equals_a_direct_computation(tmp_path: Path) -> None:
    settings = Settings.from_env({}, clickhouse_url=f"chdb://{tmp_path}/warehouse?database=cx",
                                 state_dir=str(tmp_path / "state"))
    traffic = CxSimulator(people=40, seed=3).run()
    scenario.load(settings, traffic)
    warehouse = connect(settings.clickhouse_url, read_only=True)
    try:
        scenario.assert_views_match(warehouse, traffic)
    finally:
        warehouse.close()


@pytest.fixture(scope="module")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb-experience")


@pytest.fixture
def chdb(chdb_path: Path) -> Iterator[Backend]:
    with chdb_backend(chdb_path) as made:
        yield made


class TestLateAndCorrectedDataOnChdb(ExperienceContract):
    @pytest.fixture
    def engine(self, chdb: Backend) -> Backend:
        return chdb

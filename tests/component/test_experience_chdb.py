"""The experience views (migration 0009_experience) on the embedded warehouse (chdb): six months of simulated
CX traffic (devtools.simulate_cx) written by the worker's own ingest and sink, every view compared row by row with
the same measure computed in Python from the traffic (tests/integration/experience_scenario.py); the query pack
(docs/queries.sql); late and corrected data (tests/contract/experience_contract.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from cem.domain.cx_metrics import Window
from cem.report import build_report, render_report
from cem.settings import Settings
from devtools.simulate_cx import CxSimulator, CxTraffic
from sinks.clickhouse import connect
from tests.contract.backends import Backend, chdb_backend
from tests.contract.experience_contract import ExperienceContract
from tests.integration import experience_checks as checks
from tests.integration import experience_scenario as scenario


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, CxTraffic]:
    path = tmp_path_factory.mktemp("experience")
    settings = Settings.from_env({}, clickhouse_url=f"chdb://{path}/warehouse?database=cx",
                                 state_dir=str(path / "state"))
    traffic = CxSimulator(people=40, seed=3).run()
    scenario.load(settings, traffic)
    return settings, traffic


def test_every_experience_view_equals_a_direct_computation(loaded: tuple[Settings, CxTraffic]) -> None:
    settings, traffic = loaded
    warehouse = connect(settings.clickhouse_url, read_only=True)
    try:
        checks.assert_views_match(warehouse, traffic)
    finally:
        warehouse.close()


def test_every_query_of_the_pack_runs_and_five_equal_a_direct_computation(loaded: tuple[Settings, CxTraffic]) -> None:
    settings, traffic = loaded
    warehouse = connect(settings.clickhouse_url, read_only=True)
    try:
        checks.assert_query_pack_matches(warehouse, traffic)
    finally:
        warehouse.close()


@pytest.mark.parametrize("window", [Window(), Window(date(2026, 7, 1), date(2026, 8, 31))], ids=["all", "cut"])
def test_the_reports_experience_figures_equal_a_direct_computation(loaded: tuple[Settings, CxTraffic],
                                                                   window: Window) -> None:
    settings, traffic = loaded
    warehouse = connect(settings.clickhouse_url, read_only=True)
    try:
        report = build_report(warehouse, window)
        checks.assert_report_matches(report.experience, traffic, window)
        text = render_report(report)
    finally:
        warehouse.close()
    for title in ("Surveys by the journey they rate", "Journey friction", "Digital friction", "Customer lifecycle",
                  "Purchase attribution"):
        assert f"\n{title}" in text


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

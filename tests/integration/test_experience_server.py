"""The experience views (migration 0009_experience) on ClickHouse 18.16: the simulated CX traffic of the chdb
component test, written by the worker's own sink to the server, read by the `readonly` user, every view compared
row by row with the direct computation (tests/integration/experience_scenario.py); the query pack
(docs/queries.sql) and `cem report`'s experience figures; late and corrected data
(tests/contract/experience_contract.py). No Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from cem.domain.cx_metrics import Window
from cem.report import build_report
from cem.settings import Settings
from devtools.services import ClickHouseServer
from devtools.simulate_cx import CxSimulator
from sinks.clickhouse import connect
from tests.contract.backends import Backend, server_backend
from tests.contract.experience_contract import ExperienceContract
from tests.integration import experience_checks as checks
from tests.integration import experience_scenario as scenario

pytestmark = pytest.mark.integration


def test_every_experience_view_on_clickhouse_18_16_equals_a_direct_computation(clickhouse: ClickHouseServer) -> None:
    database = "experience"
    settings = Settings.from_env({}, clickhouse_url=clickhouse.url.rsplit("/", 1)[0] + "/" + database)
    traffic = CxSimulator(people=40, seed=8).run()
    scenario.load(settings, traffic)
    reader = connect(clickhouse.readonly_url.rsplit("/", 1)[0] + "/" + database, read_only=True)
    try:
        checks.assert_views_match(reader, traffic)
        checks.assert_query_pack_matches(reader, traffic)
        for window in (Window(), Window(date(2026, 7, 1), date(2026, 8, 31))):
            checks.assert_report_matches(build_report(reader, window).experience, traffic, window)
    finally:
        reader.close()


@pytest.fixture
def server(clickhouse: ClickHouseServer) -> Iterator[Backend]:
    with server_backend(clickhouse.url) as made:
        yield made


class TestLateAndCorrectedDataOnTheServer(ExperienceContract):
    @pytest.fixture
    def engine(self, server: Backend) -> Backend:
        return server

"""The alerts contract (tests/contract/alerts_contract.py) on a ClickHouse 18.16 server. No Kafka."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.services import ClickHouseServer
from tests.contract.alerts_contract import AlertsContract
from tests.contract.backends import Backend, server_backend

pytestmark = pytest.mark.integration


@pytest.fixture
def backend(clickhouse: ClickHouseServer) -> Iterator[Backend]:
    with server_backend(clickhouse.url) as made:
        yield made


class TestAlertsOnTheServer(AlertsContract):
    pass


def test_the_html_report_queries_run_on_clickhouse_18_16_and_find_data(clickhouse: ClickHouseServer) -> None:
    from cem.domain.cx_metrics import Window
    from cem.settings import Settings
    from sinks import report_charts as charts
    from sinks.clickhouse import connect
    from tests.integration import report_scenario as scenario

    url = clickhouse.url.rsplit("/", 1)[0] + "/html_report"
    scenario.load(Settings.from_env({}, clickhouse_url=url), scenario.generate(seed=7))
    reader = connect(clickhouse.readonly_url.rsplit("/", 1)[0] + "/html_report", read_only=True)
    try:
        db = reader.database
        for sql in (charts.journey_paths(db, Window()), charts.scores_by_day_and_channel(db, Window()),
                    charts.open_alerts_by_age(db), charts.negative_topics(db, Window())):
            assert reader.query(sql), sql
        paths = reader.query(charts.journey_paths(db, Window()))
        assert all(isinstance(path, list) and path for path, _ in paths)
    finally:
        reader.close()

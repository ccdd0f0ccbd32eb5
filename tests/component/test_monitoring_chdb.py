"""The monitoring files with real tools and no Kafka: promtool checks the rules, runs their unit tests and lints the
exposition of every metric cem exports; the customer-experience dashboard's SQL runs on the embedded engine (chdb).
The same SQL runs on a ClickHouse 18.16 server, and the PromQL through a real Prometheus scraping a live worker, in
tests/integration/test_monitoring.py."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.monitoring import PROMETHEUS_DIR, RULE_FILES, RULE_TESTS, rules
from devtools.services import promtool
from tests.contract.backends import Backend, chdb_backend
from tests.contract.dashboards_contract import DashboardsContract

# Every metric of cem/metrics.py with one child per labelled metric, as a worker that saw everything exposes them.
EXPOSE_EVERY_METRIC = """
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from cem import metrics
for value in vars(metrics).values():
    if isinstance(value, MetricWrapperBase) and value._labelnames:
        value.labels(*["x"] * len(value._labelnames))
print(generate_latest(metrics.REGISTRY).decode(), end="")
"""


def exposition_of_every_metric() -> bytes:
    return subprocess.run([sys.executable, "-c", EXPOSE_EVERY_METRIC], capture_output=True, check=True,
                          timeout=60).stdout


def test_promtool_accepts_the_rules_and_the_example_config() -> None:
    checked = promtool("check", "rules", *map(str, RULE_FILES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for path in RULE_FILES:  # promtool counts each file's rules as the YAML holds them
        assert f"Checking {path}\n  SUCCESS: {len(rules([path]))} rules found" in checked.stdout, checked.stdout
    config = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_alert_fires_when_it_should_and_not_otherwise() -> None:
    tested = promtool("test", "rules", *map(str, RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_lints_the_exposition_of_every_metric_clean() -> None:
    text = exposition_of_every_metric()
    assert b"cem_stage_failures_total{" in text and b"cem_sink_batch_duration_seconds_bucket{" in text
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), \
        checked.stdout + checked.stderr


def test_promtool_check_metrics_finds_problems() -> None:
    """The lint above can fail: a counter without _total and a metric without help are reported."""
    bad = b"# TYPE cem_things counter\ncem_things 3\n"
    checked = promtool("check", "metrics", stdin=bad)
    assert checked.returncode != 0
    assert "_total" in checked.stdout + checked.stderr


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb-dashboards")


@pytest.fixture
def chdb(chdb_path: Path) -> Iterator[Backend]:
    with chdb_backend(chdb_path) as made:
        yield made


class TestDashboardsOnChdb(DashboardsContract):
    @pytest.fixture
    def engine(self, chdb: Backend) -> Backend:
        return chdb

    @pytest.fixture
    def run_panel_sql(self, chdb: Backend) -> Any:
        """The SQL in the backend's database, as the data source's defaultDatabase makes it."""
        warehouse = chdb.open()
        warehouse.command(f"USE {warehouse.database}")
        return warehouse.query

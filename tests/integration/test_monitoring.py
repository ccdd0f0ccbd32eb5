"""cem's monitoring on the production components: a real worker on Apache Kafka and a ClickHouse 18.16 server, a
real Prometheus (Debian's) scraping it with cem's rules loaded, and the dashboards' queries: every PromQL panel
through Prometheus' HTTP API, every SQL panel as the read-only `grafana` user the dashboards' data source uses."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.harness import WorkerProcess, isolated_settings, wait_until
from devtools.monitoring import RULE_FILES, expand_promql_variables, panel_queries, rules
from devtools.services import ClickHouseServer, PrometheusServer, promtool, require_prometheus
from devtools.simulate import Simulator
from devtools.topics import drained, publish
from tests.contract.backends import Backend, server_backend
from tests.contract.dashboards_contract import DashboardsContract, run_every_panel
from tests.integration.common import BASE_MS

pytestmark = pytest.mark.integration

SCRAPE_SECONDS = 1
DASHBOARD_INTERVAL_SECONDS = 15  # the panels' step ($__interval) at the default width of a 6-hour dashboard
DASHBOARD_RANGE_SECONDS = 6 * 3600


def grafana_sql(server: ClickHouseServer, database: str) -> Callable[[str], list[tuple[Any, ...]]]:
    """Run SQL as the data source does: user `grafana`, the database as its defaultDatabase, and the
    max_execution_time the plugin sets on every query (the reason the user is readonly=2)."""
    from clickhouse_driver import Client

    client = Client(host=server.host, port=server.tcp_port, user="grafana", password=server.grafana_password,
                    database=database, settings={"max_execution_time": 60})
    return lambda sql: list(client.execute(sql))


def pipeline_panels() -> list[tuple[str, str]]:
    return [(q.panel, q.query) for q in panel_queries() if q.datasource_type == "prometheus"]


def test_prometheus_scrapes_a_live_worker_and_every_panel_reads_what_it_wrote(
        kafka, clickhouse, tmp_workdir: Callable[[str], Path], tmp_path: Path) -> None:
    require_prometheus()
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "monitoring")
    traffic = Simulator(customers=30, seed=5, base_time_ms=BASE_MS).run()
    records = traffic.topic_records(settings)
    unique = len(traffic.person_of_event)

    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    target = f"127.0.0.1:{worker.settings.web_port}"
    try:
        with PrometheusServer(tmp_workdir("prometheus"), [target], rule_files=RULE_FILES,
                              scrape_interval=f"{SCRAPE_SECONDS}s", evaluation_interval=f"{SCRAPE_SECONDS}s",
                              external_labels={"runbook_base": "https://runbooks.example/"}) as prometheus:
            prometheus.wait_for('up{job="cem"}', lambda v: v == 1, 30)
            publish(settings, records)
            wait_until(lambda: drained(settings), 120, "worker did not drain", workers=[worker])

            # The worker's own exposition passes promtool's lint.
            exposition = worker.metrics_text()
            checked = promtool("check", "metrics", stdin=exposition.encode())
            assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip(), \
                checked.stdout + checked.stderr

            written = 'sum(cem_rows_written_total{table="interaction_log"})'
            assert prometheus.wait_for(written, lambda v: v == unique, 60) == unique
            assert prometheus.value("sum(cem_events_in_total)") == len(records)
            assert prometheus.value("sum(cem_deadletter_total)") == len(traffic.invalid)
            assert prometheus.value("sum(cem_duplicates_dropped_total)") == traffic.duplicates_sent
            assert prometheus.value("cem_sink_up") == 1
            # The resolver measured its own cost: the graph's time for the events that needed the owner, and its
            # batches' CPU for each step every batch goes through.
            assert (prometheus.value('sum(cem_identity_graph_seconds_total{need="owner"})') or 0.0) > 0
            busy_steps = {s["metric"]["step"] for s in prometheus.query("cem_resolver_cpu_seconds_total > 0")}
            assert {"resolve", "columns", "insert"} <= busy_steps
            prometheus.wait_for("cem:consumer_lag_messages:sum", lambda v: v == 0, 30)  # exported every 5 s

            # Every rule is loaded and evaluates without error; no cem alert fires on a healthy pipeline.
            def rule_states() -> dict[str, str]:
                groups = prometheus.api("rules")["groups"]
                return {r["name"]: r["health"] for g in groups for r in g["rules"]}

            expected = {rule.get("record") or rule["alert"] for rule in rules()}
            wait_until(lambda: set(rule_states()) == expected and set(rule_states().values()) == {"ok"}, 30,
                       lambda: f"rules not all loaded and healthy: {rule_states()}")
            assert prometheus.api("alerts")["alerts"] == []

            # A recorded rate exists once its rule was evaluated over two scrapes of the counter: wait for it, as a
            # dashboard opened a few seconds later would.
            def recorded(rule: str, label: str) -> set[str]:
                return {s["metric"][label] for s in prometheus.query(rule)}

            channels_sent = {r.channel for r in traffic.records}
            wait_until(lambda: recorded("cem:events_in:rate5m", "channel") == channels_sent, 30,
                       lambda: f"channel rates recorded: {recorded('cem:events_in:rate5m', 'channel')}")
            wait_until(lambda: "interaction_log" in recorded("cem:rows_written:rate5m", "table"), 30,
                       lambda: f"table rates recorded: {recorded('cem:rows_written:rate5m', 'table')}")

            # Every pipeline panel's PromQL, as Grafana sends it, instant and as a range.
            values: dict[str, list[dict[str, Any]]] = {}
            now = time.time()
            for title, expr in pipeline_panels():
                query = expand_promql_variables(expr, DASHBOARD_INTERVAL_SECONDS, SCRAPE_SECONDS,
                                                DASHBOARD_RANGE_SECONDS)
                values.setdefault(title, []).extend(prometheus.query(query))
                prometheus.query_range(query, now - 60, now, DASHBOARD_INTERVAL_SECONDS)
            single = {title: float(samples[0]["value"][1]) for title, samples in values.items() if len(samples) == 1}
            assert single["Workers up"] == 1
            assert single["Firing cem alerts"] == 0
            assert single["Records consumed"] == len(records)
            assert single["Interactions written"] == unique
            assert single["Dead letters"] == len(traffic.invalid)
            assert single["Consumer lag"] == 0
            # (Rates may be 0: a series born with its final value, all consumed between two scrapes, never rose.)
            channels = {s["metric"]["channel"] for s in values["Consumed per second, by channel"]}
            assert channels == channels_sent
            tables = {s["metric"]["table"] for s in values["Rows written per second, by table"]}
            assert "interaction_log" in tables

            # A worker that stops is seen down: CemWorkerDown is pending at once (it fires after its `for`).
            worker.stop()
            prometheus.wait_for('up{job="cem"}', lambda v: v == 0, 30)
            wait_until(lambda: [(a["labels"]["alertname"], a["state"]) for a in prometheus.api("alerts")["alerts"]]
                       == [("CemWorkerDown", "pending")], 30, lambda: str(prometheus.api("alerts")))
            (alert,) = prometheus.api("alerts")["alerts"]
            assert alert["annotations"]["runbook_url"] == "https://runbooks.example/docs/operations.md#cemworkerdown"
            assert alert["labels"]["instance"] == target and alert["labels"]["severity"] == "critical"
    finally:
        worker.stop()

    # Every customer-experience panel's SQL, as the grafana user, on what the worker wrote.
    database = settings.clickhouse_url.rsplit("/", 1)[1]
    panels = run_every_panel(grafana_sql(clickhouse, database), BASE_MS // 1000 - 30 * 86400,
                             int(time.time()) + 86400, 3600)
    assert panels["Interactions"] == [(unique,)]
    assert panels["Customers"] == [(traffic.customers,)]
    assert panels["Service journeys"][0][0] == len(traffic.journeys)
    assert sum(row[1] for row in panels["Sessions"]) == sum(traffic.sessions_per_person.values())
    assert sum(row[2] for row in panels["Interactions by channel"]) == unique


@pytest.fixture
def server(clickhouse: ClickHouseServer) -> Iterator[Backend]:
    with server_backend(clickhouse.url) as made:
        yield made


class TestDashboardsOnTheServer(DashboardsContract):
    """The same known figures as on chdb (tests/component/test_monitoring_chdb.py), on ClickHouse 18.16."""

    @pytest.fixture
    def engine(self, server: Backend) -> Backend:
        return server

    @pytest.fixture
    def run_panel_sql(self, server: Backend, clickhouse: ClickHouseServer) -> Callable[[str], list[tuple[Any, ...]]]:
        return grafana_sql(clickhouse, server.open().database)


def test_the_grafana_user_reads_but_cannot_write(clickhouse: ClickHouseServer) -> None:
    admin = clickhouse.client()
    admin.execute("CREATE TABLE IF NOT EXISTS grafana_target (x UInt8) ENGINE = Memory")
    admin.execute("INSERT INTO grafana_target VALUES", [(1,)])
    run = grafana_sql(clickhouse, clickhouse.database)
    assert run("SELECT x FROM grafana_target") == [(1,)]
    for statement in ("INSERT INTO grafana_target VALUES (2)", "CREATE TABLE grafana_was_here (x UInt8) "
                      "ENGINE = Memory", "DROP TABLE grafana_target", "SET readonly = 0"):
        with pytest.raises(Exception, match="readonly mode"):
            run(statement)
    assert admin.execute("SELECT x FROM grafana_target") == [(1,)]
    admin.execute("DROP TABLE grafana_target")

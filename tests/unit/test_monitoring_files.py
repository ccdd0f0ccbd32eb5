"""The Prometheus rules and Grafana dashboards in deploy/ against the code and the runbook: every metric and label
they read is one cem/metrics.py exports, every alert carries what on-call needs and links a runbook section that
exists, every panel reads a provisioned data source. (promtool and a real Prometheus check the rest:
`make check-deploy`, tests/component/test_monitoring_chdb.py, tests/integration/test_monitoring.py.)"""

from __future__ import annotations

import re

import pytest

from devtools.monitoring import (
    DASHBOARDS,
    DATASOURCES,
    OPERATIONS_DOC,
    PROMETHEUS_SERIES,
    RULE_FILES,
    TARGET_LABELS,
    alerting_rules,
    cem_metric_names,
    expand_clickhouse_macros,
    expand_promql_variables,
    exported_series,
    grouping_labels,
    load_yaml,
    markdown_anchors,
    panel_queries,
    recorded_names,
    recorded_names_used,
    rules,
    selector_labels,
)

SEVERITIES = {"critical", "warning", "info"}
# What the product owner asked alerts for, each to be covered by at least one alert's expression.
REQUIRED_ALERT_METRICS = {"cem_consumer_lag_messages", "cem_events_in_total", "cem_deadletter_total",
                          "cem_sink_failures_total", "cem_sink_up", "cem_identity_merges_refused_total",
                          "cem_state_restore_seconds"}


def every_promql() -> list[tuple[str, str]]:
    """(where, expression) of every rule and every Prometheus panel."""
    found = [(rule.get("record") or rule["alert"], rule["expr"]) for rule in rules()]
    found += [(f"{q.dashboard}: {q.panel}", q.query) for q in panel_queries() if q.datasource_type == "prometheus"]
    return found


def test_the_files_exist() -> None:
    assert [p.name for p in RULE_FILES] == ["cem-alerts.yml", "cem-recording.yml"]
    assert [p.name for p in DASHBOARDS] == ["cem-customer-experience.json", "cem-pipeline.json"]
    assert len(alerting_rules()) >= 8 and len(recorded_names()) >= 8


@pytest.mark.parametrize(("where", "expr"), every_promql())
def test_every_metric_and_label_read_is_exported(where: str, expr: str) -> None:
    series = exported_series()
    used = cem_metric_names(expr)
    assert used <= set(series), f"{where}: not in cem/metrics.py: {sorted(used - set(series))}"
    assert recorded_names_used(expr) <= recorded_names(), f"{where}: reads a series no recording rule makes"
    known = {**series, **PROMETHEUS_SERIES}
    for name, labels in selector_labels(expr).items():
        if name.startswith("cem:"):
            continue
        assert name in known, f"{where}: unknown series {name}"
        assert labels <= known[name] | TARGET_LABELS, f"{where}: {name} has no label {sorted(labels - known[name])}"
    all_labels = set().union(*series.values(), TARGET_LABELS, {"le"})
    assert grouping_labels(expr) <= all_labels, f"{where}: groups by a label no cem metric has"


def test_the_checks_catch_a_wrong_metric_or_label() -> None:
    series = exported_series()
    assert "cem_events_in_total" in series and "cem_events_in" not in series  # a counter is read as ..._total
    assert series["cem_sink_batch_duration_seconds_bucket"] == {"le"}
    assert series["cem_consumer_lag_messages"] == {"topic", "partition"}
    assert cem_metric_names('rate(cem_event_in_total{channel="cem_x"}[5m])') == {"cem_event_in_total"}
    assert selector_labels('cem_rows_written_total{tabel="x"}') == {"cem_rows_written_total": {"tabel"}}
    assert grouping_labels("sum by (reason, instance) (x) / on () group_left y") == {"reason", "instance"}
    assert recorded_names_used("cem:nope:rate5m > 0") == {"cem:nope:rate5m"}


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_severity_text_and_a_runbook_section(rule: dict) -> None:
    assert re.fullmatch(r"Cem[A-Za-z]+", rule["alert"])
    assert rule.get("for"), "an alert without `for` pages on one bad scrape"
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    url = annotations["runbook_url"]
    path, _, anchor = url.removeprefix("{{ $externalLabels.runbook_base }}").partition("#")
    assert path == "docs/operations.md"
    assert anchor == rule["alert"].lower()
    assert anchor in markdown_anchors(OPERATIONS_DOC.read_text()), f"docs/operations.md has no section #{anchor}"


def test_the_alerts_cover_what_was_asked() -> None:
    covered = set().union(*(cem_metric_names(rule["expr"]) for rule in rules()))
    assert REQUIRED_ALERT_METRICS <= covered
    assert any("up{" in rule["expr"] for rule in alerting_rules())  # worker down


def test_markdown_anchors_follow_github() -> None:
    text = "# Operations runbook\n## Worker stuck (event loop stalled): exit code 70\n```\n# not a heading\n```\n" \
           "### CemSinkDown\n## Duplicate storm\n## Duplicate storm\n## `cem sql` guard"
    assert markdown_anchors(text) == {"operations-runbook", "worker-stuck-event-loop-stalled-exit-code-70",
                                      "cemsinkdown", "duplicate-storm", "duplicate-storm-1", "cem-sql-guard"}


def test_every_panel_reads_a_provisioned_data_source() -> None:
    provisioned = {(source["type"], source["uid"]) for path in DATASOURCES
                   for source in load_yaml(path)["datasources"]}
    assert provisioned == {("prometheus", "cem-prometheus"), ("grafana-clickhouse-datasource", "cem-clickhouse")}
    queries = panel_queries()
    assert {(q.datasource_type, q.datasource_uid) for q in queries} == provisioned
    assert all(q.query.strip() for q in queries)
    by_dashboard = {q.dashboard: q.datasource_type for q in queries}
    assert by_dashboard == {"cem-pipeline.json": "prometheus",
                            "cem-customer-experience.json": "grafana-clickhouse-datasource"}


def test_the_clickhouse_data_source_uses_the_read_only_grafana_user() -> None:
    (source,) = [s for path in DATASOURCES for s in load_yaml(path)["datasources"] if s["uid"] == "cem-clickhouse"]
    assert source["jsonData"]["username"] == "grafana"
    assert source["secureJsonData"]["password"].startswith("${")  # from the environment, never in the file


def test_clickhouse_macros_expand_as_the_plugin_does() -> None:
    sql = "SELECT toDateTime(intDiv(toUInt32(t), $__interval_s) * $__interval_s) AS time FROM x " \
          "WHERE $__timeFilter(occurred_at) AND t < $__toTime AND t > $__fromTime AND s = '$notavariable'"
    assert expand_clickhouse_macros(sql, 100, 200, 60) == (
        "SELECT toDateTime(intDiv(toUInt32(t), 60) * 60) AS time FROM x WHERE occurred_at >= toDateTime(100) AND "
        "occurred_at <= toDateTime(200) AND t < toDateTime(200) AND t > toDateTime(100) AND s = '$notavariable'")
    assert expand_clickhouse_macros("SELECT $__interval_s", 0, 1, 0) == "SELECT 1"
    with pytest.raises(ValueError, match=r"\$__timeInterval"):
        expand_clickhouse_macros("SELECT $__timeInterval(t) FROM x", 0, 1, 1)
    with pytest.raises(ValueError, match=r"\$\{channel"):
        expand_clickhouse_macros("SELECT 1 FROM x WHERE c = ${channel}", 0, 1, 1)


def test_promql_variables_expand_as_grafana_does() -> None:
    expr = "rate(x[$__rate_interval]) + rate(y[${__interval}]) + increase(z[$__range])"
    assert expand_promql_variables(expr, 15, 15, 3600) == "rate(x[60s]) + rate(y[15s]) + increase(z[3600s])"
    assert expand_promql_variables("rate(x[$__rate_interval])", 120, 15, 60) == "rate(x[135s])"
    with pytest.raises(ValueError, match=r"\$job"):
        expand_promql_variables('up{job="$job"}', 15, 15, 60)


@pytest.mark.parametrize("query", [q for q in panel_queries() if q.datasource_type != "prometheus"],
                         ids=lambda q: q.panel)
def test_dashboard_sql_uses_only_known_macros_and_no_database_name(query) -> None:
    expanded = expand_clickhouse_macros(query.query, 0, 1, 60)
    assert not re.search(r"\bcem\.", expanded), "the data source's defaultDatabase names the database"
    assert re.search(r"\bFROM (interactions|journeys|channel_hourly)\b", expanded)

"""Reading cem's monitoring files (deploy/prometheus, deploy/grafana) for their tests: the rules, the metric and
label names their PromQL uses, the queries of every dashboard panel, the anchors of a Markdown runbook, and the
expansion of Grafana's variables and macros into what Grafana itself would send."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devtools.services import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
DATASOURCES = sorted((GRAFANA_DIR / "provisioning" / "datasources").glob("*.yml"))
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"

# Labels Prometheus adds to every scraped series, and the bucket label of histograms.
TARGET_LABELS = frozenset({"job", "instance"})
HISTOGRAM_LABELS = frozenset({"le"})
# Series Prometheus makes itself: the scrape's health and the alerts' state.
PROMETHEUS_SERIES = {"up": frozenset(), "ALERTS": frozenset({"alertname", "alertstate", "severity"})}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_CEM_METRIC = re.compile(r"(?<![\w:])(cem_[A-Za-z0-9_]+)")
_RECORDED = re.compile(r"(?<![\w:])(cem:[A-Za-z0-9_:]+)")
_SELECTOR = re.compile(r"(?<![\w:])([A-Za-z_][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    datasource_type: str
    datasource_uid: str
    query: str  # PromQL (`expr`) or SQL (`rawSql`), as the dashboard holds it


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules(paths: Iterable[Path] = RULE_FILES) -> list[dict[str, Any]]:
    """Every rule of every group of the rule files, recording and alerting."""
    found: list[dict[str, Any]] = []
    for path in paths:
        for group in load_yaml(path)["groups"]:
            found.extend(group["rules"])
    return found


def alerting_rules(paths: Iterable[Path] = RULE_FILES) -> list[dict[str, Any]]:
    return [rule for rule in rules(paths) if "alert" in rule]


def recorded_names(paths: Iterable[Path] = RULE_FILES) -> set[str]:
    return {rule["record"] for rule in rules(paths) if "record" in rule}


def without_strings(expr: str) -> str:
    """`expr` with its string literals emptied: a label value never counts as a metric or label name."""
    return _STRING.sub('""', expr)


def cem_metric_names(expr: str) -> set[str]:
    """The cem metrics (`cem_*` series names) an expression reads."""
    return set(_CEM_METRIC.findall(without_strings(expr)))


def recorded_names_used(expr: str) -> set[str]:
    """The recording-rule series (`cem:*`) an expression reads."""
    return set(_RECORDED.findall(without_strings(expr)))


def selector_labels(expr: str) -> dict[str, set[str]]:
    """{series name: label names its selectors match on}, for selectors written `name{...}`."""
    found: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(without_strings(expr)):
        found.setdefault(name, set()).update(_MATCHER_LABEL.findall(matchers))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Label names of by/without/on/ignoring/group_left/group_right clauses."""
    names: set[str] = set()
    for inside in _GROUPING.findall(without_strings(expr)):
        names.update(part.strip() for part in inside.split(",") if part.strip())
    return names


def exported_series() -> dict[str, frozenset[str]]:
    """{series name: label names} of every series cem/metrics.py can export, as Prometheus names them (a counter
    `x_total` is the series `x_total`; a histogram `x` is `x_bucket`, `x_count` and `x_sum`)."""
    from prometheus_client.metrics import MetricWrapperBase

    from cem import metrics

    series: dict[str, frozenset[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, labels, kind = value._name, frozenset(value._labelnames), value._type
        if kind == "counter":
            series[f"{name}_total"] = labels
        elif kind == "histogram":
            series[f"{name}_bucket"] = labels | HISTOGRAM_LABELS
            series[f"{name}_count"] = labels
            series[f"{name}_sum"] = labels
        else:
            series[name] = labels
    return series


def markdown_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text: lower case, punctuation dropped, spaces to
    hyphens; a repeated heading gets -1, -2, ..."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_code or heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def panel_queries(paths: Iterable[Path] = DASHBOARDS) -> list[PanelQuery]:
    """The query of every target of every panel (rows' nested panels included) of the dashboards."""
    found: list[PanelQuery] = []
    for path in paths:
        dashboard = json.loads(path.read_text())
        panels = list(dashboard["panels"])
        while panels:
            panel = panels.pop(0)
            panels.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                source = target.get("datasource") or panel.get("datasource") or {}
                query = target.get("expr", target.get("rawSql"))
                if query is None:
                    raise ValueError(f"{path.name}: panel {panel.get('title')!r} has a target without a query")
                found.append(PanelQuery(path.name, panel.get("title", ""), source.get("type", ""),
                                        source.get("uid", ""), query))
    return found


def expand_promql_variables(expr: str, interval_seconds: int, scrape_interval_seconds: int,
                            range_seconds: int) -> str:
    """`expr` as Grafana sends it to Prometheus: $__interval (the panel's step), $__rate_interval (the larger of
    $__interval plus the scrape interval and four scrape intervals, as Grafana's documentation defines it) and
    $__range (the dashboard's time range). Any other variable is an error: the tests would not know its value."""
    rate = max(interval_seconds + scrape_interval_seconds, 4 * scrape_interval_seconds)
    values = {"__rate_interval": f"{rate}s", "__interval": f"{interval_seconds}s", "__range": f"{range_seconds}s"}
    expanded = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: _variable(values, m.group(1) or m.group(2), expr), expr)
    return expanded


def expand_clickhouse_macros(sql: str, from_seconds: int, to_seconds: int, interval_seconds: int) -> str:
    """`sql` as the grafana-clickhouse-datasource plugin sends it: its macros replaced the way the plugin does
    (pkg/macros of the plugin): $__timeFilter(c) is `c >= toDateTime(from) AND c <= toDateTime(to)`, $__fromTime
    and $__toTime are `toDateTime(...)`, $__interval_s the panel's interval in seconds (at least 1). Any other
    macro or variable is an error."""
    interval = max(interval_seconds, 1)

    def time_filter(match: re.Match[str]) -> str:
        column = match.group(1).strip()
        return f"{column} >= toDateTime({from_seconds}) AND {column} <= toDateTime({to_seconds})"

    expanded = re.sub(r"\$__timeFilter\(([^()]+)\)", time_filter, sql)
    expanded = expanded.replace("$__fromTime", f"toDateTime({from_seconds})")
    expanded = expanded.replace("$__toTime", f"toDateTime({to_seconds})")
    expanded = re.sub(r"\$__interval_s\b", str(interval), expanded)
    leftover = re.search(r"\$\{?\w+", without_strings(expanded))
    if leftover:
        raise ValueError(f"unknown macro or variable {leftover.group(0)!r} in: {sql}")
    return expanded


def _variable(values: dict[str, str], name: str, expr: str) -> str:
    if name not in values:
        raise ValueError(f"unknown variable ${name} in: {expr}")
    return values[name]

"""Reading what a worker exposes, for tests, benchmarks and their reports: values from its /metrics text, a one-line
summary of the metrics that tell a stalled worker from a slow one, and log text without terminal control codes."""

from __future__ import annotations

import re

# The metrics a timed-out wait reports per worker, to tell a stalled worker from a slow one.
DIAGNOSTIC_METRICS = ("cem_events_in_total", "cem_events_resolved_total", "cem_deadletter_total",
                      "cem_rows_written_total", "cem_sink_up", "cem_sink_failures_total", "cem_sink_pending_events")
# ANSI escape sequences (CSI, OSC, two-byte) and the other control characters but tab and newline.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


def plain_text(text: str) -> str:
    """`text` without terminal control codes (colours, cursor moves, backspaces), for readable test reports."""
    return _CONTROL.sub("", text.replace("\r\n", "\n"))


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if labels and not all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            continue
        total += float(value)
    return total


def metrics_summary(text: str) -> str:
    """One line of the DIAGNOSTIC_METRICS and the consumer lag (total, and per topic where not zero)."""
    if not text:
        return "none scraped"
    parts = [f"{name.removeprefix('cem_')}={metric_value(text, name):g}" for name in DIAGNOSTIC_METRICS]
    lag: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("cem_consumer_lag_messages{"):
            head, _, value = line.rpartition(" ")
            topic = head.split('topic="', 1)[1].split('"', 1)[0]
            lag[topic] = lag.get(topic, 0.0) + float(value)
    busy = ", ".join(f"{topic}: {n:g}" for topic, n in sorted(lag.items()) if n)
    parts.append(f"consumer_lag={sum(lag.values()):g}" + (f" ({busy})" if busy else ""))
    return " ".join(parts)


def metric_totals(text: str) -> dict[str, float]:
    """Every metric of a /metrics text, its samples summed over their labels: {name: value}."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name = head.partition("{")[0]
        try:
            totals[name] = totals.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return totals

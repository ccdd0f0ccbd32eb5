"""Alerts in the warehouse (sinks/migrations/0010_alerts.sql): the columns of a batch's alert revisions and SLA
timers, the reads that rebuild the alert engine (`load_alert_snapshot`), the outbox read of the publisher
(`alert_rows_after`), and operators' actions. Both engines answer the same SQL; reads stay exact without FINAL."""

from __future__ import annotations

from typing import Any

from cem.domain.alerts import AlertChanges, AlertRow, AlertSnapshot, TimerRow
from cem.domain.alerts.rules import HOUR_MS
from cem.domain.alerts.signals import TREND_KEEP_MS
from sinks.clickhouse import sql_string
from sinks.warehouse import Warehouse

Columns = dict[str, list[Any]]
ALERT_COLUMNS = ("alert_id", "revision", "state", "rule", "kind", "severity", "customer_id", "issue", "journey_id",
                 "channel", "event_ms", "due_ms", "raised_ms", "detail", "evidence")
TIMER_COLUMNS = ("rule", "journey_id", "customer_id", "issue_ref", "channel", "priority", "first_ms", "deadline_ms",
                 "cleared")
ACTION_COLUMNS = ("action_id", "alert_id", "action", "actor", "note", "at_ms")
NEGATIVE_TEXT = -0.5


def alert_columns(changes: AlertChanges, version: int) -> dict[str, Columns]:
    """The alert_timers and alert_log rows of one batch (the tables sinks.writer.TABLE_ORDER places before the
    interaction rows, so a replayed batch finds its alerts already written)."""
    tables: dict[str, Columns] = {}
    if changes.timers:
        latest = {(t.rule, t.journey_id): t for t in changes.timers}  # one row per key and version
        tables["alert_timers"] = _columns(list(latest.values()), TIMER_COLUMNS, version)
        tables["alert_timers"]["cleared"] = [int(c) for c in tables["alert_timers"]["cleared"]]
    if changes.alerts:
        latest_alerts = {a.alert_id: a for a in changes.alerts}
        tables["alert_log"] = _columns(list(latest_alerts.values()), ALERT_COLUMNS, version)
        tables["alert_log"]["evidence"] = [list(e) for e in tables["alert_log"]["evidence"]]
    return tables


def _columns(items: list[Any], names: tuple[str, ...], version: int) -> Columns:
    cols: Columns = {name: [getattr(item, name) for item in items] for name in names}
    cols["version"] = [version] * len(items)
    return cols


def action_columns(actions: list[dict[str, Any]], version: int) -> Columns:
    cols: Columns = {name: [a[name] for a in actions] for name in ACTION_COLUMNS}
    cols["version"] = [version] * len(actions)
    return cols


def load_alert_snapshot(warehouse: Warehouse, retention_ms: int, text_window_ms: int) -> AlertSnapshot:
    """The alert engine's state as written: per-channel clocks first (they give the watermark, which bounds the
    rest), the latest revision of each alert within the retention, timers not cleared, hourly trend counts and
    recent texts."""
    reader = getattr(warehouse, "alert_snapshot", None)  # the in-memory fake answers in Python
    if reader is not None:
        snapshot: AlertSnapshot = reader(retention_ms)
        return snapshot
    db = warehouse.database
    snapshot = AlertSnapshot()
    snapshot.channel_clocks = [(str(c), int(e), int(s)) for c, e, s in warehouse.query(
        f"SELECT channel, max(occurred_ms), max(ingested_ms) FROM {db}.interaction_log GROUP BY channel")]
    latest = max((e for _, e, _ in snapshot.channel_clocks), default=0)
    snapshot.alerts = alert_rows(warehouse, f"event_ms >= {max(0, latest - retention_ms)}", latest_only=True)
    snapshot.timers = [TimerRow(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), int(r[6]),
                                int(r[7]), False) for r in warehouse.query(
        "SELECT rule, journey_id, argMax(customer_id, version), argMax(issue_ref, version), argMax(channel, version),"
        " argMax(priority, version), argMax(first_ms, version), argMax(deadline_ms, version), "
        f"argMax(cleared, version) AS done FROM {db}.alert_timers GROUP BY rule, journey_id HAVING done = 0")]
    since = max(0, latest - TREND_KEEP_MS)
    snapshot.hourly = [(str(c), int(h), str(s), int(n)) for c, h, s, n in warehouse.query(
        f"SELECT channel, intDiv(occurred_ms, {HOUR_MS}) * {HOUR_MS} AS hour, signal, count() FROM ("
        f"  SELECT channel, occurred_ms, arrayConcat(emotions, if(ifNull(text_sentiment, 0) <= {NEGATIVE_TEXT} "
        "   AND sentence_count > 0, ['negative'], emptyArrayString())) AS signals"
        f"  FROM {db}.interaction_log WHERE occurred_ms >= {since}) "
        "ARRAY JOIN signals AS signal GROUP BY channel, hour, signal")]
    if text_window_ms:
        snapshot.texts = [(str(c), int(ms), float(s), str(e)) for c, ms, s, e in warehouse.query(
            f"SELECT customer_id, occurred_ms, text_sentiment, event_id FROM {db}.interactions "
            f"WHERE occurred_ms >= {max(0, latest - text_window_ms)} AND sentence_count > 0 "
            "AND isNotNull(text_sentiment)")]
    return snapshot


def alert_rows(warehouse: Warehouse, where: str, latest_only: bool = False) -> list[AlertRow]:
    """Alert revisions matching `where`, in version order (the latest of each alert with `latest_only`)."""
    db = warehouse.database
    names = ", ".join(ALERT_COLUMNS)
    if latest_only:
        source = (f"SELECT alert_id, max(revision) AS revision FROM {db}.alert_log WHERE {where} GROUP BY alert_id")
        sql = (f"SELECT DISTINCT {names} FROM {db}.alert_log WHERE (alert_id, revision) IN ({source}) "
               "ORDER BY revision, alert_id")
    else:
        sql = f"SELECT DISTINCT {names} FROM {db}.alert_log WHERE {where} ORDER BY revision, alert_id"
    return [row_of(r) for r in warehouse.query(sql)]


def alert_rows_after(warehouse: Warehouse, revision: int, alert_id: str) -> list[AlertRow]:
    """The outbox: revisions written after (revision, alert_id), the last one published, in publishing order."""
    reader = getattr(warehouse, "alert_rows_after", None)  # the in-memory fake answers in Python
    if reader is not None:
        rows: list[AlertRow] = reader(revision, alert_id)
        return rows
    return alert_rows(warehouse, f"revision > {int(revision)} OR (revision = {int(revision)} "
                                 f"AND alert_id > {sql_string(alert_id)})")


def row_of(r: tuple[Any, ...]) -> AlertRow:
    return AlertRow(str(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), str(r[6]), str(r[7]),
                    str(r[8]), str(r[9]), int(r[10]), int(r[11]), int(r[12]), str(r[13]),
                    tuple(str(e) for e in r[14]))

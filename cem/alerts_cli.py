"""`cem alerts list|summary|ack|resolve|tail`: the alert cases as operators see and move them (docs/cli.md).

`list` and `summary` read the `alerts` view (status, and the time spent open and acknowledged); `ack` and `resolve`
send an action to `<prefix>.alert_actions`, which the worker applies idempotently; `tail` follows `<prefix>.alerts`
and prints each new revision as one JSON line.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any, TextIO

import orjson

from cem.kafka import kafka_client_options, produce
from cem.settings import Settings
from cem.sql_cli import open_read_only, render
from schemas.alerts import decode_alert, encode_action
from sinks.clickhouse import sql_string

STATUSES = ("open", "acknowledged", "resolved", "withdrawn")
LIST_COLUMNS = ("alert_id", "rule", "severity", "status", "customer_id", "issue", "channel",
                "toDateTime(intDiv(event_ms, 1000), 'UTC') AS event_at", "detail", "open_seconds",
                "acknowledged_seconds", "acknowledged_by", "resolved_by")


def list_alerts(settings: Settings, status: str | None, rule: str | None, fmt: str, limit: int,
                out: TextIO | None = None) -> int:
    out = out or sys.stdout
    where = []
    if status:
        where.append(f"status = {sql_string(status)}")
    if rule:
        where.append(f"rule = {sql_string(rule)}")
    return _query(settings, f"SELECT {', '.join(LIST_COLUMNS)} FROM {{db}}.alerts"
                  f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY event_ms, alert_id "
                  f"LIMIT {int(limit)}", fmt, out)


def summary(settings: Settings, fmt: str, out: TextIO | None = None) -> int:
    """Per rule and status: how many, and the mean and longest time spent open and acknowledged."""
    return _query(settings, "SELECT rule, status, count() AS alerts, round(avg(open_seconds)) AS mean_open_s, "
                  "max(open_seconds) AS max_open_s, round(avgIf(acknowledged_seconds, acknowledged_ms > 0)) "
                  "AS mean_acknowledged_s FROM {db}.alerts GROUP BY rule, status ORDER BY rule, status",
                  fmt, out or sys.stdout)


def _query(settings: Settings, sql: str, fmt: str, out: TextIO) -> int:
    warehouse = open_read_only(settings, sys.stderr)
    if warehouse is None:
        return 1
    try:
        names, rows = warehouse.query_with_columns(sql.format(db=warehouse.database))
    finally:
        warehouse.close()
    out.write(render(fmt, names, rows))
    return 0


def act(settings: Settings, action: str, alert_ids: list[str], actor: str, note: str,
        now: float | None = None) -> int:
    """Send one action per alert to the actions topic; the worker records it (the view shows it at once)."""
    at_ms = int((now if now is not None else time.time()) * 1000)
    records = [(settings.alert_actions_topic, alert_id.encode(),
                encode_action({"action_id": uuid.uuid4().hex, "alert_id": alert_id, "action": action,
                               "actor": actor, "note": note, "at_ms": at_ms}))
               for alert_id in alert_ids]
    asyncio.run(produce(settings, records))
    print(f"{action}: sent for {len(records)} alert(s)")
    return 0


def tail(settings: Settings, from_beginning: bool, max_messages: int | None, idle_seconds: float | None,
         out: TextIO | None = None) -> int:
    return asyncio.run(_tail(settings, from_beginning, max_messages, idle_seconds, out or sys.stdout))


async def _tail(settings: Settings, from_beginning: bool, max_messages: int | None, idle_seconds: float | None,
                out: TextIO) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    partition = TopicPartition(settings.alerts_topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None,
                                **kafka_client_options(settings))
    await consumer.start()
    seen = 0
    try:
        consumer.assign([partition])
        if from_beginning:
            await consumer.seek_to_beginning(partition)
        else:
            await consumer.seek_to_end(partition)
        quiet_since = time.monotonic()
        while max_messages is None or seen < max_messages:
            batch = await consumer.getmany(partition, timeout_ms=500)
            records: list[Any] = batch.get(partition, [])
            for record in records:
                out.write(orjson.dumps(decode_alert(record.value, record.headers)).decode() + "\n")
                seen += 1
            out.flush()
            if records:
                quiet_since = time.monotonic()
            elif idle_seconds is not None and time.monotonic() - quiet_since > idle_seconds:
                break
    finally:
        await consumer.stop()
    return 0

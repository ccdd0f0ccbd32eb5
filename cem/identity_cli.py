"""`cem identity explain` and `cem forget`: the identity graph as analysts and data-protection officers see it."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime

import orjson

from cem.config import identifier_rules
from cem.settings import Settings
from cem.sql_cli import sql_limits
from sinks.clickhouse import Warehouse, connect, sql_string, value_hash


def _normalised(settings: Settings, id_type: str, value: str) -> str | None:
    rules = identifier_rules(settings)
    if id_type not in rules.types:
        print(f"unknown identifier type {id_type!r}; known: {', '.join(rules.types)}", file=sys.stderr)
        return None
    normalised = rules.normalise(id_type, value)
    if normalised is None:
        print(f"{id_type} {value!r} is blocked or malformed: it never links anyone", file=sys.stderr)
    return normalised


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def explain_identifier(settings: Settings, id_type: str, value: str) -> int:
    normalised = _normalised(settings, id_type, value)
    if normalised is None:
        return 2
    warehouse = connect(settings.clickhouse_url, read_only=True, limits=sql_limits(settings))
    db = warehouse.database
    owner = warehouse.query(
        f"SELECT customer_id FROM {db}.identities WHERE id_type = {sql_string(id_type)} "
        f"AND value = {sql_string(normalised)}")
    if not owner:
        print(f"{id_type} {normalised}: not linked to any customer")
        return 1
    customer = str(owner[0][0])
    print(explain_customer(warehouse, customer, (id_type, normalised)))
    return 0


def explain_customer(warehouse: Warehouse, customer: str, asked: tuple[str, str]) -> str:
    db = warehouse.database
    lines = [f"{asked[0]} {asked[1]} belongs to customer {customer}"]
    first = warehouse.query(f"SELECT first_event_id, first_seen_ms FROM {db}.customers "
                            f"WHERE customer_id = {sql_string(customer)}")
    if first:
        lines.append(f"  first seen {_when(int(first[0][1]))} in event {first[0][0]}")
    ids = [customer] + [str(r[0]) for r in warehouse.query(
        f"SELECT customer_id FROM {db}.customer_resolution WHERE current_customer_id = {sql_string(customer)} "
        f"AND customer_id != {sql_string(customer)}")]
    in_ids = ", ".join(sql_string(i) for i in ids)
    identifiers = warehouse.query(
        f"SELECT id_type, value, event_id, linked_at, rule, linked_customer_id FROM {db}.identities "
        f"WHERE customer_id = {sql_string(customer)} ORDER BY linked_at, id_type, value")
    lines.append(f"\nIdentifiers ({len(identifiers)}):")
    for id_type, value, event_id, linked_at, rule, linked_to in identifiers:
        via = "" if linked_to == customer else f" (linked to {linked_to}, merged since)"
        lines.append(f"  {id_type:<14} {value:<40} linked {linked_at} by event {event_id} [{rule}]{via}")
    merges = warehouse.query(
        f"SELECT from_id, into_id, event_id, occurred_ms, rule FROM {db}.customer_merges "
        f"WHERE into_id IN ({in_ids}) OR from_id IN ({in_ids}) ORDER BY version, seq")
    lines.append(f"\nMerges ({len(merges)}):")
    for from_id, into_id, event_id, occurred_ms, rule in merges:
        lines.append(f"  {from_id} -> {into_id} at {_when(int(occurred_ms))} by event {event_id} [{rule}]")
    refused = warehouse.query(
        f"SELECT customer_id, other_customer_id, event_id, occurred_ms, reason FROM {db}.refused_merges "
        f"WHERE customer_id IN ({in_ids}) OR other_customer_id IN ({in_ids}) ORDER BY occurred_ms")
    lines.append(f"\nRefused merges ({len(refused)}):")
    for a, b, event_id, occurred_ms, reason in refused:
        lines.append(f"  {a} x {b} at {_when(int(occurred_ms))} by event {event_id}: {reason}")
    events = warehouse.query(
        f"SELECT count(), min(occurred_ms), max(occurred_ms), groupUniqArray(channel) FROM {db}.interactions "
        f"WHERE customer_id = {sql_string(customer)}")
    count, first_ms, last_ms, channels = events[0]
    if int(count):
        lines.append(f"\nEvents: {count} from {_when(int(first_ms))} to {_when(int(last_ms))} on "
                     f"{', '.join(sorted(channels))}")
    return "\n".join(lines)


def forget_identifier(settings: Settings, id_type: str, value: str, wait: float) -> int:
    normalised = _normalised(settings, id_type, value)
    if normalised is None:
        return 2
    request_id = uuid.uuid4().hex
    message = {"control": "forget", "request_id": request_id, "id_type": id_type, "value": normalised,
               "requested_ms": int(time.time() * 1000)}
    asyncio.run(_send_control(settings, orjson.dumps(message)))
    print(f"erasure request {request_id} queued for {id_type} (sha256 {value_hash(normalised)[:16]}…)")
    if settings.clickhouse_url.startswith("chdb://"):
        print("the embedded warehouse belongs to the worker process: the worker applies the request when it runs")
        return 0
    warehouse = connect(settings.clickhouse_url, read_only=True, limits=sql_limits(settings))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        rows = warehouse.query(
            f"SELECT customer_id, identifiers_removed, events_anonymised FROM {warehouse.database}.erasure_log "
            f"WHERE request_id = {sql_string(request_id)}")
        if rows:
            customer, removed, anonymised = rows[0]
            if not customer:
                print("no customer held that identifier; the request is recorded in cem.erasure_log")
            else:
                print(f"customer {customer} forgotten: {removed} identifiers deleted, {anonymised} interactions "
                      "anonymised; audit record in cem.erasure_log")
            return 0
        time.sleep(0.5)
    print(f"the request is queued but no worker applied it within {wait:.0f} s", file=sys.stderr)
    return 1


async def _send_control(settings: Settings, payload: bytes) -> None:
    from cem.cli import produce

    await produce(settings, [(settings.resolve_topic, b"control", payload)])

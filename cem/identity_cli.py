"""`cem identity explain` and `cem forget`: the identity graph as analysts and data-protection officers see it."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime

import orjson

from cem.config import identifier_rules, type_limits
from cem.settings import Settings
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
    warehouse = connect(settings.clickhouse_url, read_only=True)
    db = warehouse.database
    shared = explain_shared(warehouse, (id_type, normalised), type_limits(settings))
    if shared is not None:
        print(shared)
        return 0
    owner = warehouse.query(
        f"SELECT customer_id FROM {db}.identities WHERE id_type = {sql_string(id_type)} "
        f"AND value = {sql_string(normalised)} AND customer_id != ''")
    if not owner:
        print(f"{id_type} {normalised}: not linked to any customer")
        return 1
    customer = str(owner[0][0])
    print(explain_customer(warehouse, customer, (id_type, normalised)))
    return 0


SHARED_COLUMNS = ("argMin(event_id, version), argMin(occurred_ms, version), argMin(reason, version), "
                  "argMin(distinct_count, version)")


def _evidence(reason: str, distinct: int, limit: int | None = None) -> str:
    seen_with = reason.partition(":")[2] or reason
    held = f"one customer may hold {limit}" if limit is not None else "more than one customer may hold"
    return f"seen with {distinct} {seen_with} values ({held})"


def explain_shared(warehouse: Warehouse, asked: tuple[str, str], limits: dict[str, int]) -> str | None:
    """What a shared identifier is and why, or None when it is not shared."""
    db = warehouse.database
    id_type, value = (sql_string(part) for part in asked)
    rows = warehouse.query(f"SELECT {SHARED_COLUMNS} FROM {db}.shared_identifiers "
                           f"WHERE id_type = {id_type} AND value = {value} GROUP BY id_type, value")
    if not rows:
        return None
    event_id, occurred_ms, reason, distinct = rows[0]
    carried = warehouse.query(
        "SELECT uniqExact(owner), count() FROM (SELECT argMax(customer_id, version) AS owner, "
        f"any(id_types) AS types, any(id_values) AS vals FROM {db}.identity_sets GROUP BY identity_key) "
        f"WHERE arrayExists((t, v) -> t = {id_type} AND v = {value}, types, vals)")
    customers, sets = (int(n) for n in carried[0]) if carried else (0, 0)
    return "\n".join([
        f"{asked[0]} {asked[1]} is shared: it links and attributes nobody",
        f"  {_evidence(str(reason), int(distinct), limits.get(str(reason).partition(':')[2]))}; "
        f"marked by event {event_id} at {_when(int(occurred_ms))}",
        f"  carried by {sets} identifier sets of {customers} customers: each event is attributed by its other "
        "identifiers, and an event with only shared identifiers is a customer of its own",
    ])


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
    current = _resolutions(warehouse, {i for row in merges for i in row[:2]})
    for from_id, into_id, event_id, occurred_ms, rule in merges:
        # A later recompute (a late event, an identifier found shared) can split what a merge joined.
        undone = "" if current.get(from_id, from_id) == current.get(into_id, into_id) else " (undone since)"
        lines.append(f"  {from_id} -> {into_id} at {_when(int(occurred_ms))} by event {event_id} [{rule}]{undone}")
    shared = warehouse.query(
        f"SELECT id_type, value, {SHARED_COLUMNS} FROM {db}.shared_identifiers WHERE (id_type, value) IN ("
        "SELECT id_type, value FROM (SELECT argMax(id_types, version) AS types, argMax(id_values, version) AS vals "
        f"FROM {db}.identity_sets GROUP BY identity_key HAVING argMax(customer_id, version) IN ({in_ids})) "
        "ARRAY JOIN types AS id_type, vals AS value) GROUP BY id_type, value ORDER BY id_type, value")
    lines.append(f"\nShared identifiers ({len(shared)}): on this customer's events, but linking nobody")
    for id_type, value, event_id, _occurred_ms, reason, distinct in shared:
        lines.append(f"  {id_type:<14} {value:<40} {_evidence(str(reason), int(distinct))}, since event {event_id}")
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


def _resolutions(warehouse: Warehouse, customer_ids: set[str]) -> dict[str, str]:
    if not customer_ids:
        return {}
    in_ids = ", ".join(sql_string(i) for i in sorted(customer_ids))
    return {str(a): str(b) for a, b in warehouse.query(
        f"SELECT customer_id, current_customer_id FROM {warehouse.database}.customer_resolution "
        f"WHERE customer_id IN ({in_ids})")}


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
    warehouse = connect(settings.clickhouse_url, read_only=True)
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

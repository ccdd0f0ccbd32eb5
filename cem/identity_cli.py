"""`cem identity explain` and `cem forget`: the identity graph as analysts and data-protection officers see it."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime

import orjson

from cem.config import identifier_rules, type_limits
from cem.domain.erasure import NOT_FOUND, REFUSED, ErasureRequest
from cem.domain.keyed import key_bytes, keyed_hash
from cem.kafka import produce
from cem.settings import Settings
from cem.sql_cli import sql_limits
from schemas.internal import signature_headers
from sinks.clickhouse import connect, sql_string
from sinks.warehouse import Warehouse


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
        f"SELECT id_type, value, event_id, toUnixTimestamp(linked_at), rule, linked_customer_id FROM {db}.identities "
        f"WHERE customer_id = {sql_string(customer)} ORDER BY linked_at, id_type, value")
    lines.append(f"\nIdentifiers ({len(identifiers)}):")
    for id_type, value, event_id, linked_at, rule, linked_to in identifiers:
        via = "" if linked_to == customer else f" (linked to {linked_to}, merged since)"
        # Epoch seconds, not the DateTime: the server's driver and the embedded engine print a DateTime differently.
        lines.append(f"  {id_type:<14} {value:<40} linked {_when(int(linked_at) * 1000)} by event {event_id} "
                     f"[{rule}]{via}")
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


def forget_identifier(settings: Settings, id_type: str, value: str, wait: float, force: bool = False) -> int:
    """Queue an erasure request and wait for the worker's audit row. The request carries a keyed hash of the
    normalised value, never the value (docs/identity.md, "Erasure")."""
    normalised = _normalised(settings, id_type, value)
    if normalised is None:
        return 2
    if not settings.secret_key:
        print("warning: CEM_SECRET_KEY is empty: the public development key is used; the worker must use the same "
              "key to find the identifier", file=sys.stderr)
    value_key = keyed_hash(key_bytes(settings.secret_key), id_type, normalised)
    request = ErasureRequest(uuid.uuid4().hex, id_type, value_key, int(time.time() * 1000), force)
    asyncio.run(_send_control(settings, orjson.dumps(request.to_message())))
    print(f"erasure request {request.request_id} queued for {id_type} (keyed hash {value_key[:16]}…)"
          + (", forced" if force else ""))
    if settings.clickhouse_url.startswith("chdb://"):
        print("the embedded warehouse belongs to the worker process: the worker applies the request when it runs")
        return 0
    warehouse = connect(settings.clickhouse_url, read_only=True, limits=sql_limits(settings))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        rows = warehouse.query(
            "SELECT status, reason, customers_erased, identifiers_removed, events_anonymised FROM "
            f"{warehouse.database}.erasure_audit WHERE request_id = {sql_string(request.request_id)}")
        if rows:
            return _print_outcome(*rows[0])
        time.sleep(0.5)
    print(f"the request is queued but no worker applied it within {wait:.0f} s", file=sys.stderr)
    return 1


def _print_outcome(status: str, reason: str, customers: int, identifiers: int, events: int) -> int:
    if status == REFUSED:
        print(f"refused: {reason}", file=sys.stderr)
        print("nothing was erased; the refusal is recorded in cem.erasure_audit", file=sys.stderr)
        return 3
    if status == NOT_FOUND:
        print("no event carried that identifier (or it was erased already); the request is recorded in "
              "cem.erasure_audit")
        return 0
    print(f"{customers} customer(s) forgotten: {identifiers} identifiers deleted, {events} interactions "
          f"anonymised{' (' + reason + ')' if reason else ''}; audit record in cem.erasure_audit")
    return 0


async def _send_control(settings: Settings, payload: bytes) -> None:
    """Erasure requests go to the control topic, signed: the worker accepts only requests signed with its key."""
    await produce(settings, [(settings.control_topic, b"control", payload,
                              signature_headers(settings.signing_key, payload))])

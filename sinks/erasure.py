"""Applying an erasure request (`cem forget`) to the resolver and the warehouse.

Nothing personal is written anywhere on the way: ClickHouse keeps the text of every ALTER (mutation) in
`system.mutations` and in a file next to the table's data, so the mutations select rows by event ids and
customer ids only (pseudonyms with nothing left to join to), and the identifier sets to remove are found by a
SELECT, which ClickHouse does not keep (query_log is off; docs/identity.md, "Erasure"). The audit row holds a
keyed hash of the value.

Order, for a retry after any failure (the caller rebuilds the resolver from the warehouse and calls again):
the rows that the graph's replay of the neighbours rewrites go first, then the mutations, identity sets last,
so a retry still finds whatever is not erased yet. Every step is idempotent. Last, the rows of identifiers still
shared that a mutation deleted with an anonymised event are written again (cut short, a restart finds them
shared from the identity sets and writes them with its next batch).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from cem.domain.effects import Effects
from cem.domain.erasure import APPLIED, FORGOTTEN, ErasurePlan, ErasureRequest, plan_erasure
from cem.domain.identity_replica import IdentityChanges, identity_changes
from cem.domain.model import Identifier
from cem.domain.resolver import Resolver
from cem.settings import Settings
from sinks.clickhouse import sql_string
from sinks.mutations import chunks, in_list, wait_for_mutations
from sinks.warehouse import Warehouse
from sinks.writer import TABLE_ORDER, effect_columns

log = logging.getLogger("cem.erasure")
_warned_development_key = False


@dataclass(frozen=True)
class ErasureOutcome:
    status: str  # applied, refused or not_found
    reason: str = ""
    customers_erased: int = 0
    identifiers_removed: int = 0
    events_anonymised: int = 0
    carriers: int = 0
    # What the erasure changed in the graph's answers, for the replicas; not part of the outcome's record (a request
    # delivered again is answered from its audit row, without it).
    identity: IdentityChanges | None = field(default=None, compare=False)


def erasure_key(settings: Settings) -> bytes:
    """The key of keyed hashes; a warning (once) when CEM_SECRET_KEY is empty and the public development key
    is used instead."""
    global _warned_development_key
    if not settings.secret_key and not _warned_development_key:
        _warned_development_key = True
        log.warning("CEM_SECRET_KEY is empty: keyed hashes use the public development key. Set the same secret "
                    "for every worker and for cem forget in production.")
    return settings.signing_key


def erase(resolver: Resolver, warehouse: Warehouse, request: ErasureRequest, key: bytes, now_ms: int, *,
          max_customers: int = 3, fcr_window_ms: int = 7 * 86_400_000, timeout: float = 300.0) -> ErasureOutcome:
    """Apply one request; blocking. Refused and not-found requests are recorded too. A request already
    recorded (the message delivered again after a crash) is answered from its audit row."""
    recorded = recorded_outcome(warehouse, request.request_id)
    if recorded is not None:
        return recorded
    plan = plan_erasure(resolver.graph, request, key, max_customers)
    if plan.status != APPLIED:
        outcome = ErasureOutcome(plan.status, plan.reason, carriers=plan.carriers)
        record(warehouse, request, outcome, now_ms)
        return outcome
    erasure = resolver.forget(plan.customer_ids, plan.erased, now_ms)
    tables = effect_columns(erasure.effects, now_ms, fcr_window_ms)
    for table in TABLE_ORDER:
        if table in tables:
            warehouse.insert(table, tables[table])
    db = warehouse.database
    keys = erasure.identity_keys
    event_ids = _column(warehouse, f"SELECT event_id FROM {db}.interaction_log WHERE identity_key IN", keys)
    first_events = _column(warehouse, f"SELECT DISTINCT first_event_id FROM {db}.identity_sets WHERE identity_key IN",
                           keys)
    marking_events, rewrite = _shared_rows(warehouse, set(plan.erased) | set(erasure.unshared), set(event_ids))
    # The overrides of her sets go first, found through her interaction rows before they are anonymised; the
    # mutation names event ids only (its text stays in system.mutations).
    for chunk in chunks(sorted(set(event_ids))):
        warehouse.command(f"ALTER TABLE {db}.overrides DELETE WHERE kind = 'customer' AND id IN (SELECT identity_key "
                          f"FROM {db}.interaction_log WHERE event_id IN ({in_list(chunk)}))")
    wait_for_mutations(warehouse, timeout, "erasure mutations")
    for statement in erasure_statements(db, erasure.customer_ids, event_ids, first_events, marking_events):
        warehouse.command(statement)
    wait_for_mutations(warehouse, timeout, "erasure mutations")
    marked = resolver.graph.shared.marked
    still = [marked[ident] for ident in sorted(rewrite) if ident in marked]
    if still:  # after the mutations, or they would delete these rows again
        warehouse.insert("shared_identifiers",
                         effect_columns(Effects(erasure.effects.version, shared=still), now_ms, fcr_window_ms)
                         ["shared_identifiers"])
    outcome = _applied(plan, len(plan.customer_ids), len(event_ids))
    record(warehouse, request, outcome, now_ms)
    return dataclasses.replace(outcome, identity=identity_changes(erasure.effects, erasure.removed_sets))


def _applied(plan: ErasurePlan, customers: int, events: int) -> ErasureOutcome:
    return ErasureOutcome(APPLIED, plan.reason, customers, len(plan.erased), events, plan.carriers)


def _column(warehouse: Warehouse, select_in: str, values: Sequence[str]) -> list[str]:
    found: list[str] = []
    for chunk in chunks(sorted(values)):
        found.extend(str(row[0]) for row in warehouse.query(f"{select_in} ({in_list(chunk)})"))
    return found


def _shared_rows(warehouse: Warehouse, no_longer: set[Identifier],
                 anonymised: set[str]) -> tuple[list[str], set[Identifier]]:
    """The rows of `shared_identifiers` an erasure deletes: those of the identifiers erased or no longer shared,
    and those whose revealing event is anonymised. Rows are deleted by event id (a mutation names no value), so
    another identifier revealed by the same event loses its row too. Returns the revealing events of the rows of
    identifiers no longer shared that are not anonymised, and the identifiers still shared whose row goes: they
    are written again. The table is small (a few rows per kiosk or placeholder), so it is read whole: a SELECT
    naming identifiers would put values in a query text."""
    rows = [((str(t), str(v)), str(e)) for t, v, e in
            warehouse.query(f"SELECT id_type, value, event_id FROM {warehouse.database}.shared_identifiers")]
    extra = {event for ident, event in rows if ident in no_longer} - anonymised
    deleted = anonymised | extra
    return sorted(extra), {ident for ident, event in rows if event in deleted} - no_longer


def erasure_statements(db: str, customer_ids: Sequence[str], event_ids: Sequence[str],
                       first_event_ids: Sequence[str], marking_event_ids: Sequence[str] = ()) -> list[str]:
    """The mutations of one erasure, in the order they must be sent. They name customer ids and event ids only
    (never an identity key: a hash of the person's identifiers). `marking_event_ids`: events, kept, that revealed
    an identifier no longer shared; its row goes. The overrides of the erased sets go with their customers: an
    erased set belongs to an erased customer."""
    statements: list[str] = []
    if customer_ids:
        ids = in_list(sorted(customer_ids))
        statements += [
            f"ALTER TABLE {db}.session_log UPDATE customer_id = '{FORGOTTEN}' WHERE customer_id IN ({ids})",
            f"ALTER TABLE {db}.journey_log UPDATE customer_id = '{FORGOTTEN}' WHERE customer_id IN ({ids})",
            f"ALTER TABLE {db}.identity_links DELETE WHERE customer_id IN ({ids})",
            f"ALTER TABLE {db}.customer_merges DELETE WHERE from_id IN ({ids}) OR into_id IN ({ids})",
            f"ALTER TABLE {db}.refused_merge_log DELETE WHERE customer_id IN ({ids}) OR other_customer_id IN ({ids})",
            f"ALTER TABLE {db}.id_aliases DELETE WHERE kind = 'customer' AND (alias_id IN ({ids}) "
            f"OR current_id IN ({ids}))",
            f"ALTER TABLE {db}.customer_log DELETE WHERE customer_id IN ({ids})",
            f"ALTER TABLE {db}.overrides DELETE WHERE kind = 'customer' AND current_id IN ({ids})",
            # Her alerts stay countable (a case that was open is history) but name nobody and quote nothing.
            f"ALTER TABLE {db}.alert_log UPDATE customer_id = '{FORGOTTEN}', detail = '', "
            f"evidence = emptyArrayString() WHERE customer_id IN ({ids})",
            f"ALTER TABLE {db}.alert_timers UPDATE customer_id = '{FORGOTTEN}' WHERE customer_id IN ({ids})",
        ]
    for chunk in chunks(sorted(set(event_ids))):
        events = in_list(chunk)
        statements += [
            f"ALTER TABLE {db}.identity_links DELETE WHERE event_id IN ({events})",
            f"ALTER TABLE {db}.refused_merge_log DELETE WHERE event_id IN ({events})",
            # A shared identifier revealed by an anonymised event (one erased with --force, say) goes too.
            f"ALTER TABLE {db}.shared_identifiers DELETE WHERE event_id IN ({events})",
            # Kept, so counts and hourly aggregates stay exact, but with nothing of the person. The text signals'
            # labels stay (like the sentiment); their cues quote her words, so they go with the text.
            f"ALTER TABLE {db}.interaction_log UPDATE text = '', text_cues = emptyArrayString(), "
            f"property_keys = emptyArrayString(), "
            f"property_values = emptyArrayString(), device = '', os = '', browser = '', identity_key = '', "
            f"origin_customer_id = '{FORGOTTEN}', origin_session_id = '' WHERE event_id IN ({events})",
        ]
    for chunk in chunks(sorted(set(marking_event_ids))):
        statements.append(f"ALTER TABLE {db}.shared_identifiers DELETE WHERE event_id IN ({in_list(chunk)})")
    for chunk in chunks(sorted(set(first_event_ids))):
        statements.append(f"ALTER TABLE {db}.identity_sets DELETE WHERE first_event_id IN ({in_list(chunk)})")
    if customer_ids:
        ids = in_list(sorted(customer_ids))
        statements.append(f"ALTER TABLE {db}.identity_sets DELETE WHERE customer_id IN ({ids})")
    return statements


def recorded_outcome(warehouse: Warehouse, request_id: str) -> ErasureOutcome | None:
    rows = warehouse.query(
        "SELECT status, reason, customers_erased, identifiers_removed, events_anonymised FROM "
        f"{warehouse.database}.erasure_audit WHERE request_id = {sql_string(request_id)} LIMIT 1")
    if not rows:
        return None
    status, reason, customers, identifiers, events = rows[0]
    return ErasureOutcome(str(status), str(reason), int(customers), int(identifiers), int(events))


def record(warehouse: Warehouse, request: ErasureRequest, outcome: ErasureOutcome, now_ms: int) -> None:
    """The audit row: the keyed hash of the value, never the value, and no customer id."""
    warehouse.insert("erasure_audit", {
        "request_id": [request.request_id],
        "id_type": [request.id_type],
        "value_key": [request.value_key],
        "status": [outcome.status],
        "reason": [outcome.reason],
        "forced": [int(request.force)],
        "customers_erased": [outcome.customers_erased],
        "identifiers_removed": [outcome.identifiers_removed],
        "events_anonymised": [outcome.events_anonymised],
        "requested_ms": [request.requested_ms],
        "completed_ms": [now_ms],
    })

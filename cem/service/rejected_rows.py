"""Rows the warehouse rejects: finding them by bisection, and the journeys and sessions to write again without them.

Only this slow path does per-row work; a batch the warehouse accepts is written in one insert per table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cem.domain.effects import Effects, ResolvedInteraction, next_version
from cem.domain.journeys import REMOVED, JourneyAlias
from cem.domain.resolver import Resolver
from sinks.errors import error_code, is_rejection, rejection_detail

Columns = dict[str, list[Any]]
# When this many rows were rejected one by one and not a single row was accepted, the table rejects everything
# (a schema change, a guard that is too strict): that is an outage to fix, not data to dead-letter.
REJECTED_ALL_AFTER = 8


class WarehouseRefusesEverything(Exception):
    """interaction_log rejects every row tried: retried with backoff like an outage, nothing is dead-lettered."""


def isolate_rejected_rows(insert: Callable[[Columns], None], columns: Columns,
                          error: Exception) -> list[tuple[int, str]]:
    """The warehouse rejected `columns` with `error`: bisect them, inserting every accepted half as it goes
    (`insert`), until the rejected rows are single. Returns their positions with the warehouse's reason, in order.
    Any failure that is not a rejection is raised: the caller retries the batch as after any failure."""
    total = len(next(iter(columns.values())))
    rejected: list[tuple[int, str]] = []
    accepted = 0
    pending: list[tuple[int, int, Exception]] = [(0, total, error)]
    while pending:
        low, high, exc = pending.pop()
        if high - low == 1:
            rejected.append((low, rejection_detail(exc)))
            if not accepted and len(rejected) >= REJECTED_ALL_AFTER:
                raise WarehouseRefusesEverything(
                    f"interaction_log refused each of {len(rejected)} rows tried alone and accepted none "
                    f"(code {error_code(exc)})")
            continue
        middle = (low + high) // 2
        for a, b in ((middle, high), (low, middle)):
            try:
                insert({name: values[a:b] for name, values in columns.items()})
                accepted += b - a
            except Exception as sub:
                if not is_rejection(sub):
                    raise
                pending.append((a, b, sub))
    return sorted(rejected)


def repair_effects(resolver: Resolver, rejected: list[ResolvedInteraction], after_version: int,
                   now_ms: int) -> Effects:
    """What to write again once `rejected` (events whose rows the warehouse refused) are known, from `resolver`
    rebuilt from the warehouse (which holds no row of them): the current state of the journeys and sessions they
    had touched, with a newer version than the batch's, so that neither the state nor any view counts them."""
    resolver.version = next_version(resolver.version, now_ms, after_version)
    repair = Effects(resolver.version)
    journey_ids = {r.journey_id for r in rejected if r.journey_id}
    if journey_ids:
        for journey in resolver.journeys.containing(journey_ids):
            repair.journeys[journey.journey_id] = journey
            journey_ids.difference_update((journey.journey_id, *journey.members))
        # Journeys only rejected events had: marked removed, so the journeys view no longer counts them.
        repair.journey_aliases = [JourneyAlias(journey_id, REMOVED, issue_ref) for journey_id, issue_ref in
                                  sorted({(r.journey_id, r.interaction.issue_ref or "") for r in rejected
                                          if r.journey_id in journey_ids})]
    session_ids = {r.session_id for r in rejected if r.session_id}
    if session_ids:
        for sessions in resolver.sessions.by_customer.values():
            for session in sessions:
                if session.session_id in session_ids or session_ids.intersection(session.members):
                    repair.sessions[session.session_id] = session
    return repair

"""Small builders shared by the unit tests. No I/O."""

from __future__ import annotations

import calendar
import random
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from cem.domain.model import Identifier, Interaction
from cem.domain.resolver import Resolver

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
# 2026-11-16T12:00:00Z, computed with integer arithmetic (no float timestamps).
NOW_MS = calendar.timegm((2026, 11, 16, 12, 0, 0)) * 1000


def event(
    event_id: str,
    occurred_ms: int,
    identifiers: Sequence[Identifier],
    channel: str = "web",
    type: str = "page_view",
    issue_ref: str | None = None,
    fingerprint: str | None = None,
) -> Interaction:
    """A validated Interaction built directly (bypassing the validator), for the stateful core."""
    return Interaction(
        event_id=event_id,
        channel=channel,
        type=type,
        occurred_ms=occurred_ms,
        identifiers=tuple(sorted(identifiers)),
        fingerprint=fingerprint if fingerprint is not None else f"fp-{event_id}",
        issue_ref=issue_ref,
    )


class UnionFind:
    """An independent union-find used as the oracle for identity grouping."""

    def __init__(self) -> None:
        self.parent: dict[object, object] = {}

    def find(self, x: object) -> object:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: object, b: object) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def components(events: Iterable[tuple[str, Iterable[Identifier]]]) -> set[frozenset[str]]:
    """Events sharing an identifier (transitively) form one group: the expected customers."""
    uf = UnionFind()
    ids: list[str] = []
    for event_id, identifiers in events:
        ids.append(event_id)
        uf.find(("event", event_id))
        for ident in identifiers:
            uf.union(("event", event_id), ("id", ident))
    groups: dict[object, set[str]] = {}
    for event_id in ids:
        groups.setdefault(uf.find(("event", event_id)), set()).add(event_id)
    return {frozenset(g) for g in groups.values()}


CONTACTS = (("web", "page_view", False), ("mobile", "app_open", False), ("chat", "chat_message", True),
            ("call_center", "call_ended", True), ("support", "ticket_resolved", True), ("email", "email_open", False))


def mixed_batch(size: int = 60, seed: int = 5, prefix: str = "e", first_person: int = 0,
                start_ms: int = NOW_MS - DAY_MS, shuffled: bool = False) -> list[Interaction]:
    """Events of 9 people (numbered from `first_person`) over a few hours, in event-time order unless `shuffled`:
    sessions (web, mobile), service journeys (an issue_ref per person), merges through shared phones, each event
    with a text."""
    rng = random.Random(seed)
    events = []
    for i in range(size):
        person = first_person + i % 9
        identifiers = [("email", f"p{person}@example.com")]
        if i % 4 == 0:
            identifiers.append(("phone", f"+1415555{first_person + (person + i // 9) % 9:04d}"))
        channel, kind, service = CONTACTS[rng.randrange(len(CONTACTS))]
        base = event(f"{prefix}{i:02d}", start_ms + i * 7 * MINUTE_MS, identifiers, channel=channel, type=kind,
                     issue_ref=f"CASE-{person}" if service else None)
        events.append(replace(base, text=f"message {i}"))
    if shuffled:
        rng.shuffle(events)
    return events


def resolver_state(resolver: Resolver | None) -> dict[str, Any]:
    """What a resolver knows, comparable between one that never stopped and one rebuilt from the warehouse.
    Not the session ids a session absorbed: a retry after a partial write attributes the batch's events to the
    customers merged in the first attempt directly, so the sessions absorbed then are not absorbed again (their
    alias rows stay in the warehouse, and a later restore reads them back)."""
    assert resolver is not None
    graph = resolver.graph
    return {
        "seen": {event_id: fingerprint for event_id, (fingerprint, _) in resolver.seen.items()},
        "customers": {identifier: graph.customer_of(identifier) for identifier in graph.owner},
        "sessions": sorted((s.session_id, s.customer_id, s.start_ms, s.end_ms, s.events, tuple(sorted(s.channels)))
                           for sessions in resolver.sessions.by_customer.values() for s in sessions),
        "journeys": journey_state(resolver),
    }


def journey_state(resolver: Resolver) -> list[tuple[Any, ...]]:
    return sorted((j.journey_id, j.customer_id, j.issue_ref, tuple(sorted(j.events.items())), tuple(sorted(j.members)))
                  for journeys in resolver.journeys.by_customer.values() for j in journeys.values())

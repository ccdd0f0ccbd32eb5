"""Small builders shared by the unit tests. No I/O."""

from __future__ import annotations

import calendar
import random
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from cem.domain.model import Identifier, Interaction, identity_key, stable_id
from cem.domain.resolver import Effects, RecentRow, Resolver, Snapshot

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


def cid(event_id: str) -> str:
    """The id of the customer an event started."""
    return stable_id("c", event_id)


def sid(event_id: str) -> str:
    """The id of the session an event started."""
    return stable_id("s", event_id)


def jid(issue_ref: str, event_id: str) -> str:
    """The id of the journey an event started for an issue_ref."""
    return stable_id("j", issue_ref, event_id)


def snapshot_of(batches: list[tuple[Effects, int]]) -> Snapshot:
    """The rows the warehouse would hold after these batches, as sinks.snapshot.load_snapshot reads them back."""
    snapshot = Snapshot()
    session_alias: dict[str, str] = {}
    journey_alias: dict[str, str] = {}
    for effects, now_ms in batches:
        for identifiers, (_customer, first) in effects.identity_sets.items():
            key = identity_key(identifiers)  # GROUP BY identity_key, the least (first_ms, first_event_id)
            known = snapshot.identity_sets.get(key)
            snapshot.identity_sets[key] = (identifiers, first if known is None else min(first, known[1]))
        for alias in effects.session_aliases:
            session_alias[alias.from_id] = alias.into_id  # argMax(current_id, version)
        for session in effects.sessions.values():  # argMax(customer_id, version) of rows naming a customer
            snapshot.session_owners[session.session_id] = session.customer_id
        for journey in effects.journeys.values():  # argMax(merged_into, version), argMax(customer_id, version)
            journey_alias.pop(journey.journey_id, None)
            snapshot.journey_owners[journey.journey_id] = journey.customer_id
        for journey_alias_row in effects.journey_aliases:
            journey_alias[journey_alias_row.from_id] = journey_alias_row.into_id
            snapshot.journey_owners.pop(journey_alias_row.from_id, None)
        snapshot.recent += [
            RecentRow(r.interaction.event_id, r.interaction.fingerprint, now_ms, effects.version,
                      r.interaction.occurred_ms, r.interaction.channel, r.interaction.type, r.customer_id,
                      r.session_id, r.interaction.issue_ref or "", identity_key(r.interaction.identifiers),
                      r.journey_id)
            for r in effects.interactions
        ]
    snapshot.session_aliases = list(session_alias.items())
    snapshot.journey_aliases = list(journey_alias.items())
    return snapshot


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
                start_ms: int = NOW_MS - DAY_MS, shuffled: bool = False,
                phone_rotation: int = 10) -> list[Interaction]:
    """Events of 9 people (numbered from `first_person`) over a few hours, in event-time order unless `shuffled`:
    sessions (web, mobile), service journeys (an issue_ref per person), merges through phones two people carry (and
    merges the e-mail limit refuses), each event with a text. The phone a person's events carry moves to the next
    person's every `phone_rotation` events: with the default no phone is seen with more e-mails than one customer
    may hold, so none is shared; with 9 one is (seen with 7 e-mails), and the customers it glued are split."""
    rng = random.Random(seed)
    events = []
    for i in range(size):
        person = first_person + i % 9
        identifiers = [("email", f"p{person}@example.com")]
        if i % 4 == 0:
            identifiers.append(("phone", f"+1415555{first_person + (person + i // phone_rotation) % 9:04d}"))
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

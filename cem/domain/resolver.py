"""The stateful core: deduplicate, stitch, sessionise and build journeys for a batch of interactions.

`Resolver.process` is synchronous and pure apart from its own state; the clock comes in as `now_ms`. Its
output, `Effects`, is every row the warehouse must hold afterwards. The state is a function of those rows,
so `Resolver.restore` rebuilds it from the warehouse after a restart or a move to another worker.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cem.domain.identity import Customer, EventKey, IdentityGraph, IdentitySet, Link, Merge, RefusedMerge
from cem.domain.journeys import (
    ServiceJourney,
    Session,
    SessionAlias,
    SessionBook,
    journey_id_for,
)
from cem.domain.model import DIGITAL_CHANNELS, Identifier, Interaction, identity_key
from cem.domain.shared import DEFAULT_WEAK_THRESHOLD, DEFAULT_WEAK_TYPES, SharedIdentifier

DAY_MS = 86_400_000


@dataclass(frozen=True)
class ResolverConfig:
    dedup_window_ms: int = 7 * DAY_MS
    session_gap_ms: int = 30 * 60_000
    fcr_window_ms: int = 7 * DAY_MS
    type_limits: Mapping[str, int] | None = None
    identifier_priority: Mapping[str, int] | None = None  # strongest first; None: the built-in types' order
    weak_identifier_types: frozenset[str] = DEFAULT_WEAK_TYPES
    shared_weak_threshold: int = DEFAULT_WEAK_THRESHOLD


@dataclass(frozen=True, slots=True)
class ResolvedInteraction:
    interaction: Interaction
    customer_id: str
    session_id: str
    journey_id: str


@dataclass
class Effects:
    """What one batch adds to the warehouse, plus counts for the metrics."""

    version: int
    interactions: list[ResolvedInteraction] = field(default_factory=list)
    customers: list[Customer] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    refused: list[RefusedMerge] = field(default_factory=list)
    customer_aliases: dict[str, str] = field(default_factory=dict)  # historical id -> current id
    # identifier set -> (its customer now, its earliest event): how interaction rows find their customer
    identity_sets: dict[IdentitySet, tuple[str, EventKey]] = field(default_factory=dict)
    recomputes: int = 0
    session_aliases: list[SessionAlias] = field(default_factory=list)
    sessions: dict[str, Session] = field(default_factory=dict)  # latest state of each touched session
    journeys: dict[str, ServiceJourney] = field(default_factory=dict)
    duplicates: int = 0
    conflicts: int = 0
    unlinked: list[tuple[Identifier, str]] = field(default_factory=list)
    shared: list[SharedIdentifier] = field(default_factory=list)  # identifiers newly marked shared


class Resolver:
    def __init__(self, config: ResolverConfig) -> None:
        self.config = config
        self.graph = IdentityGraph(config.type_limits, config.identifier_priority, config.weak_identifier_types,
                                   config.shared_weak_threshold)
        self.unrecorded_shared: list[SharedIdentifier] = []  # found shared on restore, written with the next batch
        self.sessions = SessionBook(config.session_gap_ms)
        self.journeys: dict[str, ServiceJourney] = {}  # by issue_ref
        self.journeys_of: dict[str, set[str]] = {}  # customer -> issue_refs of the journeys it owns
        # event_id -> (fingerprint, first seen ms); insertion order is first-seen order, so expiry pops the front
        self.seen: dict[str, tuple[str, int]] = {}
        self.version = 0

    def process(self, batch: Iterable[Interaction], now_ms: int) -> Effects:
        self.version = max(self.version + 1, now_ms * 1000)
        self._expire(now_ms)
        effects = Effects(self.version)
        effects.shared.extend(self.unrecorded_shared)
        self.unrecorded_shared = []
        for event in batch:
            known = self.seen.get(event.event_id)
            if known is not None:
                effects.duplicates += 1
                effects.conflicts += known[0] != event.fingerprint
                continue
            self.seen[event.event_id] = (event.fingerprint, now_ms)
            effects.interactions.append(self._resolve(event, effects))
        return effects

    def _resolve(self, event: Interaction, effects: Effects) -> ResolvedInteraction:
        attribution = self.graph.attribute(event.event_id, event.occurred_ms, event.identifiers)
        customer_id = attribution.customer_id
        effects.customers.extend(attribution.created)
        effects.links.extend(attribution.links)
        effects.merges.extend(attribution.merges)
        effects.refused.extend(attribution.refused)
        effects.unlinked.extend(attribution.unlinked)
        effects.shared.extend(attribution.shared)
        effects.recomputes += attribution.recomputed
        for identifiers, owner in attribution.set_customers.items():
            effects.identity_sets[identifiers] = (owner, self.graph.set_key[identifiers])
        for old_id, current_id in attribution.aliases.items():
            effects.customer_aliases[old_id] = current_id
            if old_id != current_id:
                self._move_customer(old_id, current_id, effects)

        session_id = ""
        if event.channel in DIGITAL_CHANNELS:
            session, aliases = self.sessions.add(customer_id, event.event_id, event.occurred_ms, event.channel)
            self._note_sessions(effects, [session], aliases)
            session_id = session.session_id

        journey_id = ""
        if event.issue_ref:
            journey_id = journey_id_for(event.issue_ref)
            journey = self._fold_journey(event.issue_ref, event, customer_id)
            effects.journeys[journey_id] = journey
        return ResolvedInteraction(event, customer_id, session_id, journey_id)

    def forget(self, identifier: Identifier) -> Erasure:
        """GDPR erasure of the customer owning `identifier`: its identifiers stop linking anyone, so later events
        carrying them start a new customer. Seen event ids stay, so replays of its events are not re-inserted."""
        customer_id = self.graph.customer_of(identifier)
        if customer_id is None:
            return Erasure("", [], [])
        identifiers, sets = self.graph.forget(customer_id)
        return Erasure(customer_id, identifiers, [identity_key(s) for s in sets])

    def _move_customer(self, from_id: str, into_id: str, effects: Effects) -> None:
        """Sessions and journeys of a merged customer continue under the survivor."""
        changed, aliases = self.sessions.move_customer(from_id, into_id)
        self._note_sessions(effects, changed, aliases)
        for issue_ref in self.journeys_of.pop(from_id, set()):
            journey = self.journeys[issue_ref]
            journey.customer_id = into_id
            self.journeys_of.setdefault(into_id, set()).add(issue_ref)
            effects.journeys[journey.journey_id] = journey

    def _fold_journey(self, issue_ref: str, event: Interaction | RecentRow, customer_id: str) -> ServiceJourney:
        journey = self.journeys.get(issue_ref)
        if journey is None:
            journey = ServiceJourney(journey_id_for(issue_ref), issue_ref, customer_id, event.occurred_ms)
            self.journeys[issue_ref] = journey
        owner = journey.customer_id
        journey.add(event.event_id, event.occurred_ms, event.channel, event.type, customer_id)
        if journey.customer_id != owner or len(journey.events) == 1:
            self.journeys_of.get(owner, set()).discard(issue_ref)
            self.journeys_of.setdefault(journey.customer_id, set()).add(issue_ref)
        return journey

    @staticmethod
    def _note_sessions(effects: Effects, changed: list[Session], aliases: list[SessionAlias]) -> None:
        for alias in aliases:
            effects.session_aliases.append(alias)  # the sink marks the absorbed session as merged
            effects.sessions.pop(alias.from_id, None)
        for session in changed:
            effects.sessions[session.session_id] = session

    def _expire(self, now_ms: int) -> None:
        horizon = now_ms - self.config.dedup_window_ms
        seen = self.seen
        while seen:
            oldest = next(iter(seen))
            if seen[oldest][1] >= horizon:
                break
            del seen[oldest]

    # ---- rebuilding from the warehouse -------------------------------------------------------------
    def restore(self, snapshot: Snapshot) -> None:
        """Rebuild state from warehouse rows (see sinks.clickhouse.load_snapshot)."""
        self.unrecorded_shared = self.graph.restore(snapshot.identity_sets.values(), snapshot.shared)
        session_alias = dict(snapshot.session_aliases)
        restored: dict[str, Session] = {}
        for row in snapshot.recent:
            self.seen[row.event_id] = (row.fingerprint, row.ingested_ms)
            identifiers = snapshot.identity_sets.get(row.identity_key, ((), (0, "")))[0]
            customer_id = self.graph.customer_of_set(identifiers) or row.customer_id
            if row.session_id:
                session_id = _follow(session_alias, row.session_id)
                self._restore_session(restored, session_id, customer_id, row.occurred_ms, row.channel)
            if row.issue_ref:
                self._fold_journey(row.issue_ref, row, customer_id)
            self.version = max(self.version, row.version)
        for alias_id, into_id in snapshot.session_aliases:
            final = restored.get(_follow(session_alias, into_id))
            if final is not None:
                final.members.append(alias_id)

    def _restore_session(
        self, restored: dict[str, Session], session_id: str, customer_id: str, occurred_ms: int, channel: str
    ) -> None:
        session = restored.get(session_id)
        if session is None:
            session = Session(session_id, customer_id, occurred_ms, occurred_ms, 0)
            restored[session_id] = session
            insort(self.sessions.by_customer.setdefault(customer_id, []), session)
        elif occurred_ms < session.start_ms:
            sessions = self.sessions.by_customer[customer_id]
            sessions.remove(session)
            session.start_ms = occurred_ms
            insort(sessions, session)
        session.end_ms = max(session.end_ms, occurred_ms)
        session.events += 1
        session.channels.add(channel)


@dataclass(frozen=True, slots=True)
class Erasure:
    customer_id: str
    identifiers: list[Identifier]
    identity_keys: list[str]


@dataclass(frozen=True, slots=True)
class RecentRow:
    event_id: str
    fingerprint: str
    ingested_ms: int
    version: int
    occurred_ms: int
    channel: str
    type: str
    customer_id: str
    session_id: str
    issue_ref: str
    identity_key: str


@dataclass
class Snapshot:
    identity_sets: dict[str, tuple[IdentitySet, EventKey]] = field(default_factory=dict)  # by identity_key
    shared: list[SharedIdentifier] = field(default_factory=list)
    session_aliases: list[tuple[str, str]] = field(default_factory=list)
    recent: list[RecentRow] = field(default_factory=list)  # in ingestion order


def _follow(alias: Mapping[str, str], key: str) -> str:
    while key in alias:
        key = alias[key]
    return key

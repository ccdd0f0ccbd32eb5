"""The stateful core: deduplicate, stitch, sessionise and build journeys for a batch of interactions.

`Resolver.process` is synchronous and pure apart from its own state; the clock comes in as `now_ms`. Its
output, `Effects`, is every row the warehouse must hold afterwards. The state is a function of those rows,
so `Resolver.restore` rebuilds it from the warehouse after a restart or a move to another worker.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cem.domain.customer_state import fold_event, move_customer_state
from cem.domain.effects import Effects, ResolvedInteraction, next_version
from cem.domain.identity import (
    RESTORE_TRIM_EVERY,
    EventKey,
    IdentityGraph,
    IdentitySet,
)
from cem.domain.identity_erasure import forget_in_graph
from cem.domain.identity_outcome import LOCAL, classify
from cem.domain.identity_records import Attribution
from cem.domain.journeys import (
    JourneyBook,
    ServiceJourney,
    Session,
    SessionBook,
    journey_id_for,
)
from cem.domain.model import Identifier, Interaction, identity_key
from cem.domain.seen_ids import SeenIds, Sighting
from cem.domain.shared import DEFAULT_WEAK_THRESHOLD, DEFAULT_WEAK_TYPES, SharedIdentifier
from cem.domain.state_maps import MapFactory, in_memory_maps

DAY_MS = 86_400_000
FORGOTTEN = "forgotten"  # the customer of anonymised interactions, sessions and journeys


@dataclass(frozen=True)
class ResolverConfig:
    dedup_window_ms: int = 7 * DAY_MS
    session_gap_ms: int = 30 * 60_000
    fcr_window_ms: int = 7 * DAY_MS
    type_limits: Mapping[str, int] | None = None
    identifier_priority: Mapping[str, int] | None = None  # strongest first; None: the built-in types' order
    weak_identifier_types: frozenset[str] = DEFAULT_WEAK_TYPES
    shared_weak_threshold: int = DEFAULT_WEAK_THRESHOLD


class Resolver:
    def __init__(self, config: ResolverConfig, maps: MapFactory = in_memory_maps,
                 timer: Callable[[], float] | None = None) -> None:
        self.config = config
        self.timer = timer  # times the identity graph's part of each event (None: not measured)
        self.graph = identity_graph(config, maps)
        self.unrecorded_shared: list[SharedIdentifier] = []  # found shared on restore, written with the next batch
        self.sessions = SessionBook(config.session_gap_ms, maps)
        self.journeys = JourneyBook(maps)
        self.dedup = SeenIds(config.dedup_window_ms, maps)
        self.seen = self.dedup.ids  # event_id -> (fingerprint, first seen ms)
        self.seen_expiry = self.dedup.expiry
        self.version = 0

    def process(self, batch: Sequence[Interaction], now_ms: int) -> Effects:
        self.version = next_version(self.version, now_ms)
        self.dedup.start_batch(now_ms)
        effects = Effects(self.version)
        effects.shared.extend(self.unrecorded_shared)
        self.unrecorded_shared = []
        # What the batch looks up first, read from a state on disk in one call per map rather than key by key.
        self.dedup.prefetch(event.event_id for event in batch)
        self.graph.prefetch([event.identifiers for event in batch])
        for event in batch:
            sighting = self.dedup.sight(event.event_id, event.fingerprint, now_ms)
            if sighting is not Sighting.NEW:
                effects.duplicates += 1
                if sighting is Sighting.CONFLICT:
                    effects.conflicting.append(event)
                continue
            self._resolve(event, effects)
        self.dedup.file(f"{self.version:020d}")
        return effects

    def _resolve(self, event: Interaction, effects: Effects) -> ResolvedInteraction:
        timer = self.timer
        started = 0.0 if timer is None else timer()
        attribution, outcome = attribute_into(self.graph, event.event_id, event.occurred_ms, event.identifiers,
                                              effects)
        if timer is not None:
            need = "local" if outcome == LOCAL else "owner"
            effects.graph_seconds[need] = effects.graph_seconds.get(need, 0.0) + timer() - started
        for old_id, current_id in attribution.aliases.items():
            if old_id != current_id:
                self._move_customer(old_id, current_id, effects)
        return fold_event(self.sessions, self.journeys, event, attribution.customer_id, effects)

    def forget(self, customer_ids: Iterable[str], erased: Iterable[Identifier], now_ms: int) -> Erasure:
        """Erase customers and identifiers (cem.domain.erasure plans which). Their sessions and service journeys
        continue under the customer `forgotten`, as a restart would rebuild them from the anonymised rows. Seen
        event ids stay, so replays of erased events are recognised and not inserted again. The erased events stop
        being evidence of shared identifiers: those no longer shared are returned (their records go)."""
        result = forget_in_graph(self.graph, customer_ids, erased)
        self.version = next_version(self.version, now_ms)
        effects = Effects(self.version)
        replay = result.replay
        effects.customers, effects.links = replay.created, replay.links
        effects.merges, effects.refused_merges = replay.merges, replay.refused
        effects.customer_aliases = dict(replay.aliases)
        effects.identity_sets = {s: (owner, self.graph.set_key[s]) for s, owner in replay.set_customers.items()}
        for old_id, current_id in replay.aliases.items():
            if old_id != current_id:
                self._move_customer(old_id, current_id, effects)
        gone = [*result.customer_ids, *result.vanished_ids]
        for customer_id in gone:
            self.sessions.by_customer.pop(customer_id, None)
            # No event reaches an erased customer again: its journeys leave the book (kept whole in the warehouse).
            for journey in self.journeys.by_customer.pop(customer_id, {}).values():
                journey.customer_id = FORGOTTEN
        return Erasure(gone, [identity_key(s) for s in result.removed_sets], effects,
                       [found.identifier for found in result.unshared], list(result.removed_sets))

    def _move_customer(self, from_id: str, into_id: str, effects: Effects) -> None:
        move_customer_state(self.sessions, self.journeys, from_id, into_id, effects)

    # ---- rebuilding from the warehouse -------------------------------------------------------------
    def restore(self, snapshot: Snapshot, trim: Callable[[], None] = lambda: None, *,
                as_written: bool = False) -> None:
        """Rebuild state from warehouse rows (see sinks.snapshot.load_snapshot). `trim` is called every so many
        rows: a disk-backed state writes back and shrinks its caches then. Sessions and journeys are filed under
        the survivor of the customer they were last written under; `as_written`, under that customer itself (a
        customer partition hands a merged customer's state on itself, cem.domain.customer_stage)."""
        place: Callable[[str], str] = (lambda customer_id: customer_id) if as_written else self.graph.find
        self.unrecorded_shared = self.graph.restore(snapshot.identity_sets.values(), snapshot.shared, trim)
        session_alias = dict(snapshot.session_aliases)
        sessions: dict[str, Session] = {}
        journey_alias = dict(snapshot.journey_aliases)
        journeys: dict[str, ServiceJourney] = {}
        for count, row in enumerate(snapshot.recent, 1):
            if count % RESTORE_TRIM_EVERY == 0:
                self.dedup.file(f"restored-{count:012d}")
                trim()
            self.dedup.remember(row.event_id, row.fingerprint, row.ingested_ms)
            customer_id = row.customer_id
            if not as_written:
                identifiers = snapshot.identity_sets.get(row.identity_key, ((), (0, "")))[0]
                customer_id = self.graph.customer_of_set(identifiers) or row.customer_id
            if row.session_id:
                session_id = follow_aliases(session_alias, row.session_id)
                owner = snapshot.session_owners.get(session_id)
                _restore_session_event(sessions, session_id, place(owner) if owner else customer_id, row, as_written)
            if row.issue_ref:
                _restore_journey_event(journeys, journey_alias, snapshot.journey_owners, row, customer_id, place)
            self.version = max(self.version, row.version)
        if snapshot.cut is not None:  # the batch done again goes above the rows it supersedes
            self.version = max(self.version, snapshot.cut[1])
        self.dedup.file("restored-end")
        self._file_restored_sessions(sessions, session_alias)
        self._file_restored_journeys(journeys, journey_alias)

    def _file_restored_sessions(self, sessions: dict[str, Session], alias: Mapping[str, str]) -> None:
        for alias_id, into_id in alias.items():
            final = sessions.get(follow_aliases(alias, into_id))
            if final is not None:
                final.members.append(alias_id)
        for session in sessions.values():
            if session.customer_id != FORGOTTEN:  # as forget() leaves them: out of the book
                insort(self.sessions.by_customer.setdefault(session.customer_id, []), session)

    def _file_restored_journeys(self, journeys: dict[str, ServiceJourney], alias: Mapping[str, str]) -> None:
        for alias_id, into_id in alias.items():
            final = journeys.get(follow_aliases(alias, into_id))
            if final is not None:
                final.members.append(alias_id)
        for journey in journeys.values():
            if journey.customer_id != FORGOTTEN:  # as forget() leaves them: out of the book
                self.journeys.place(journey)

def identity_graph(config: ResolverConfig, maps: MapFactory = in_memory_maps) -> IdentityGraph:
    return IdentityGraph(config.type_limits, config.identifier_priority, config.weak_identifier_types,
                         config.shared_weak_threshold, maps)


def attribute_into(graph: IdentityGraph, event_id: str, occurred_ms: int, identifiers: IdentitySet,
                   effects: Effects) -> tuple[Attribution, str]:
    """The identity graph's part of an event (what the graph's owner does): its customer, and the outcome. What
    it changed is added to `effects`."""
    known_key = graph.set_key.get(identifiers)
    if known_key is None:
        effects.first_sets.add(identifiers)
    attribution = graph.attribute(event_id, occurred_ms, identifiers)
    outcome = classify(known_key, (occurred_ms, event_id), attribution)
    effects.identity_outcomes[outcome] = effects.identity_outcomes.get(outcome, 0) + 1
    effects.customers.extend(attribution.created)
    effects.links.extend(attribution.links)
    effects.merges.extend(attribution.merges)
    effects.refused_merges.extend(attribution.refused)
    effects.unlinked.extend(attribution.unlinked)
    effects.shared.extend(attribution.shared)
    effects.recomputes += attribution.recomputed
    for moved, owner in attribution.set_customers.items():
        effects.identity_sets[moved] = (owner, graph.set_key[moved])
    effects.customer_aliases.update(attribution.aliases)
    return attribution, outcome


@dataclass(frozen=True, slots=True)
class Erasure:
    customer_ids: list[str]  # every customer id erased, merged ones included
    identity_keys: list[str]  # of the identifier sets removed: their interaction rows are anonymised
    effects: Effects  # what the graph's replay of the erased customers' neighbours writes
    unshared: list[Identifier] = field(default_factory=list)  # no longer shared: their records are deleted
    removed_sets: list[IdentitySet] = field(default_factory=list)  # the sets behind `identity_keys`


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
    journey_id: str = ""


@dataclass
class Snapshot:
    identity_sets: dict[str, tuple[IdentitySet, EventKey]] = field(default_factory=dict)  # by identity_key
    shared: list[SharedIdentifier] = field(default_factory=list)
    session_aliases: list[tuple[str, str]] = field(default_factory=list)
    journey_aliases: list[tuple[str, str]] = field(default_factory=list)  # absorbed journey id -> current id
    journey_owners: dict[str, str] = field(default_factory=dict)  # live journey id -> its customer as written
    session_owners: dict[str, str] = field(default_factory=dict)  # session id -> its customer as last written
    recent: list[RecentRow] = field(default_factory=list)  # in ingestion order
    # Read without the rows of batches cut short: `cut`, the versions (after, until] they hold when found now
    # (None: none); the next batch, which does their work again, is versioned above them.
    cut: tuple[int, int] | None = None
    # Identity keys whose latest customer override a batch cut short wrote: overridden again whenever written.
    stale_overrides: frozenset[str] = frozenset()


def stale_override_owners(snapshot: Snapshot, graph: IdentityGraph) -> dict[str, str]:
    """Each stale override's identity set with its customer as restored, without the batch cut short; "" for a
    set only that batch made (the batch done again makes it again, and overrides it then)."""
    owners = {}
    for key in snapshot.stale_overrides:
        identifiers = snapshot.identity_sets.get(key, ((), (0, "")))[0]
        owners[key] = (graph.customer_of_set(identifiers) if identifiers else None) or ""
    return owners


def _restore_journey_event(journeys: dict[str, ServiceJourney], alias: Mapping[str, str], owners: Mapping[str, str],
                           row: RecentRow, customer_id: str, place: Callable[[str], str]) -> None:
    """Rows are grouped by the journey their journey_id resolves to now; the owner is the journey's customer as
    last written (so a journey glued by a customer that a recompute later split stays whole, as live)."""
    journey_id = journey_id_for(row.issue_ref, row.event_id)
    if row.journey_id:
        journey_id = follow_aliases(alias, row.journey_id)
    journey = journeys.get(journey_id)
    if journey is None:
        journey = ServiceJourney(journey_id, row.issue_ref, place(owners.get(journey_id) or customer_id))
        journeys[journey_id] = journey
    journey.add(row.event_id, row.occurred_ms, row.channel, row.type)


def _restore_session_event(sessions: dict[str, Session], session_id: str, customer_id: str, row: RecentRow,
                           by_line: bool) -> None:
    """A session belongs to the customer it was last written with (as live: a recompute that later split that
    customer leaves the session where it was), so every row of it lands in the same place. `by_line`: counted as
    a customer partition counts (Session.lines), by the session and customer the row was written with."""
    session = sessions.get(session_id)
    if session is None:
        session = sessions[session_id] = Session(session_id, customer_id, row.occurred_ms, row.occurred_ms, 0,
                                                 lines={} if by_line else None)
    session.start_ms = min(session.start_ms, row.occurred_ms)
    session.end_ms = max(session.end_ms, row.occurred_ms)
    session.count(row.session_id, row.customer_id)
    session.channels.add(row.channel)


class AliasCycle(Exception):
    """The aliases read back from the warehouse lead in a circle: restore fails (and is retried) instead of
    looping forever."""


def follow_aliases(alias: Mapping[str, str], key: str) -> str:
    """The id `key` resolves to now. An id aliased to itself is current (a retried batch can write such a row).
    Cycles are found by the ids walked, not by the mapping's size (a disk-backed mapping counts by scanning)."""
    start, walked = key, set()
    while (target := alias.get(key)) is not None and target != key:
        if key in walked:
            raise AliasCycle(f"the aliases from {start} lead in a circle")
        walked.add(key)
        key = target
    return key

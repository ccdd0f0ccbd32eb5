"""A model, in one process and without Kafka, of the split designed in docs/scaling.md: fronts that deduplicate
by event id and resolve through their own identity replica, one owner of the identity graph, and customer
partitions that hold sessions and service journeys, hand a merged customer's state to the survivor's partition
and forward what still arrives for it. A seeded scheduler interleaves every step at random, with replicas and
partitions behind the owner by random amounts. The product does not run this yet; the tests compare its result
with the single resolver's."""

from __future__ import annotations

import random
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cem.domain.identity_replica import IdentityChanges, IdentityReplica, identity_changes
from cem.domain.journeys import JourneyBook, ServiceJourney, Session, SessionBook
from cem.domain.model import DIGITAL_CHANNELS, Interaction
from cem.domain.resolver import Resolver, ResolverConfig


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


@dataclass
class Front:
    replica: IdentityReplica = field(default_factory=IdentityReplica)
    applied: int = 0  # versions applied to the replica
    inbox: deque[Interaction] = field(default_factory=deque)
    seen: set[str] = field(default_factory=set)  # event ids forwarded or waiting
    waiting: list[Interaction] = field(default_factory=list)  # sent to the owner, held until the replica answers


@dataclass
class CustomerPartition:
    sessions: SessionBook
    journeys: JourneyBook = field(default_factory=JourneyBook)
    applied: int = 0  # versions applied
    inbox: deque[tuple[str, Any]] = field(default_factory=deque)  # ("event", (event, customer)), ("handoff", ...)
    handed: dict[str, str] = field(default_factory=dict)  # merged customer -> where its state went


class Deployment:
    def __init__(self, config: ResolverConfig, fronts: int, partitions: int, rng: random.Random) -> None:
        self.rng = rng
        self.owner = Resolver(config)
        self.owner_inbox: deque[Interaction] = deque()
        self.versions: list[IdentityChanges] = []
        self.fronts = [Front() for _ in range(fronts)]
        self.parts = [CustomerPartition(SessionBook(config.session_gap_ms)) for _ in range(partitions)]
        self.duplicates = 0
        self.folded: dict[str, str] = {}  # event id -> the customer its partition folded it under
        self.clock = 1_760_000_000_000

    # ---- the stages ------------------------------------------------------------------------------------
    def deliver(self, event: Interaction) -> None:
        self.fronts[partition_of(event.event_id, len(self.fronts))].inbox.append(event)

    def catch_up(self, front: Front) -> None:
        """A replica applies a random number of the versions it has not seen."""
        target = self.rng.randint(front.applied, len(self.versions))
        front.replica.apply_all(self.versions[front.applied:target])
        front.applied = target

    def front_step(self, front: Front) -> None:
        self.catch_up(front)
        still = []
        for event in front.waiting:
            if not self.forward(front, event):
                still.append(event)
        front.waiting = still
        if front.inbox:
            event = front.inbox.popleft()
            if event.event_id in front.seen:
                self.duplicates += 1
                return
            front.seen.add(event.event_id)
            if not self.forward(front, event):
                front.waiting.append(event)
                self.owner_inbox.append(event)

    def forward(self, front: Front, event: Interaction) -> bool:
        customer = front.replica.resolve_locally(event.identifiers, (event.occurred_ms, event.event_id))
        if customer is None:
            return False
        self.parts[partition_of(customer, len(self.parts))].inbox.append(("event", (event, customer)))
        return True

    def owner_step(self) -> None:
        batch = [self.owner_inbox.popleft() for _ in range(min(len(self.owner_inbox), self.rng.randint(1, 3)))]
        if batch:
            self.clock += 1_000
            self.versions.append(identity_changes(self.owner.process(batch, self.clock)))

    def partition_step(self, index: int) -> None:
        part = self.parts[index]
        if part.applied < len(self.versions) and (not part.inbox or self.rng.random() < 0.5):
            self.apply_version(index, self.versions[part.applied])
            part.applied += 1
        elif part.inbox:
            kind, payload = part.inbox.popleft()
            if kind == "event":
                self.fold(index, *payload)
            else:
                self.receive(index, *payload)

    def fold(self, index: int, event: Interaction, customer: str) -> None:
        part = self.parts[index]
        if customer in part.handed:  # merged away: its state, and this event, belong to the survivor
            target = part.handed[customer]
            self.parts[partition_of(target, len(self.parts))].inbox.append(("event", (event, target)))
            return
        self.folded[event.event_id] = customer
        if event.channel in DIGITAL_CHANNELS:
            part.sessions.add(customer, event.event_id, event.occurred_ms, event.channel)
        if event.issue_ref:
            part.journeys.add(customer, event.issue_ref, event.event_id, event.occurred_ms, event.channel,
                              event.type)

    def apply_version(self, index: int, changes: IdentityChanges) -> None:
        part = self.parts[index]
        for old, current in changes.aliases.items():
            if partition_of(old, len(self.parts)) != index:
                continue
            if old == current:
                part.handed.pop(old, None)  # live again: what it handed over stays with the survivor
                continue
            part.handed[old] = current
            sessions = part.sessions.by_customer.pop(old, [])
            journeys = part.journeys.by_customer.pop(old, {})
            if sessions or journeys:
                self.parts[partition_of(current, len(self.parts))].inbox.append(
                    ("handoff", (old, current, sessions, journeys)))

    def receive(self, index: int, old: str, into: str, sessions: list[Session],
                journeys: dict[str, ServiceJourney]) -> None:
        part = self.parts[index]
        if into in part.handed:  # the survivor merged on since: pass it on
            target = part.handed[into]
            self.parts[partition_of(target, len(self.parts))].inbox.append(
                ("handoff", (old, target, sessions, journeys)))
            return
        part.sessions.by_customer.setdefault(old, []).extend(sessions)
        part.sessions.move_customer(old, into)
        for journey in journeys.values():
            journey.customer_id = old
            part.journeys.place(journey)
        part.journeys.move_customer(old, into)

    # ---- the scheduler ---------------------------------------------------------------------------------
    def busy(self) -> bool:
        return bool(self.owner_inbox or any(f.inbox or f.waiting for f in self.fronts)
                    or any(p.inbox or p.applied < len(self.versions) for p in self.parts))

    def run(self, events: list[Interaction]) -> None:
        arrivals = deque(events)
        while arrivals or self.busy():
            roll = self.rng.random()
            if arrivals and roll < 0.3:
                self.deliver(arrivals.popleft())
            elif roll < 0.5:
                self.front_step(self.rng.choice(self.fronts))
            elif roll < 0.65:
                self.owner_step()
            else:
                self.partition_step(self.rng.randrange(len(self.parts)))
        for front in self.fronts:  # every front has forwarded everything: nothing waits
            assert not front.waiting

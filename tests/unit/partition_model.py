"""The split designed in docs/scaling.md, run in one process without Kafka: the product's fronts
(cem.domain.front), graph owner (cem.domain.identity_owner) and customer partitions (cem.domain.customer_stage),
with queues for the topics between them. A seeded scheduler interleaves every step at random, with replicas and
partitions behind the owner by random amounts. The tests compare its result with the single resolver's."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cem.domain.customer_stage import CustomerPartition, HandOff, PartitionStep, customer_partition
from cem.domain.front import Front, Routed
from cem.domain.identity_owner import IdentityOwner, IdentityRequest
from cem.domain.identity_replica import IdentityChanges, IdentityReplica, identity_changes
from cem.domain.model import Interaction
from cem.domain.resolver import ResolverConfig
from cem.domain.seen_ids import SEEN_BUCKET_MS


def partition_of(key: str, partitions: int) -> int:
    return customer_partition(key, partitions)


@dataclass
class FrontSlot:
    front: Front
    applied: int = 0  # versions applied to its replica
    inbox: deque[Interaction] = field(default_factory=deque)


@dataclass
class PartitionSlot:
    part: CustomerPartition
    inbox: deque[Routed | HandOff] = field(default_factory=deque)


class Deployment:
    def __init__(self, config: ResolverConfig, fronts: int, partitions: int, rng: random.Random) -> None:
        self.rng = rng
        self.owner = IdentityOwner(config)
        self.owner_inbox: deque[IdentityRequest] = deque()
        self.versions: list[IdentityChanges] = []
        self.fronts = [FrontSlot(Front(IdentityReplica(), config.dedup_window_ms)) for _ in range(fronts)]
        self.slots = [PartitionSlot(CustomerPartition(i, partitions, config.session_gap_ms))
                      for i in range(partitions)]
        self.duplicates = 0
        self.folded: dict[str, str] = {}  # event id -> the customer its partition folded it under
        self.clock = 1_760_000_000_000

    @property
    def parts(self) -> list[CustomerPartition]:
        return [slot.part for slot in self.slots]

    # ---- the stages ------------------------------------------------------------------------------------
    def deliver(self, event: Interaction) -> None:
        self.fronts[partition_of(event.event_id, len(self.fronts))].inbox.append(event)

    def front_step(self, slot: FrontSlot) -> None:
        target = self.rng.randint(slot.applied, len(self.versions))  # its replica catches up by a random amount
        slot.front.replica.apply_all(self.versions[slot.applied:target])
        slot.applied = target
        self.route(slot.front.release())
        batch = [slot.inbox.popleft() for _ in range(min(len(slot.inbox), self.rng.randint(0, 3)))]
        if batch:
            self.clock += SEEN_BUCKET_MS // 4
            step = slot.front.admit(batch, self.clock)
            self.duplicates += step.duplicates
            self.route(step.routed)
            self.owner_inbox.extend(step.requests)

    def route(self, routed: list[Routed]) -> None:
        for item in routed:
            self.slots[partition_of(item.customer_id, len(self.slots))].inbox.append(item)

    def owner_step(self) -> None:
        batch = [self.owner_inbox.popleft() for _ in range(min(len(self.owner_inbox), self.rng.randint(1, 3)))]
        if batch:
            self.clock += 1_000
            self.versions.append(identity_changes(self.owner.process(batch, self.clock)))

    def partition_step(self, slot: PartitionSlot) -> None:
        part, step = slot.part, PartitionStep()
        if part.applied < self.newest() and (not slot.inbox or self.rng.random() < 0.5):
            effects = part.start_batch(self.clock)
            part.apply(next(v for v in self.versions if v.version > part.applied), effects, step)
        elif slot.inbox:
            item = slot.inbox.popleft()
            effects = part.start_batch(self.clock, item.version if isinstance(item, HandOff) else 0)
            if isinstance(item, HandOff):
                part.receive(item, effects, step)
            else:
                part.fold(item, effects, step)
        else:
            return
        for resolved in effects.interactions:
            self.folded[resolved.interaction.event_id] = resolved.customer_id
        for target, routed in step.forwarded:
            self.slots[target].inbox.append(routed)
        for target, handoff in step.handoffs:
            self.slots[target].inbox.append(handoff)

    def newest(self) -> int:
        return self.versions[-1].version if self.versions else 0

    # ---- the scheduler ---------------------------------------------------------------------------------
    def busy(self) -> bool:
        return bool(self.owner_inbox or any(s.inbox or s.front.held for s in self.fronts)
                    or any(s.inbox or s.part.applied < self.newest() for s in self.slots))

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
                self.partition_step(self.rng.choice(self.slots))
        for slot in self.fronts:  # every front has routed everything: nothing is held
            assert not slot.front.held


def state_of(parts: list[CustomerPartition], attribute: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        for customer, held in getattr(part, attribute).by_customer.items():
            assert customer not in out, "a customer's state lives on one partition"
            out[customer] = held
    return out

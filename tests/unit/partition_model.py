"""The split designed in docs/scaling.md, run in one process without Kafka: the product's fronts
(cem.domain.front), graph owner (cem.domain.identity_owner) and customer partitions (cem.domain.customer_stage),
with queues for the topics between them; every message crosses its wire format (schemas/split_wire.py). A seeded
scheduler interleaves every step at random, with replicas and partitions behind the owner by random amounts, and
may restart a front: it loses what it held in memory, its replica and the events it had decided but not yet sent,
keeps its dedup window and decisions (its durable state), and reads again from its committed offset. It may also
restart a customer partition, before a step or after the step's rows were written and before its sends reached
the broker: the partition is restored from the rows the owner and the partitions wrote (to the warehouse fake,
through the product's SplitWarehouse) and gets the message it was processing again. And it may kill the graph's
owner between two inserts of its batch (the batch's mark never written, nothing published): the owner is restored
from the warehouse and reads the batch's requests again; or a customer partition the same way: restored, it reads
its message again. The tests compare its result with the single resolver's."""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from cem.domain.customer_stage import CustomerPartition, HandOff, PartitionStep, customer_partition
from cem.domain.front import Front, Routed
from cem.domain.identity_owner import IdentityOwner, IdentityRequest
from cem.domain.identity_replica import IdentityChanges, IdentityReplica, identity_changes
from cem.domain.model import Interaction
from cem.domain.resolver import ResolverConfig
from cem.domain.seen_ids import SEEN_BUCKET_MS
from cem.service.resolver_service import WRITE_ORDER
from cem.service.split_service import MARK, SplitWarehouse, owner_from, partition_from
from cem.settings import Settings
from schemas.split_wire import (
    decode_handoff,
    decode_requests,
    decode_routed,
    encode_handoff,
    encode_requests,
    encode_routed,
)
from sinks.fake import FakeWarehouseServer
from sinks.writer import PARTITION_MARK, PARTITION_WRITE_ORDER, effect_columns


@dataclass
class FrontSlot:
    front: Front
    durable: dict[str, Any]  # the front's state maps: they survive a restart
    applied: int = 0  # versions applied to its replica
    log: list[Interaction] = field(default_factory=list)  # its partition of cem.resolve
    read: int = 0  # the next offset to read
    committed: int = 0
    outbox: list[tuple[int, Routed]] = field(default_factory=list)  # decided, not yet sent: lost at a restart


@dataclass
class PartitionSlot:
    part: CustomerPartition
    inbox: deque[Routed | HandOff] = field(default_factory=deque)


class Deployment:
    def __init__(self, config: ResolverConfig, fronts: int, partitions: int, rng: random.Random,
                 restart_rate: float = 0.0, partition_restart_rate: float = 0.0, owner_cut_rate: float = 0.0,
                 partition_cut_rate: float = 0.0) -> None:
        self.rng, self.config, self.restart_rate = rng, config, restart_rate
        self.partition_restart_rate, self.owner_cut_rate = partition_restart_rate, owner_cut_rate
        self.partition_cut_rate = partition_cut_rate
        self.server = FakeWarehouseServer() if partition_restart_rate or owner_cut_rate or partition_cut_rate \
            else None
        self.partition_restarts = self.owner_cuts = self.partition_cuts = 0
        self.owner = IdentityOwner(config)
        self.owner_sink = self.warehouse("owner") if self.server is not None else None
        self.owner_inbox: deque[IdentityRequest] = deque()
        self.versions: list[IdentityChanges] = []
        self.fronts = [self.started({}) for _ in range(fronts)]
        self.slots = [PartitionSlot(CustomerPartition(i, partitions, config.session_gap_ms))
                      for i in range(partitions)]
        self.duplicates = self.replays = self.restarts = 0
        self.folded: dict[str, str] = {}  # event id -> the customer its partition folded it under
        self.fold_counts: Counter[str] = Counter()
        self.clock = 1_760_000_000_000

    @property
    def parts(self) -> list[CustomerPartition]:
        return [slot.part for slot in self.slots]

    # ---- the stages ------------------------------------------------------------------------------------
    def started(self, durable: dict[str, Any]) -> FrontSlot:
        front = Front(IdentityReplica(), self.config.dedup_window_ms, lambda name: durable.setdefault(name, {}))
        return FrontSlot(front, durable)

    def deliver(self, event: Interaction) -> None:
        self.fronts[customer_partition(event.event_id, len(self.fronts))].log.append(event)

    def front_step(self, index: int) -> None:
        slot = self.fronts[index]
        if self.rng.random() < self.restart_rate:
            self.restarts += 1
            restarted = self.fronts[index] = self.started(slot.durable)
            restarted.log, restarted.read = slot.log, slot.committed
            restarted.committed = slot.committed
            return
        sent = self.rng.randint(0, len(slot.outbox))  # Kafka acknowledged a random part of what was sent
        self.route([routed for _, routed in slot.outbox[:sent]])
        del slot.outbox[:sent]
        target = self.rng.randint(slot.applied, len(self.versions))  # its replica catches up by a random amount
        slot.front.replica.apply_all(self.versions[slot.applied:target])
        slot.applied = target
        self.send(slot, slot.front.release())
        end = min(len(slot.log), slot.read + self.rng.randint(0, 3))
        if end > slot.read:
            self.clock += SEEN_BUCKET_MS // 4
            step = slot.front.admit([(offset, slot.log[offset]) for offset in range(slot.read, end)], self.clock)
            slot.read = end
            self.duplicates += step.duplicates
            self.send(slot, step.routed)
            self.owner_inbox.extend(decode_requests(encode_requests(step.requests)))
        unsent = min((offset for offset, _ in slot.outbox), default=slot.read)
        slot.committed = slot.front.committable(min(slot.read, unsent))

    def send(self, slot: FrontSlot, routed: list[Routed]) -> None:
        slot.outbox.extend((slot.front.decisions[item.event.event_id][1], item) for item in routed)

    def route(self, routed: list[Routed]) -> None:
        for item in decode_routed(encode_routed(routed)):  # every message crosses the wire, as over Kafka
            self.slots[customer_partition(item.customer_id, len(self.slots))].inbox.append(item)

    def owner_step(self) -> None:
        batch = [self.owner_inbox.popleft() for _ in range(min(len(self.owner_inbox), self.rng.randint(1, 3)))]
        if batch:
            self.clock += 1_000
            effects = self.owner.process(batch, self.clock)
            if self.owner_cut_rate and self.rng.random() < self.owner_cut_rate:
                self.cut_short(effects)
                self.owner_inbox.extendleft(reversed(batch))  # never committed: read again
                self.owner_sink = self.warehouse("owner")
                self.owner = owner_from(self.owner_sink.restored())
                return
            if self.owner_sink is not None:
                self.owner_sink.write(effects)
            self.versions.append(identity_changes(effects))

    def cut_short(self, effects: Any) -> None:
        """The owner killed between two inserts of its batch: a random run of its tables landed, never its mark.
        (The restarted owner's catch-up finds nothing to publish: the cut rows are left out, and the model's owner
        published every version it wrote in full.)"""
        assert self.server is not None
        self.owner_cuts += 1
        self.land_some(effects, WRITE_ORDER)

    def partition_cut_short(self, effects: Any) -> None:
        """A customer partition killed between two inserts of its batch: a random run of its tables landed, in
        the order the product writes them, never its mark; nothing it would send reached the broker."""
        self.partition_cuts += 1
        if "interaction_log" in self.land_some(effects, PARTITION_WRITE_ORDER):
            self.counted(effects)

    def land_some(self, effects: Any, write_order: tuple[str, ...]) -> list[str]:
        """A random run of a batch's tables lands, in its write order, never its mark (written last). Returns the
        tables landed."""
        assert self.server is not None
        tables = effect_columns(effects, self.clock, self.config.fcr_window_ms)
        order = [table for table in write_order if table in tables and table not in (MARK, PARTITION_MARK)]
        landed = order[:self.rng.randint(0, len(order))]
        warehouse = self.server.connect()
        for table in landed:
            warehouse.insert(table, tables[table])
        return landed

    def partition_step(self, slot: PartitionSlot) -> None:
        if self.rng.random() < self.partition_restart_rate:
            self.restart(slot)
            return
        part, step, item, unread = slot.part, PartitionStep(), None, None
        if part.applied < self.newest() and (not slot.inbox or self.rng.random() < 0.5):
            effects = part.start_batch(self.clock)
            part.apply(next(v for v in self.versions if v.version > part.applied), effects, step)
        elif slot.inbox:
            item = slot.inbox.popleft()
            # Read again, a message is decoded afresh from what the broker holds: receiving a hand-off folds its
            # sessions and journeys into the partition's own, so the object taken here is not that message any more.
            unread = decode_handoff(encode_handoff(item)) if isinstance(item, HandOff) else item
            effects = part.start_batch(self.clock, item.version if isinstance(item, HandOff) else 0)
            if isinstance(item, HandOff):
                part.receive(item, effects, step)
            else:
                part.fold(item, effects, step)
        else:
            return
        self.replays += step.replays
        if self.partition_cut_rate and self.rng.random() < self.partition_cut_rate:
            self.partition_cut_short(effects)
            if item is not None:
                slot.inbox.appendleft(unread)  # never committed: read again
            self.restart(slot)
            return
        self.written(effects)
        if self.rng.random() < self.partition_restart_rate:  # died before its sends reached the broker
            if item is not None:
                slot.inbox.appendleft(unread)  # never committed: read again
            self.restart(slot)
            return
        self.send_on(step)

    def restart(self, slot: PartitionSlot) -> None:
        """The partition rebuilt from the warehouse; its first step hands on what it restored of merged customers."""
        self.partition_restarts += 1
        slot.part = partition_from(self.warehouse("customers").restored(), slot.part.index, len(self.slots))
        effects, step = slot.part.start_batch(self.clock), PartitionStep()
        slot.part.hand_on_restored(effects, step)
        self.written(effects)
        self.send_on(step)

    def warehouse(self, stage: str) -> SplitWarehouse:
        assert self.server is not None
        return SplitWarehouse(Settings(sink_retry_max_seconds=0.001, state_store="memory"), stage,
                              clock=lambda: self.clock / 1000, open_warehouse=self.server.connect)

    def write(self, stage: str, effects: Any) -> None:
        if self.server is not None:
            self.warehouse(stage).write(effects)

    def written(self, effects: Any) -> None:
        self.write("customers", effects)
        self.counted(effects)

    def counted(self, effects: Any) -> None:
        """Its interaction rows landed: the events are folded."""
        for resolved in effects.interactions:
            self.folded[resolved.interaction.event_id] = resolved.customer_id
            self.fold_counts[resolved.interaction.event_id] += 1

    def send_on(self, step: PartitionStep) -> None:
        for target, routed in step.forwarded:
            self.slots[target].inbox.extend(decode_routed(encode_routed([routed])))
        for target, handoff in step.handoffs:
            self.slots[target].inbox.append(decode_handoff(encode_handoff(handoff)))

    def newest(self) -> int:
        return self.versions[-1].version if self.versions else 0

    # ---- the scheduler ---------------------------------------------------------------------------------
    def busy(self) -> bool:
        return bool(self.owner_inbox or any(s.read < len(s.log) or s.front.held or s.outbox for s in self.fronts)
                    or any(s.inbox or s.part.applied < self.newest() for s in self.slots))

    def run(self, events: list[Interaction]) -> None:
        arrivals = deque(events)
        steps = 0
        while arrivals or self.busy():
            steps += 1
            assert steps < 200_000, "the deployment does not settle: a message goes round in circles"
            roll = self.rng.random()
            if arrivals and roll < 0.3:
                self.deliver(arrivals.popleft())
            elif roll < 0.5:
                self.front_step(self.rng.randrange(len(self.fronts)))
            elif roll < 0.65:
                self.owner_step()
            else:
                self.partition_step(self.rng.choice(self.slots))
        for slot in self.fronts:  # every front has routed everything: nothing is held
            assert not slot.front.held

"""The partitioned resolver's stages on Kafka (CEM_SPLIT_PARTITIONS; docs/scaling.md, "The split on Kafka").

    ingest --(by event id)--> <prefix>.resolve (N) --front--> <prefix>.customers (N) --customers--> ClickHouse
                                      \\--requests--> <prefix>.identity (1) --owner--> ClickHouse, identity_changes
                                                                                          \\--> every replica

The front deduplicates and routes by the worker's identity replica; what the replica cannot answer waits, within
the batch, until the owner's version reaches the replica. The owner folds requests into the graph and publishes
its versions. A customer partition folds sessions and journeys, applies the replica's versions (a merged
customer's state is handed to the survivor's partition) and writes the interaction rows. Each stage is glue around
its domain class (cem.domain.front, identity_owner, customer_stage) and its warehouse (cem.service.split_service).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from cem import metrics
from cem.domain.customer_stage import CustomerPartition, HandOff, PartitionStep
from cem.domain.effects import Effects, next_version, own_version
from cem.domain.front import Routed
from cem.domain.identity_owner import IdentityOwner, IdentityRequest
from cem.domain.identity_replica import IdentityChanges
from cem.service.split_service import SplitWarehouse, owner_from, partition_from
from schemas.internal import (
    InternalMessageError,
    header_value,
    signature_headers,
    verify,
)
from schemas.split_wire import (
    decode_handoff,
    decode_requests,
    decode_routed,
    encode_handoff,
    encode_routed,
)
from streams.deadletters import DeadLetter, dead_letter
from streams.identity_feed import IdentityPublisher
from streams.ingest import source_of
from streams.status import WorkerStatus

log = logging.getLogger("cem.worker")
KIND = "cem.kind"
ROUTED, HANDOFF = b"routed", b"handoff"
RELEASE_POLL_SECONDS = 0.005
CATCH_UP_POLL_SECONDS = 0.2
CATCH_UP_LOG_SECONDS = 10.0
EVENTS_PER_MESSAGE = 1 << 24  # more than a resolver message can hold
CONTROL_DETAIL = "erasure requests need the single resolver (CEM_SPLIT_PARTITIONS=0)"


class StageSender:
    """Signed sends on the stages' topics, awaited together: a batch is acknowledged once all is on the broker."""

    def __init__(self, settings: Any, deadletter_topic: Any, clock: Callable[[], float]) -> None:
        self.settings, self.key, self.deadletter_topic, self.clock = settings, settings.signing_key, \
            deadletter_topic, clock
        self.deliveries: list[Any] = []

    async def send(self, topic: Any, value: bytes, partition: int | None = None, kind: bytes = b"") -> None:
        headers = signature_headers(self.key, value) + ([(KIND, kind)] if kind else [])
        self.deliveries.append(await topic.send(key=b"split", value=value, partition=partition, headers=headers))

    async def routed(self, topic: Any, by_partition: Iterable[tuple[int, Routed]]) -> None:
        groups: dict[int, list[Routed]] = {}
        for partition, item in by_partition:
            groups.setdefault(partition, []).append(item)
        for partition, items in sorted(groups.items()):
            for value in routed_messages(items, self.settings.message_max_bytes):
                await self.send(topic, value, partition, ROUTED)

    async def letter(self, letter: DeadLetter) -> None:
        metrics.DEADLETTERED.labels(dict(letter.headers)["cem.reason"].decode()).inc()
        self.deliveries.append(await self.deadletter_topic.send(key=letter.key, value=letter.value,
                                                                headers=letter.headers))

    async def refused(self, message: Any, err: InternalMessageError) -> None:
        await self.letter(dead_letter(source_of(message), message.value, err.reason, err.detail,
                                      int(self.clock() * 1000), self.settings.message_max_bytes))

    async def done(self) -> None:
        deliveries, self.deliveries = self.deliveries, []
        await asyncio.gather(*deliveries)


def routed_messages(items: list[Routed], max_bytes: int) -> list[bytes]:
    """Routed events in messages under `max_bytes`: encoded whole, and when too large cut by count into as many
    parts as the size says, each cut again only if one event was far larger than the rest."""
    value = encode_routed(items)
    if len(value) <= max_bytes or len(items) == 1:
        return [value]
    parts = -(-len(value) // max_bytes) + 1
    size = -(-len(items) // parts)
    return [m for start in range(0, len(items), size) for m in routed_messages(items[start:start + size], max_bytes)]


class OwnerStage:
    """<prefix>.identity: the one serial step. Folds the fronts' requests, writes and publishes each version."""

    def __init__(self, settings: Any, warehouse: SplitWarehouse, publisher: IdentityPublisher,
                 topics: dict[str, Any], clock: Callable[[], float] = time.time) -> None:
        self.settings, self.warehouse, self.publisher, self.topics, self.clock = \
            settings, warehouse, publisher, topics, clock
        self.owner: IdentityOwner | None = None

    def invalidate(self) -> None:
        self.owner = None
        self.publisher.invalidate()

    async def handle(self, events: list[Any]) -> None:
        loop = asyncio.get_running_loop()
        sender = StageSender(self.settings, self.topics["deadletter"], self.clock)
        requests: list[IdentityRequest] = []
        for event in events:
            try:
                verify(self.settings.signing_key, event.message.value or b"", event.message.headers)
                requests.extend(decode_requests(event.message.value))
            except InternalMessageError as err:
                await sender.refused(event.message, err)
        if requests:
            try:
                effects = await loop.run_in_executor(None, self._process, requests)
                await loop.run_in_executor(None, self.warehouse.write, effects)
                await self.publisher.publish_batch(effects)
            except BaseException:
                self.invalidate()  # rebuilt from the warehouse: a retry folds the batch again, harmlessly
                raise
            for outcome, count in effects.identity_outcomes.items():
                metrics.IDENTITY_EVENTS.labels(outcome).inc(count)
            metrics.MERGES.inc(len(effects.merges))
        await sender.done()

    def _process(self, requests: list[IdentityRequest]) -> Effects:
        if self.owner is None:
            self.owner = owner_from(self.warehouse.restored())
        return self.owner.process(requests, self.warehouse.now_ms())


class CustomerStage:
    """Partitions of <prefix>.customers: sessions and journeys, merges handed to the survivor's partition."""

    def __init__(self, settings: Any, warehouse: SplitWarehouse, topics: dict[str, Any], status: WorkerStatus,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings, self.warehouse, self.topics, self.status, self.clock = \
            settings, warehouse, topics, status, clock
        self.partitions = settings.split_partitions
        self.parts: dict[int, CustomerPartition] = {}
        self.versions: list[IdentityChanges] = []  # applied by the replica, not yet by the partitions
        self.serial = asyncio.Lock()
        self.version = 0
        # Partitions revoked and not assigned again: a batch taken before the revocation and stepped after it
        # (it waits for the lock) leaves their messages to their next holder, which reads them again. While a
        # rebalance is under way (`settled` clear) it waits: a partition revoked may come back to this worker.
        self.revoked: set[int] = set()
        self.settled = asyncio.Event()
        self.settled.set()

    def moved(self, partitions: Iterable[int], revoked: bool) -> None:
        if revoked:
            self.revoked.update(partitions)
            self.settled.clear()
        else:
            self.revoked.difference_update(partitions)
            self.settled.set()

    def changed(self, changes: IdentityChanges) -> None:
        """The replica applied an owner version (streams.identity_feed listener)."""
        self.versions.append(changes)

    def invalidate(self, partitions: Iterable[int]) -> None:
        for index in partitions:
            self.parts.pop(index, None)

    async def handle(self, events: list[Any]) -> None:
        sender = StageSender(self.settings, self.topics["deadletter"], self.clock)
        inbox: list[tuple[int, Routed | HandOff | None]] = []
        for event in events:
            message = event.message
            try:
                verify(self.settings.signing_key, message.value or b"", message.headers)
                if header_value(message.headers, KIND) == HANDOFF:
                    inbox.append((message.partition, decode_handoff(message.value)))
                else:
                    inbox.extend((message.partition, routed) for routed in decode_routed(message.value))
            except InternalMessageError as err:
                await sender.refused(message, err)
        async with self.serial:
            await self.settled.wait()
            inbox = [(index, item) for index, item in inbox if index not in self.revoked]
            try:
                await self._step(inbox, sender)
                await sender.done()
            except BaseException:
                # Their state may hold events whose rows were not written: rebuilt from the warehouse for the retry
                self.invalidate({index for index, _ in inbox})
                raise

    async def tick(self, assigned: set[int]) -> None:
        """Owner versions reach the partitions with no event arriving too: merged customers are handed on. A
        partition just assigned is restored here, before its first event, all of them from one warehouse state:
        restored one by one as events arrive, a partition would find rows of customers merged into its own that
        another partition is about to hand over."""
        if assigned and (self.versions or not assigned <= set(self.parts)):
            async with self.serial:
                sender = StageSender(self.settings, self.topics["deadletter"], self.clock)
                try:
                    await self._step([(index, None) for index in sorted(assigned)], sender)
                    await sender.done()
                except BaseException:
                    self.invalidate(assigned)
                    raise

    async def _step(self, inbox: list[tuple[int, Routed | HandOff | None]], sender: StageSender) -> None:
        loop = asyncio.get_running_loop()
        indexes = sorted({index for index, _ in inbox})
        missing = [index for index in indexes if index not in self.parts]
        if missing:
            self.parts.update(await loop.run_in_executor(None, self._restored, missing))
        after = max((item.version for _, item in inbox if isinstance(item, HandOff)), default=0)
        now_ms = int(self.clock() * 1000)
        self.version = own_version(next_version(max([self.version, *(self.parts[i].version for i in indexes)]),
                                                now_ms, after), min(self.parts, default=0))
        effects, step = Effects(self.version), PartitionStep()
        for part in self.parts.values():
            part.expire(now_ms)
        for index in missing:
            self.parts[index].hand_on_restored(effects, step)
        versions, self.versions = self.versions, []
        for part in self.parts.values():
            part.version = self.version
            for changes in versions:
                part.apply(changes, effects, step)
        for index, item in inbox:
            if isinstance(item, HandOff):
                self.parts[index].receive(item, effects, step)
            elif item is not None:
                self.parts[index].fold(item, effects, step)
        if effects.interactions or effects.sessions or effects.journeys:
            written = await loop.run_in_executor(None, self.warehouse.write, effects)
            self.status.written += written
        await sender.routed(self.topics["customers"], step.forwarded)
        for target, handoff in step.handoffs:
            await sender.send(self.topics["customers"], encode_handoff(handoff), target, HANDOFF)

    def _restored(self, indexes: list[int]) -> dict[int, CustomerPartition]:
        restored = self.warehouse.restored()
        return {index: partition_from(restored, index, self.partitions) for index in indexes}

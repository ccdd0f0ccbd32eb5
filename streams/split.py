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
from cem.domain.customer_stage import CustomerPartition, HandOff, PartitionStep, customer_partition
from cem.domain.effects import Effects, next_version
from cem.domain.front import Front, Routed
from cem.domain.identity_owner import IdentityOwner, IdentityRequest
from cem.domain.identity_replica import IdentityChanges
from cem.domain.model import Interaction
from cem.domain.reasons import Reason
from cem.kafka import kafka_client_options
from cem.service.split_service import SplitWarehouse, front_from, owner_from, partition_from
from schemas.internal import (
    ControlRequest,
    InternalMessageError,
    decode_resolve_message,
    header_value,
    signature_headers,
    verify,
)
from schemas.split_wire import (
    decode_handoff,
    decode_requests,
    decode_routed,
    encode_handoff,
    encode_requests,
    encode_routed,
)
from streams.deadletters import DeadLetter, dead_letter, event_dead_letter
from streams.identity_feed import IdentityFeed, IdentityPublisher
from streams.ingest import source_of
from streams.resolve import CONFLICT_DETAIL
from streams.status import WorkerStatus

log = logging.getLogger("cem.worker")
KIND = "cem.kind"
ROUTED, HANDOFF = b"routed", b"handoff"
RELEASE_POLL_SECONDS = 0.005
CATCH_UP_POLL_SECONDS = 0.2
CATCH_UP_LOG_SECONDS = 10.0
EVENTS_PER_MESSAGE = 1 << 24  # more than a resolver message can hold
CONTROL_DETAIL = "erasure requests need the single resolver (CEM_SPLIT_PARTITIONS=0)"


class _Sender:
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
    value = encode_routed(items)
    if len(value) <= max_bytes or len(items) == 1:
        return [value]
    half = len(items) // 2
    return routed_messages(items[:half], max_bytes) + routed_messages(items[half:], max_bytes)


async def customers_caught_up(settings: Any) -> None:
    """Waits until every message now on <prefix>.customers is folded and written (committed by the group). A
    front that starts (or takes partitions over) then finds in the warehouse every event routed before it: a
    record it reads again whose event a front routed already is a duplicate, never routed twice."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=settings.app_id,
                                enable_auto_commit=False, **kafka_client_options(settings))
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.customers_topic, p) for p in range(settings.split_partitions)]
        ends = await consumer.end_offsets(partitions)
        started = time.monotonic()
        while True:
            behind = [tp for tp in partitions if ((await consumer.committed(tp)) or 0) < ends[tp]]
            if not behind:
                return
            if time.monotonic() - started > CATCH_UP_LOG_SECONDS:
                log.info("front waits for %d customer partitions to fold what was routed before it", len(behind))
                started = time.monotonic()
            await asyncio.sleep(CATCH_UP_POLL_SECONDS)
    finally:
        await consumer.stop()


class FrontStage:
    """Partitions of <prefix>.resolve: deduplicate by event id, route by the replica, ask the owner the rest."""

    def __init__(self, settings: Any, warehouse: SplitWarehouse, feed: IdentityFeed, topics: dict[str, Any],
                 status: WorkerStatus, clock: Callable[[], float] = time.time) -> None:
        self.settings, self.warehouse, self.feed, self.topics, self.status, self.clock = \
            settings, warehouse, feed, topics, status, clock
        self.front: Front | None = None
        self.partitions = settings.split_partitions

    def invalidate(self) -> None:
        """Front partitions moved: the dedup window is read again from the warehouse before the next batch."""
        self.front = None

    async def handle(self, events: list[Any]) -> None:
        await self.feed.ready.wait()
        front = await self._ensure_front()
        sender = _Sender(self.settings, self.topics["deadletter"], self.clock)
        admitted: list[tuple[int, Interaction]] = []
        for event in events:
            message = event.message
            try:
                verify(self.settings.signing_key, message.value or b"", message.headers)
                item = decode_resolve_message(message.value)
                if isinstance(item, ControlRequest):
                    raise InternalMessageError(Reason.INVALID_INTERNAL_MESSAGE, CONTROL_DETAIL)
            except InternalMessageError as err:
                await sender.refused(message, err)
                continue
            # A position per event (a message holds many): only a record read again is a replay to the front
            admitted.extend((message.offset * EVENTS_PER_MESSAGE + index, interaction)
                            for index, interaction in enumerate(item))
        front.replica = self.feed.replica
        step = front.admit(admitted, int(self.clock() * 1000))
        await self._route(sender, step.routed)
        if step.requests:
            await sender.send(self.topics["identity"], encode_requests(step.requests), 0)
        now_ms = int(self.clock() * 1000)
        for event in step.conflicting:
            await sender.letter(event_dead_letter(self.settings.resolve_topic, event, Reason.DUPLICATE_CONFLICT,
                                                  CONFLICT_DETAIL, now_ms, self.settings.message_max_bytes,
                                                  suffix=f"#{event.fingerprint}"))
        metrics.FRONT_ANSWERS.labels("local").inc(len(step.routed))
        metrics.FRONT_ANSWERS.labels("owner").inc(len(front.held))
        metrics.DUPLICATES.inc(step.duplicates)
        await self._wait_for_owner(front, sender)
        await sender.done()
        front.committable(2**62)  # nothing is held past a batch: no decision is needed again
        self.status.resolved += len(admitted)
        self.status.duplicate_conflict += len(step.conflicting)

    async def _wait_for_owner(self, front: Front, sender: _Sender) -> None:
        """Held events go once the replica answers them: the owner's version that folded their sets arrived."""
        while front.held:
            await asyncio.sleep(RELEASE_POLL_SECONDS)
            front.replica = self.feed.replica
            await self._route(sender, front.release())

    async def _route(self, sender: _Sender, routed: list[Routed]) -> None:
        await sender.routed(self.topics["customers"],
                            [(customer_partition(r.customer_id, self.partitions), r) for r in routed])

    async def _ensure_front(self) -> Front:
        if self.front is None:
            await customers_caught_up(self.settings)
            restored = await asyncio.get_running_loop().run_in_executor(None, self.warehouse.restored)
            self.front = front_from(restored, self.feed.replica)
        return self.front


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
        sender = _Sender(self.settings, self.topics["deadletter"], self.clock)
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

    def changed(self, changes: IdentityChanges) -> None:
        """The replica applied an owner version (streams.identity_feed listener)."""
        self.versions.append(changes)

    def invalidate(self, partitions: Iterable[int]) -> None:
        for index in partitions:
            self.parts.pop(index, None)

    async def handle(self, events: list[Any]) -> None:
        sender = _Sender(self.settings, self.topics["deadletter"], self.clock)
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
            await self._step(inbox, sender)
        await sender.done()

    async def tick(self, assigned: set[int]) -> None:
        """Owner versions reach the partitions with no event arriving too: merged customers are handed on."""
        if self.versions and assigned:
            async with self.serial:
                sender = _Sender(self.settings, self.topics["deadletter"], self.clock)
                await self._step([(index, None) for index in sorted(assigned)], sender)
                await sender.done()

    async def _step(self, inbox: list[tuple[int, Routed | HandOff | None]], sender: _Sender) -> None:
        loop = asyncio.get_running_loop()
        indexes = sorted({index for index, _ in inbox})
        for index in indexes:
            if index not in self.parts:
                self.parts[index] = await loop.run_in_executor(None, self._restored, index)
        after = max((item.version for _, item in inbox if isinstance(item, HandOff)), default=0)
        self.version = next_version(max([self.version, *(self.parts[i].version for i in indexes)]),
                                    int(self.clock() * 1000), after)
        effects, step = Effects(self.version), PartitionStep()
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

    def _restored(self, index: int) -> CustomerPartition:
        return partition_from(self.warehouse.restored(), index, self.partitions)

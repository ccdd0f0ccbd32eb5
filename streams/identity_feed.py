"""The identity graph's answers on Kafka: the owner publishes them, every worker keeps a read replica of them.

`IdentityPublisher` runs where the resolver runs (the graph's owner). After a batch is written, and before it is
acknowledged, the batch's identity changes go to `<prefix>.identity_changes` as one version (in parts when large,
schemas.identity_changes). When it starts, and after any failure, it first reads the last complete version on the
topic and publishes what the warehouse holds above it as one catch-up version: a batch written but never
published (the owner died in between) reaches the replicas all the same.

`IdentityFeed` runs on every worker. It starts its replica from the warehouse (every set and alias up to the last
complete batch, sinks.identity_reads), then reads the topic from shortly before that batch's time and applies every
later version whole, in the owner's order. It exports its version, lag and staleness (cem/metrics.py) and is
restarted from the warehouse when its consumer fails. docs/scaling.md, "The replica in the worker".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cem import metrics
from cem.domain.effects import Effects
from cem.domain.identity_replica import IdentityChanges, IdentityReplica, identity_changes
from cem.domain.model import Interaction
from cem.domain.state_maps import in_memory_maps
from cem.kafka import kafka_client_options
from cem.settings import Settings
from cem.state_store import Checkpoint, StateStore
from schemas.identity_changes import MESSAGE_KEY, Assembler, complete_version, decode_part, encode_changes, version_of
from schemas.internal import InternalMessageError
from streams.producer import OutboxProducer

log = logging.getLogger("cem.identity")

POLL_MS = 200
RETRY_SECONDS = 2.0
TAIL_TIMEOUT_SECONDS = 30.0
TOPIC_WAIT_SECONDS = 60.0
# A version is published after its batch's rows are written, so a message older than the replica's start batch
# holds an older version; the margin covers clocks of different owners that disagree.
SEEK_MARGIN_MS = 10 * 60_000


class IdentityPublisher:
    def __init__(self, settings: Settings, sink: Any) -> None:
        self.settings = settings
        self.sink = sink  # cem.service.resolver_service.ResolverService: identity_written_after
        self.published: int | None = None  # the newest complete version on the topic; None: read it first
        self.producers = OutboxProducer(settings)

    def invalidate(self) -> None:
        """The partition moved or a step failed: read the topic's tail and catch up before the next version."""
        self.published = None

    async def publish_batch(self, effects: Effects) -> None:
        """A resolver batch's identity changes (computed only when the replica is on: this is the serial path)."""
        if self.settings.identity_replica:
            await self.publish(identity_changes(effects))

    async def publish(self, changes: IdentityChanges | None) -> None:
        """Publish one version (after a catch-up when needed); returns once the broker has every part."""
        if not self.settings.identity_replica:
            return
        try:
            if self.published is None:
                tail = await read_identity_tail(self.settings)
                catch_up = await asyncio.get_running_loop().run_in_executor(
                    None, self.sink.identity_written_after, tail)
                self.published = tail
                if catch_up.size:
                    await self._send(catch_up)
            if changes is not None and changes.size and changes.version > (self.published or 0):
                await self._send(changes)
        except BaseException:
            self.invalidate()
            raise

    async def _send(self, changes: IdentityChanges) -> None:
        producer = await self.producers.get()
        deliveries = []
        for value, headers in encode_changes(self.settings.signing_key, changes, self.settings.message_max_bytes):
            deliveries.append(await producer.send(self.settings.identity_changes_topic, value, key=MESSAGE_KEY,
                                                  headers=headers))
        await asyncio.gather(*deliveries)
        self.published = changes.version
        metrics.IDENTITY_VERSIONS_PUBLISHED.inc()

    async def stop(self) -> None:
        await self.producers.stop()


async def read_identity_tail(settings: Settings) -> int:
    """The newest complete version on the identity changes topic; 0 when it is empty."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    partition = TopicPartition(settings.identity_changes_topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                group_id=None, **kafka_client_options(settings))
    await consumer.start()
    try:
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        if end == 0:
            return 0
        consumer.seek(partition, end - 1)
        deadline = time.monotonic() + TAIL_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            records = (await consumer.getmany(partition, timeout_ms=500)).get(partition, [])
            if records:
                return complete_version(records[-1].headers)
        raise TimeoutError(f"could not read the last message of {settings.identity_changes_topic}")
    finally:
        await consumer.stop()


class IdentityFeed:
    def __init__(self, settings: Settings, load_start: Callable[[], Awaitable[IdentityChanges]],
                 clock: Callable[[], float] = time.monotonic, store: StateStore | None = None) -> None:
        """`store`: a disk store for the replica's maps (emptied at each start), None to keep them in dicts."""
        self.settings = settings
        self.load_start = load_start
        self.store = store
        self.clock = clock
        self.replica = IdentityReplica()
        self.ready = asyncio.Event()
        self.lag = 0
        self.caught_up_at: float | None = None
        self.started_at = clock()
        # Called with every version the replica applies, in order (the split's customer partitions hand merged
        # customers on from them); a restart from the warehouse passes its start as one version.
        self.listeners: list[Callable[[IdentityChanges], None]] = []

    async def run(self) -> None:
        """The worker's task; never raises: a failure restarts the replica from the warehouse."""
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("identity replica failed, restarting from the warehouse: %s: %s",
                            type(exc).__name__, str(exc)[:300])
            self.ready.clear()
            metrics.REPLICA_READY.labels(self.settings.identity_changes_topic).set(0)
            await asyncio.sleep(RETRY_SECONDS)

    async def _run_once(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        start = await self.load_start()
        if self.store is not None:
            self.store.wipe()  # the replica starts from the warehouse, whatever the files hold
        replica = IdentityReplica(self.store.map if self.store is not None else in_memory_maps)
        if replica.apply(start):
            self._changed(start)
        self._written(replica)
        partition = TopicPartition(self.settings.identity_changes_topic, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False,
                                    group_id=None, **kafka_client_options(self.settings))
        await consumer.start()
        try:
            await self._wait_for_topic(consumer)
            consumer.assign([partition])
            since_ms = max(0, start.version // 1000 - SEEK_MARGIN_MS)
            found = (await consumer.offsets_for_times({partition: since_ms})).get(partition)
            if found is None:  # every message is older than the start: nothing to apply
                consumer.seek(partition, (await consumer.end_offsets([partition]))[partition])
            else:
                consumer.seek(partition, found.offset)
            self.replica = replica  # stale since it was last caught up, before the restart: caught_up_at stays
            assembler = Assembler()
            target = (await consumer.end_offsets([partition]))[partition]
            while True:
                records = (await consumer.getmany(partition, timeout_ms=POLL_MS)).get(partition, [])
                for record in records:
                    self.apply(replica, assembler, record.value, record.headers, record.offset)
                if records:
                    self._written(replica)
                position = await consumer.position(partition)
                end = (await consumer.end_offsets([partition]))[partition]
                self._progress(position >= target and not assembler.waiting, end - position)
                target = end
        finally:
            await consumer.stop()

    async def _wait_for_topic(self, consumer: Any) -> None:
        """The worker creates the topic at start; a replica started before that waits for it (seeking a missing
        topic would resolve to an end offset found later, past versions published meanwhile)."""
        topic = self.settings.identity_changes_topic
        deadline = asyncio.get_running_loop().time() + TOPIC_WAIT_SECONDS
        while topic not in await consumer.topics():  # a metadata request each time
            if asyncio.get_running_loop().time() > deadline:
                raise LookupError(f"no partition of {topic} within {TOPIC_WAIT_SECONDS:.0f} s; `cem worker` "
                                  "creates it when CEM_IDENTITY_REPLICA is on")
            await asyncio.sleep(0.5)

    def apply(self, replica: IdentityReplica, assembler: Assembler, value: bytes | None, headers: Any,
              offset: int) -> None:
        """One message; a message cem did not write, or a malformed one, is counted and skipped."""
        version = version_of(headers)
        if version is not None and version <= replica.version:
            return  # in the warehouse start already, or a redelivery
        try:
            part = decode_part(self.settings.signing_key, value, headers)
        except InternalMessageError as err:
            metrics.REPLICA_SKIPPED.labels(err.reason).inc()
            log.warning("skipping %s offset %d: %s", self.settings.identity_changes_topic, offset, err.detail)
            return
        whole = assembler.add(part)
        if whole is not None and replica.apply(whole):
            metrics.REPLICA_VERSION.labels(self.settings.identity_changes_topic).set(replica.version)
            self._changed(whole)

    def _changed(self, changes: IdentityChanges) -> None:
        for listener in self.listeners:
            listener(changes)

    def _written(self, replica: IdentityReplica) -> None:
        """A disk-backed replica writes its changes back and keeps its caches within their budget."""
        if self.store is not None:
            self.store.flush(Checkpoint(replica.version, "identity-replica"))

    def _progress(self, reached: bool, lag: int) -> None:
        """`reached`: everything the topic held at the previous poll is applied. Under steady traffic new versions
        arrive all the time, so being fresh means keeping up with what was there, not an empty backlog."""
        now = self.clock()
        self.lag = max(0, lag)
        if reached:
            self.caught_up_at = now
            if not self.ready.is_set():
                self.ready.set()
                log.info("identity replica ready at version %d", self.replica.version)
        since = self.caught_up_at if self.caught_up_at is not None else self.started_at
        topic = self.settings.identity_changes_topic
        metrics.REPLICA_LAG.labels(topic).set(self.lag)
        metrics.REPLICA_STALE.labels(topic).set(0.0 if self.caught_up_at == now else now - since)
        metrics.REPLICA_READY.labels(topic).set(1 if self.ready.is_set() else 0)
        metrics.REPLICA_VERSION.labels(topic).set(self.replica.version)

    def probe(self, events: list[Interaction]) -> None:
        """What a front would do with these events now: count those the replica attributes and those it would send
        to the owner. The split's fronts are not built (docs/scaling.md); this measures them on live traffic."""
        if not self.ready.is_set() or not events:
            return
        local = sum(1 for e in events
                    if self.replica.resolve_locally(e.identifiers, (e.occurred_ms, e.event_id)) is not None)
        metrics.FRONT_ANSWERS.labels("local").inc(local)
        metrics.FRONT_ANSWERS.labels("owner").inc(len(events) - local)

    def describe(self) -> dict[str, Any]:
        return {"ready": self.ready.is_set(), "version": self.replica.version, "lag_messages": self.lag,
                "store": "disk" if self.store is not None else "memory"}

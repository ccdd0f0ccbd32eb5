"""The partitioned resolver's fronts: the partitions of <prefix>.resolve a worker holds (docs/scaling.md, "The split
on Kafka").

A front deduplicates by event id, routes what the worker's identity replica answers to the customer's partition at
once, and asks the graph's owner about the rest (cem.domain.front). Those wait in memory, without holding up the
batches behind them, until the replica has applied the owner's version that answers them. A message of the
resolver topic is acknowledged to Faust once every event of it is routed and on the broker; Faust commits only up
to the oldest message still waiting, so a restart reads every waiting event again.

Restarts. A front that starts, takes partitions over, or failed on a batch is rebuilt from the warehouse, after the
customer partitions have folded and written everything already routed (`customers_caught_up`): an event routed
before is then in the warehouse's dedup window, and a record read again is a duplicate, never routed twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from cem import metrics
from cem.domain.customer_stage import customer_partition
from cem.domain.front import Front, Routed
from cem.domain.model import Interaction
from cem.domain.reasons import Reason
from cem.kafka import kafka_client_options
from cem.service.split_service import SplitWarehouse, front_from
from schemas.internal import ControlRequest, InternalMessageError, decode_resolve_message, verify
from schemas.split_wire import encode_requests
from streams.deadletters import event_dead_letter
from streams.identity_feed import IdentityFeed
from streams.resolve import CONFLICT_DETAIL
from streams.split import StageSender
from streams.status import WorkerStatus

log = logging.getLogger("cem.worker")
RELEASE_POLL_SECONDS = 0.005
CATCH_UP_POLL_SECONDS = 0.2
CATCH_UP_LOG_SECONDS = 10.0
EVENTS_PER_MESSAGE = 1 << 24  # more than a resolver message can hold
CONTROL_DETAIL = "erasure requests need the single resolver (CEM_SPLIT_PARTITIONS=0)"


async def customers_caught_up(settings: Any) -> None:
    """Waits until every message now on <prefix>.customers is folded and written (committed by the group)."""
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


@dataclass
class Waiting:
    """A message of the resolver topic not yet acknowledged: its events still held, and whether what it routed
    at once is on the broker."""

    event: Any  # the Faust event
    held: set[str] = field(default_factory=set)
    sent: bool = False


class FrontStage:
    """Partitions of <prefix>.resolve: deduplicate by event id, route by the replica, ask the owner the rest."""

    def __init__(self, settings: Any, warehouse: SplitWarehouse, feed: IdentityFeed, topics: dict[str, Any],
                 status: WorkerStatus, clock: Callable[[], float] = time.time,
                 caught_up: Callable[[Any], Awaitable[None]] = customers_caught_up) -> None:
        self.settings, self.warehouse, self.feed, self.topics, self.status, self.clock = \
            settings, warehouse, feed, topics, status, clock
        self.caught_up = caught_up
        self.front: Front | None = None
        self.partitions = settings.split_partitions
        self.waiting: list[Waiting] = []
        self.redo: list[Any] = []  # messages to admit again into a rebuilt front, before the next batch
        self.stream: Any = None  # the agent's stream, which acknowledges its events
        self.serial = asyncio.Lock()  # a batch and a release never interleave
        self.asked_at = -1  # the replica version the held events were last checked against
        # Partitions revoked and not assigned again. A batch taken from the stream before a revocation may reach
        # `handle` after it (it waits for the replica and the lock): its messages of these partitions are their
        # next holder's, which reads them again, and routing them here too would route an event twice. While a
        # rebalance is under way (`settled` clear) it waits: a partition revoked may come back to this worker.
        self.revoked: set[Any] = set()
        self.settled = asyncio.Event()
        self.settled.set()

    def invalidate(self, revoked: Collection[Any] = ()) -> None:
        """Rebuild from the warehouse before the next batch; the messages still waiting are admitted again,
        except those of `revoked` partitions (their next holder reads them again: they were never committed)."""
        self.front = None
        metrics.FRONT_HELD.set(0)
        if revoked:
            self.revoked.update(revoked)
            self.settled.clear()
        self.redo = [e for e in [*(w.event for w in self.waiting), *self.redo] if e.message.tp not in revoked]
        self.waiting = []

    def assigned(self, partitions: Collection[Any]) -> None:
        self.revoked.difference_update(partitions)
        self.settled.set()

    async def handle(self, events: list[Any]) -> None:
        await self.feed.ready.wait()
        async with self.serial:
            try:
                await self.settled.wait()
                events = [e for e in events if e.message.tp not in self.revoked]
                front = await self._ensure_front()
                batch, self.redo = [*self.redo, *events], []
                await self._admit(front, batch)
            except BaseException:
                self.invalidate()  # what it remembered may not have been routed: admitted again, rebuilt
                self.redo = [e for e in self.redo if not any(e is mine for mine in events)]  # the retry brings it
                raise

    async def _admit(self, front: Front, events: list[Any]) -> None:
        sender = StageSender(self.settings, self.topics["deadletter"], self.clock)
        admitted: list[tuple[int, Interaction]] = []
        waiting: list[tuple[Waiting, list[str]]] = []
        for event in events:
            message = event.message
            try:
                verify(self.settings.signing_key, message.value or b"", message.headers)
                item = decode_resolve_message(message.value)
                if isinstance(item, ControlRequest):
                    raise InternalMessageError(Reason.INVALID_INTERNAL_MESSAGE, CONTROL_DETAIL)
            except InternalMessageError as err:
                await sender.refused(message, err)
                item = []
            # A position per event (a message holds many): only a record read again is a replay to the front
            admitted.extend((message.offset * EVENTS_PER_MESSAGE + index, interaction)
                            for index, interaction in enumerate(item))
            waiting.append((Waiting(event), [interaction.event_id for interaction in item]))
        held_before = len(front.held)
        front.replica = self.feed.replica
        step = front.admit(admitted, int(self.clock() * 1000))
        for entry, ids in waiting:  # before any await: a release may route them while this batch sends
            entry.held = {event_id for event_id in ids if event_id in front.held}
            self.waiting.append(entry)
        await self._route(sender, step.routed)
        if step.requests:
            await sender.send(self.topics["identity"], encode_requests(step.requests), 0)
        now_ms = int(self.clock() * 1000)
        for event in step.conflicting:
            await sender.letter(event_dead_letter(self.settings.resolve_topic, event, Reason.DUPLICATE_CONFLICT,
                                                  CONFLICT_DETAIL, now_ms, self.settings.message_max_bytes,
                                                  suffix=f"#{event.fingerprint}"))
        metrics.FRONT_ANSWERS.labels("local").inc(len(step.routed))
        metrics.FRONT_ANSWERS.labels("owner").inc(len(front.held) - held_before)
        metrics.DUPLICATES.inc(step.duplicates)
        metrics.FRONT_HELD.set(len(front.held))
        await sender.done()
        for entry, _ in waiting:
            entry.sent = True
        front.committable(2**62)  # a restart rebuilds the front: no decision is repeated
        self.status.resolved += len(admitted)
        self.status.duplicate_conflict += len(step.conflicting)
        await self._acknowledge()

    async def release(self) -> None:
        """Routes the held events the replica answers now; the worker's task calls it continually."""
        if self.redo and self.front is None:
            await self.handle([])  # rebuilt after a failure with no batch arriving since
            return
        async with self.serial:
            await self._release()

    async def _release(self) -> None:
        front = self.front
        replica = self.feed.replica
        if front is None or not front.held or (front.replica is replica and replica.version == self.asked_at):
            return  # the replica has applied nothing new: it answers nothing more
        front.replica, self.asked_at = replica, replica.version
        routed = front.release()
        metrics.FRONT_HELD.set(len(front.held))
        if not routed:
            return
        sender = StageSender(self.settings, self.topics["deadletter"], self.clock)
        await self._route(sender, routed)
        await sender.done()
        if front is not self.front:
            return  # rebuilt meanwhile: its messages are admitted again
        ids = {r.event.event_id for r in routed}
        for entry in self.waiting:
            entry.held -= ids
        await self._acknowledge()

    async def release_forever(self) -> None:
        while True:
            try:
                await self.release()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # routed again by the rebuilt front
                log.warning("front: releasing held events failed, rebuilding: %s: %s", type(exc).__name__, exc)
                self.invalidate()
            await asyncio.sleep(RELEASE_POLL_SECONDS)

    async def _acknowledge(self) -> None:
        """Acknowledges the messages done that no message still waiting precedes in their partition. Faust
        commits the first run of acknowledged offsets, and when it knows no committed offset (a partition new to
        the group, or just assigned again) it does not check that the run starts there: a later message
        acknowledged before a held one would let the commit pass it, and a rebalance then lose it."""
        first_waiting: dict[Any, int] = {}
        for entry in self.waiting:
            if entry.held or not entry.sent:
                message = entry.event.message
                first_waiting[message.tp] = min(message.offset, first_waiting.get(message.tp, message.offset))
        done = [w for w in self.waiting if w.sent and not w.held
                and w.event.message.offset < first_waiting.get(w.event.message.tp, w.event.message.offset + 1)]
        if not done:
            return
        acknowledged = {id(entry) for entry in done}
        self.waiting = [w for w in self.waiting if id(w) not in acknowledged]
        for entry in done:
            await self.stream.ack(entry.event)

    async def _route(self, sender: StageSender, routed: list[Routed]) -> None:
        await sender.routed(self.topics["customers"],
                            [(customer_partition(r.customer_id, self.partitions), r) for r in routed])

    async def _ensure_front(self) -> Front:
        if self.front is None:
            await self.caught_up(self.settings)
            restored = await asyncio.get_running_loop().run_in_executor(None, self.warehouse.restored)
            self.front = front_from(restored, self.feed.replica)
        return self.front

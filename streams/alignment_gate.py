"""Applying the event-time alignment (streams.alignment) to the worker's raw partitions.

After each ingest batch the gate tells the policy what was delivered, asks it what to pause and resume, and
applies that to the Kafka consumer itself (aiokafka's `pause`/`resume`, in the consumer's own thread). There,
unlike Faust's `pause_partitions`, nothing already fetched is lost: records handed to Faust are delivered, and
records aiokafka holds for a paused partition are dropped without moving its position, so they are fetched again
once it is resumed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import TopicPartition

from cem import metrics
from streams.alignment import EventTimeAlignment

log = logging.getLogger("cem.worker")


class PartitionGate:
    def __init__(self, app: Any, policy: EventTimeAlignment, raw_topics: Iterable[str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.policy = policy
        self.raw_topics = frozenset(raw_topics)
        self.clock = clock

    async def observe(self, delivered: list[tuple[Any, int | None]]) -> None:
        """`delivered`: each raw message of an ingest batch now on the broker, with its event time (None for a dead
        letter)."""
        for message, occurred_ms in delivered:
            self.policy.delivered(message.tp, message.offset, occurred_ms)
        consumer = self.app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic in self.raw_topics]
        ends = {tp: consumer.highwater(tp) for tp in assigned}
        committed = {tp: consumer._committed_offset[tp] + 1 for tp in assigned
                     if consumer._committed_offset.get(tp) is not None}
        decision = self.policy.decide(ends, self.clock(), read_from=committed)
        metrics.INGEST_EVENT_TIME_SPREAD.set(decision.spread_ms / 1000)
        if decision.pause or decision.resume:
            await self._apply(decision.pause, decision.resume)
            metrics.INGEST_PARTITIONS_PAUSED.set(len(self.policy.paused()))
            metrics.INGEST_ALIGNMENT_PAUSES.inc(len(decision.pause))

    def revoked(self, partitions: Iterable[Any]) -> None:
        """A rebalance took partitions away: aiokafka forgets their pauses with their assignment, and so does the
        policy."""
        self.policy.forget(partitions)
        metrics.INGEST_PARTITIONS_PAUSED.set(len(self.policy.paused()))

    async def _apply(self, pause: Iterable[Any], resume: Iterable[Any]) -> None:
        thread = self.app.consumer._thread
        kafka = thread._ensure_consumer()
        await thread.call_thread(_toggle, kafka, [TopicPartition(tp.topic, tp.partition) for tp in pause],
                                 [TopicPartition(tp.topic, tp.partition) for tp in resume])


async def _toggle(kafka: Any, pause: list[TopicPartition], resume: list[TopicPartition]) -> None:
    """In the consumer's thread: a partition no longer assigned (a rebalance in between) is skipped."""
    assigned = kafka.assignment()
    kafka.pause(*[tp for tp in pause if tp in assigned])
    kafka.resume(*[tp for tp in resume if tp in assigned])

"""Alerts out, exactly once, and operators' actions in (docs/alerts.md).

The outbox: the resolver's batches write alert revisions to `alert_log` (cem.service); `AlertOutbox` publishes them
to `<prefix>.alerts` in (revision, alert_id) order, from the resolve stage, which owns the single resolver partition.
The topic has one partition, so its last message is the publisher's progress: after a start, a takeover or any
failure, the outbox reads that tail and publishes every revision written after it, from the warehouse. A crash
between a publish and the batch's acknowledgement therefore never publishes a revision twice, and one before the
publish loses none. The producer is idempotent, so its own retries neither duplicate nor reorder.

`AlertActionStage` applies `<prefix>.alert_actions` (ack/resolve): each message is checked, then recorded by its
action id (idempotent); a malformed one becomes a dead letter and the stage carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from cem import metrics
from cem.domain.alerts import AlertRow
from cem.domain.reasons import Reason
from cem.kafka import kafka_client_options
from schemas.alerts import InvalidAction, decode_alert, encode_alert, parse_action
from streams.deadletters import dead_letter
from streams.ingest import source_of
from streams.producer import OutboxProducer

log = logging.getLogger("cem.worker")
Position = tuple[int, str]  # (revision, alert_id) of the last revision published
TAIL_TIMEOUT_SECONDS = 10.0


class AlertOutbox:
    def __init__(self, settings: Any, sink: Any) -> None:
        self.settings = settings
        self.sink = sink
        self.published: Position | None = None  # None: unknown, read the topic's tail first
        self.producers = OutboxProducer(settings)
        self.waiting_since_ms: int | None = None  # raised_ms of the oldest revision written and not yet published
        metrics.ALERT_PUBLISH_LAG.set_function(self.lag_seconds)

    def lag_seconds(self, now: float | None = None) -> float:
        """How long the oldest revision not yet published has waited (the publish-lag gauge, read at scrape)."""
        if self.waiting_since_ms is None:
            return 0.0
        return max(0.0, (now if now is not None else time.time()) - self.waiting_since_ms / 1000)

    def invalidate(self) -> None:
        """After a failure or a takeover: the next publish starts from the topic's tail."""
        self.published = None

    async def publish(self, fresh: list[AlertRow]) -> int:
        """Publish the revisions of the batch just written (or, after an invalidation, every one after the tail)."""
        loop = asyncio.get_running_loop()
        self._waiting(fresh)  # before the tail read, which fails too while Kafka is away
        if self.published is None:
            position = await self.read_tail()
            rows = await loop.run_in_executor(None, self.sink.unpublished_alerts, *position)
            self.published = position
        else:
            published = self.published
            rows = sorted((r for r in fresh if (r.revision, r.alert_id) > published),
                          key=lambda r: (r.revision, r.alert_id))
        if not rows:
            self.waiting_since_ms = None
            return 0
        self._waiting(rows)
        try:
            producer = await self.producer()
            deliveries = []
            for row in rows:
                value, headers = encode_alert(row, self.settings.alert_format)
                deliveries.append(await producer.send(self.settings.alerts_topic, value, key=row.alert_id.encode(),
                                                      headers=headers))
            await asyncio.gather(*deliveries)
        except BaseException:
            self.invalidate()
            raise
        self.published = (rows[-1].revision, rows[-1].alert_id)
        self.waiting_since_ms = None
        for row in rows:
            metrics.ALERTS_PUBLISHED.labels(row.rule, row.state).inc()
        return len(rows)

    def _waiting(self, rows: list[AlertRow]) -> None:
        if rows:
            oldest = min(row.raised_ms for row in rows)
            self.waiting_since_ms = oldest if self.waiting_since_ms is None else min(self.waiting_since_ms, oldest)

    async def producer(self) -> Any:
        return await self.producers.get()

    async def stop(self) -> None:
        await self.producers.stop()

    async def read_tail(self) -> Position:
        return await read_alerts_tail(self.settings)


async def read_alerts_tail(settings: Any) -> Position:
    """(revision, alert_id) of the last message of the alerts topic, (0, "") when it is empty."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    partition = TopicPartition(settings.alerts_topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                group_id=None, isolation_level="read_committed", **kafka_client_options(settings))
    await consumer.start()
    try:
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        if end == 0:
            return 0, ""
        consumer.seek(partition, end - 1)
        deadline = time.monotonic() + TAIL_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            batches = await consumer.getmany(partition, timeout_ms=500)
            records = batches.get(partition, [])
            if records:
                record = decode_alert(records[-1].value, records[-1].headers)
                return int(record["revision"]), str(record["alert_id"])
        raise TimeoutError(f"could not read the last message of {settings.alerts_topic}")
    finally:
        await consumer.stop()


class AlertActionStage:
    def __init__(self, settings: Any, sink: Any, deadletter_topic: Any, clock: Callable[[], float] = time.time
                 ) -> None:
        self.settings = settings
        self.sink = sink
        self.deadletter_topic = deadletter_topic
        self.clock = clock

    async def handle(self, events: list[Any]) -> None:
        actions: dict[str, dict[str, Any]] = {}
        deliveries = []
        for event in events:
            message = event.message
            try:
                action = parse_action(message.value)
            except InvalidAction as err:
                letter = dead_letter(source_of(message), message.value, Reason.INVALID_CONTROL,
                                     f"alert action: {err}", int(self.clock() * 1000), self.settings.message_max_bytes)
                deliveries.append(await self.deadletter_topic.send(key=letter.key, value=letter.value,
                                                                   headers=letter.headers))
                continue
            actions[action["action_id"]] = action
        await asyncio.gather(*deliveries)
        await asyncio.get_running_loop().run_in_executor(None, self.sink.record_alert_actions, list(actions.values()))

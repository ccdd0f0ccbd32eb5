"""The pipeline's topics seen from outside, for tests, benchmarks and the demo: publish records (at once or in
chunks from a thread), read a topic from the beginning, and the consumer group's committed offsets, from which
`drained` tells that every record sent so far is processed and written."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cem.kafka import produce
from cem.settings import Settings


def publish(settings: Settings, records: Sequence[tuple[Any, ...]]) -> None:
    """Records as (topic, key, value) or (topic, key, value, headers)."""
    asyncio.run(produce(settings, records))


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        return self.headers.get("cem.reason", "")


def read_topic(settings: Settings, topic: str, idle_seconds: float = 3.0) -> list[DeadLetter]:
    """Every record of a topic, from the beginning: at least up to the end offsets it had when reading began,
    however slow the broker is to serve them, then until nothing new arrives for idle_seconds."""

    async def read() -> list[DeadLetter]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        out: list[DeadLetter] = []
        try:
            # Without a group, start() assigns every partition of a topic that exists.
            partitions = sorted(consumer.assignment())
            ends = await consumer.end_offsets(partitions) if partitions else {}
            deadline = time.monotonic() + 120
            idle_since = time.monotonic()
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for m in messages:
                        headers = {k: v.decode("utf-8", "replace") for k, v in (m.headers or ())}
                        out.append(DeadLetter(m.key, m.value or b"", headers))
                    idle_since = time.monotonic()
                behind = [p for p in partitions if await consumer.position(p) < ends[p]]
                if behind and time.monotonic() < deadline:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since >= idle_seconds:
                    break
        finally:
            await consumer.stop()
        return out

    return asyncio.run(read())


def group_offsets(settings: Settings, topics: Sequence[str] | None = None) -> dict[str, tuple[int, int]]:
    """Per topic, summed over its partitions: (end offset, offset the consumer group, i.e. the app id, committed).
    Raw topics and the resolver topic by default. A partition with no commit counts as committed at 0.

    The commits are read by a consumer of the group that never subscribes (so never joins it): the admin
    client's group-offsets request is one the demo's broker, Tansu, cannot answer."""
    wanted = list(topics) if topics is not None else [*settings.raw_topics, settings.resolve_topic]

    async def offsets() -> dict[str, tuple[int, int]]:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=settings.app_id,
                                    enable_auto_commit=False, request_timeout_ms=10_000)
        await admin.start()
        await consumer.start()
        try:
            described = await admin.describe_topics(wanted)
            partitions = [TopicPartition(d["topic"], p["partition"]) for d in described if not d["error_code"]
                          for p in d["partitions"]]
            unknown = set(wanted) - {tp.topic for tp in partitions}
            if unknown:
                raise LookupError(f"no metadata for {sorted(unknown)}")
            ends = await consumer.end_offsets(partitions)
            committed = await asyncio.gather(*(consumer.committed(tp) for tp in partitions))
            out = dict.fromkeys(wanted, (0, 0))
            for tp, done in zip(partitions, committed, strict=True):
                end, total = out[tp.topic]
                out[tp.topic] = (end + ends[tp], total + (done or 0))
            return out
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(offsets())


def consumer_lag(settings: Settings, topics: Sequence[str] | None = None) -> dict[str, int]:
    """Per topic: end offsets minus committed offsets of the consumer group (see group_offsets)."""
    return {topic: max(0, end - done) for topic, (end, done) in group_offsets(settings, topics).items()}


def drained(settings: Settings) -> bool:
    """True when every raw record and every resolver batch is committed: the raw topics are checked first, so a
    resolver batch that an ingested record became is already in the resolver topic's end offset."""
    try:
        raw = consumer_lag(settings, settings.raw_topics)
        if sum(raw.values()):
            return False
        # The partitioned resolver's stages, in the order their messages flow
        stages = [settings.resolve_topic, *([settings.identity_topic, settings.customers_topic]
                                            if settings.split_partitions else [])]
        return all(consumer_lag(settings, [topic])[topic] == 0 for topic in stages)
    except Exception:
        return False


class BackgroundPublisher:
    """Publishes records in chunks from a thread, pausing between chunks, so a stream is still arriving while a
    test injects a fault. `published` counts the records acknowledged by the broker so far.

    With through_outages=True one idempotent producer sends every chunk and waits out a broker that is down
    (its retries are deduplicated by the broker, so no record is written twice); otherwise each chunk is sent
    with `publish` and a failure ends the stream."""

    def __init__(self, settings: Settings, records: Sequence[tuple[str, bytes | None, bytes]], chunks: int = 10,
                 pause: float = 1.0, through_outages: bool = False) -> None:
        self.settings = settings
        self.records = list(records)
        self.chunks = max(1, chunks)
        self.pause = pause
        self.through_outages = through_outages
        self.published = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def start(self) -> BackgroundPublisher:
        self._thread.start()
        return self

    def _chunks(self) -> list[list[tuple[str, bytes | None, bytes]]]:
        size = -(-len(self.records) // self.chunks)
        return [self.records[i:i + size] for i in range(0, len(self.records), size)]

    def _run(self) -> None:
        try:
            if self.through_outages:
                asyncio.run(self._run_idempotent())
                return
            chunks = self._chunks()
            for i, chunk in enumerate(chunks):
                publish(self.settings, chunk)  # no retry: a retried chunk would re-send part of itself
                self.published += len(chunk)
                if i + 1 < len(chunks):
                    time.sleep(self.pause)
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    async def _run_idempotent(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, enable_idempotence=True,
                                    acks="all", request_timeout_ms=120_000, retry_backoff_ms=500, linger_ms=5)
        await producer.start()
        try:
            chunks = self._chunks()
            for i, chunk in enumerate(chunks):
                futures = [await producer.send(topic, value, key=key) for topic, key, value in chunk]
                await asyncio.gather(*futures)
                self.published += len(chunk)
                if i + 1 < len(chunks):
                    await asyncio.sleep(self.pause)
        finally:
            await producer.stop()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float = 300.0) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the publisher did not finish")
        if self.error is not None:
            raise self.error

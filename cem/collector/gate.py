"""The collector's way to Kafka: one idempotent producer (acks=all), and whether Kafka is reachable now.

While Kafka is down every request is answered 503 at once, without a wait. A send that fails or outlasts
CEM_COLLECT_KAFKA_TIMEOUT_SECONDS marks Kafka down: that producer is dropped (its sequence numbers may be out of
step with the broker's), and a background loop starts a new one as soon as the bootstrap servers answer.
A record whose request was answered 503 may still have reached Kafka; the SDK sends it again with the same
messageId and the resolver drops the copy as a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from cem.kafka import ensure_topics, kafka_client_options
from cem.settings import Settings

log = logging.getLogger("cem.collect")

# (topic, key, value, headers, timestamp_ms)
Record = tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None, int]


class KafkaUnavailable(Exception):
    """Kafka did not take the records in time: the request is answered 503."""


class KafkaGate:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout = settings.collect_kafka_timeout_seconds
        self.producer: Any = None
        self.ready = False
        self.down_since: float | None = time.monotonic()
        self.topics_checked = False
        self._down = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep_connected())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.producer.stop(), self.timeout)
        for task in list(self._closing):
            task.cancel()

    async def send_all(self, records: Sequence[Record]) -> None:
        """Return once every record is acknowledged by all in-sync replicas; raise KafkaUnavailable otherwise."""
        producer = self.producer
        if not self.ready or producer is None:
            raise KafkaUnavailable("Kafka is unreachable")
        try:
            async with asyncio.timeout(self.timeout):
                futures = [await producer.send(topic, value, key=key, headers=headers, timestamp_ms=ts)
                           for topic, key, value, headers, ts in records]
                await asyncio.gather(*futures)
        except Exception as exc:  # a KafkaError, or the timeout: either way these records are not known to be in
            self._mark_down(producer, exc)
            raise KafkaUnavailable(f"Kafka did not acknowledge the records: {type(exc).__name__}") from exc

    def _mark_down(self, producer: Any, exc: BaseException) -> None:
        if self.producer is not producer:
            return  # another request already dropped this producer
        log.warning("Kafka unavailable (%s): answering 503 until it is back", type(exc).__name__)
        self.ready = False
        self.down_since = time.monotonic()
        self.producer = None
        closing = asyncio.get_running_loop().create_task(self._close(producer))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        self._down.set()

    async def _close(self, producer: Any) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), self.timeout)

    async def _keep_connected(self) -> None:
        while True:
            if self.producer is None:
                try:
                    self.producer = await self._connect()
                except Exception as exc:
                    log.info("Kafka not reachable yet (%s)", type(exc).__name__)
                    await asyncio.sleep(0.5)
                    continue
                self.ready = True
                self.down_since = None
                self._down.clear()
                log.info("Kafka producer ready")
            await self._down.wait()

    async def _connect(self) -> Any:
        from aiokafka import AIOKafkaProducer

        if not self.topics_checked:  # the raw topics exist before the first send (no broker auto-creation needed)
            await ensure_topics(self.settings, timeout=self.timeout)
            self.topics_checked = True
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=2,
            max_request_size=self.settings.producer_max_request_bytes,
            request_timeout_ms=int(self.timeout * 1000), **kafka_client_options(self.settings))
        try:
            await asyncio.wait_for(producer.start(), self.timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        return producer

"""The worker's reader of `<prefix>.schemas`: writer schemas registered at run time (`cem schemas register`).

A plain aiokafka consumer without a consumer group reads the topic's one partition from the beginning, every
worker all of it, and adds each schema that passes schemas.evolution's check to the worker's SchemaRegistry.
A message that does not register a usable writer is logged and skipped. `ready` is set once the topic has been
read to the end offset it had at start-up; the ingest agent waits for it before it decodes anything, so a
schema registered before a record was published is known when the record is decoded. After that the feed keeps
following the topic, and `catch_up()` reads it to its current end on demand: the ingest agent calls it once a
batch when a record names an unknown writer, which closes the gap between a registration and the next poll.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cem.settings import Settings
from schemas.codec import SchemaRegistry
from schemas.evolution import SchemaProblem, fingerprint_of_key, writer_from_message
from schemas.internal import InternalMessageError, verify

log = logging.getLogger("cem.schemas")

POLL_MS = 200  # how long one poll waits for new registrations; also how soon a catch-up request is answered
CATCH_UP_SECONDS = 15.0
RETRY_SECONDS = 2.0
ASSIGNMENT_SECONDS = 30.0


class SchemaFeed:
    def __init__(self, settings: Settings, registry: SchemaRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.ready = asyncio.Event()
        self._consumer: Any = None
        self._partitions: list[Any] = []
        self._next: dict[Any, int] = {}  # per partition: the offset after the last message applied
        self._progress = asyncio.Condition()

    async def run(self) -> None:
        """The worker's task: read the topic to its end, set `ready`, then follow it. A failing consumer is
        restarted (reading from the beginning again: adding a known writer is a no-op); never raises."""
        while True:
            try:
                await self._start()
                follow = asyncio.ensure_future(self._follow())
                try:
                    while not self.ready.is_set():
                        if await self.catch_up(CATCH_UP_SECONDS):
                            self.ready.set()
                            log.info("schemas topic read: %d registered writer schemas",
                                     len(self.registry.registered()))
                        elif follow.done():
                            break
                        else:
                            log.warning("still reading %s before decoding records", self.settings.schemas_topic)
                    await follow
                finally:
                    follow.cancel()
            except asyncio.CancelledError:
                await self._stop()
                raise
            except Exception as exc:
                log.warning("schemas topic consumer failed, restarting: %s: %s", type(exc).__name__, exc)
            await self._stop()
            await asyncio.sleep(RETRY_SECONDS)

    async def catch_up(self, timeout: float = CATCH_UP_SECONDS) -> bool:
        """Wait until every message the topic holds now is applied. False if the feed could not get there in
        `timeout` seconds (the consumer is restarting or the broker is unreachable)."""
        consumer = self._consumer
        if consumer is None:
            return False
        try:
            ends = await asyncio.wait_for(consumer.end_offsets(self._partitions), timeout)
            async with self._progress:
                await asyncio.wait_for(self._progress.wait_for(lambda: self._reached(ends)), timeout)
        except TimeoutError:
            log.warning("the schemas topic could not be read to its end within %.0f s", timeout)
            return False
        except Exception as exc:
            log.warning("the schemas topic's end offsets are unknown: %s: %s", type(exc).__name__, exc)
            return False
        return True

    def _reached(self, ends: dict[Any, int]) -> bool:
        return all(self._next.get(tp, 0) >= end for tp, end in ends.items())

    async def _start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        from cem.kafka import kafka_client_options

        topic = self.settings.schemas_topic
        # Subscribed without a group: aiokafka assigns every partition of the topic, and with no committed
        # offsets auto_offset_reset starts each at its beginning.
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    **kafka_client_options(self.settings))
        self._consumer = consumer
        self._next = {}
        await consumer.start()
        deadline = asyncio.get_running_loop().time() + ASSIGNMENT_SECONDS
        while not consumer.assignment():
            if asyncio.get_running_loop().time() > deadline:
                raise LookupError(f"no partition of {topic} within {ASSIGNMENT_SECONDS:.0f} s; `cem worker` and "
                                  "`cem schemas register` create the topic")
            await asyncio.sleep(0.05)
        self._partitions = sorted(consumer.assignment())

    async def _stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception:
                pass

    async def _follow(self) -> None:
        """The only reader of the consumer: applies what each poll returns, then tells catch_up() waiters."""
        consumer = self._consumer
        while True:
            batch = await consumer.getmany(*self._partitions, timeout_ms=POLL_MS)
            for messages in batch.values():
                for message in messages:
                    self.apply(message.key, message.value, message.offset, message.headers)
            positions = {tp: await consumer.position(tp) for tp in self._partitions}
            async with self._progress:
                self._next = positions
                self._progress.notify_all()

    def apply(self, key: bytes | None, value: bytes | None, offset: int = -1, headers: Any = None) -> bool:
        """Add the writer one message registers. Never raises: a bad message is logged and skipped (its
        fingerprint, when the key names one, is remembered as refused for the dead letters' detail). Only
        messages signed with CEM_SECRET_KEY (by `cem schemas register`) are read."""
        try:
            if value is not None:
                verify(self.settings.signing_key, value, headers)
            writer = writer_from_message(key, value, self.registry.reader_document)
        except InternalMessageError as exc:
            log.warning("skipping %s offset %d (key %r): %s", self.settings.schemas_topic, offset,
                        (key or b"")[:40], exc.detail)
            return False
        except SchemaProblem as exc:
            fingerprint = fingerprint_of_key(key)
            if fingerprint is not None and value is not None:
                self.registry.refuse(fingerprint, str(exc))
            log.warning("skipping %s offset %d (key %r): %s", self.settings.schemas_topic, offset,
                        (key or b"")[:40], str(exc)[:300])
            return False
        except Exception as exc:  # a checker bug must not stop the worker
            log.warning("skipping %s offset %d: %s: %s", self.settings.schemas_topic, offset,
                        type(exc).__name__, str(exc)[:300])
            return False
        if self.registry.add(writer):
            log.info("writer schema %s registered", writer.fingerprint.hex())
        return True

"""The ingest stage: raw channel records -> validated events for the resolver, or dead letters.

`Ingestor` is pure apart from the clock it is handed. `IngestStage.handle` turns one batch into messages and
waits until the broker has them all; only then may the batch be acknowledged (streams.batches).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cem import metrics
from cem.config import identifier_rules
from cem.domain.front import front_partition
from cem.domain.model import Interaction, Rejection
from cem.domain.reasons import Reason
from cem.domain.validate import Limits, build_interaction, parse_event_time
from cem.settings import CHANNELS, Settings
from schemas.codec import DecodeError, SchemaRegistry, decode, new_registry
from schemas.confluent import ConfluentSchemas
from schemas.internal import encode_batch, signature_headers
from streams.deadletters import DeadLetter, dead_letter
from streams.status import WorkerStatus

log = logging.getLogger("cem.worker")

# A record whose parsing raised (a fault of the worker, not of the record) is tried again with its batch this
# many times before it is dead-lettered as `internal_error`, so a passing fault loses nothing and a record that
# always breaks the parser cannot stall its partition.
PARSE_ATTEMPTS = 4


def limits_of(settings: Settings) -> Limits:
    min_ms = parse_event_time(settings.min_event_time)
    assert min_ms is not None, "CEM_MIN_EVENT_TIME must be an ISO-8601 time"
    return Limits(
        channels=frozenset(CHANNELS),
        min_event_ms=min_ms,
        max_future_skew_ms=int(settings.max_future_skew_hours * 3_600_000),
        max_text_chars=settings.max_text_chars,
        max_identifiers=settings.max_identifiers,
        max_properties=settings.max_properties,
    )


class ParseFault(Exception):
    """The parser itself failed on a record (not a rejection of the record)."""


class Ingestor:
    """Raw bytes -> Interaction or a Rejection. Pure apart from the clock it is handed."""

    def __init__(self, settings: Settings, registry: SchemaRegistry | None = None) -> None:
        self.rules = identifier_rules(settings)
        self.limits = limits_of(settings)
        self.max_bytes = settings.max_record_bytes
        self.registry = registry  # None: the schema versions kept in schemas/ only

    def parse(self, raw: bytes | None, channel: str | None, now_ms: int) -> Interaction | Rejection:
        try:
            record = decode(raw, self.max_bytes, self.registry)
        except DecodeError as exc:
            return Rejection(exc.reason, exc.detail)
        return build_interaction(record, channel, self.rules, self.limits, now_ms)


@dataclass
class IngestBatch:
    """What one batch of raw records becomes."""

    valid: list[Interaction] = field(default_factory=list)
    sources: list[Any] = field(default_factory=list)  # the raw message of each valid event
    dead_letters: list[DeadLetter] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    faults: list[tuple[Any, Exception]] = field(default_factory=list)


def resolve_payloads(valid: list[Interaction], limit: int) -> tuple[list[bytes], list[Interaction]]:
    """The resolver messages for a batch of valid events, each at most `limit` bytes: one message in the common
    case, halves of the batch when it is larger. Events too large to travel alone are returned apart."""
    payload = encode_batch(valid)
    if len(payload) <= limit:
        return [payload], []
    if len(valid) == 1:
        return [], valid
    middle = len(valid) // 2
    first, first_apart = resolve_payloads(valid[:middle], limit)
    second, second_apart = resolve_payloads(valid[middle:], limit)
    return first + second, first_apart + second_apart


def source_of(message: Any) -> str:
    return f"{message.topic}/{message.partition}/{message.offset}"


async def _nothing_new() -> bool:
    return False


class IngestStage:
    def __init__(self, settings: Settings, resolve_topic: Any, deadletter_topic: Any,
                 status: WorkerStatus | None = None, clock: Callable[[], float] = time.time,
                 registry: SchemaRegistry | None = None,
                 catch_up: Callable[[], Awaitable[bool]] = _nothing_new,
                 delivered: Callable[[list[Interaction]], None] = lambda events: None) -> None:
        """`catch_up` reads the registered writer schemas up to now; True when it found new ones. `delivered` is
        told the valid events of every batch once they are on the broker (the identity replica's front probe)."""
        self.settings = settings
        self.confluent: ConfluentSchemas | None = None
        if settings.schema_registry_url:  # Confluent framing: writer schemas by id, from the registry
            registry = registry or new_registry()
            registry.confluent_enabled = True
            self.confluent = ConfluentSchemas(settings.schema_registry_url, settings.schema_registry_timeout_seconds)
        self.ingestor = Ingestor(settings, registry)
        self.catch_up = catch_up
        self.delivered = delivered
        self.resolve_topic = resolve_topic
        self.deadletter_topic = deadletter_topic
        self.clock = clock
        self.key = settings.signing_key
        self.status = status or WorkerStatus()

    def classify(self, messages: list[Any], now_ms: int, last_attempt: bool) -> IngestBatch:
        batch = IngestBatch()
        limit = self.settings.message_max_bytes
        for message in messages:
            channel = message.topic.rsplit(".", 1)[-1]
            try:
                parsed = self.ingestor.parse(message.value, channel if channel in CHANNELS else None, now_ms)
            except Exception as exc:  # a fault of ours: retried with the batch, dead-lettered when it persists
                if not last_attempt:
                    batch.faults.append((message, exc))
                    continue
                parsed = Rejection(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {str(exc)[:200]}")
            if isinstance(parsed, Rejection):
                batch.reasons.append(parsed.reason)
                batch.dead_letters.append(
                    dead_letter(source_of(message), message.value, parsed.reason, parsed.detail, now_ms, limit))
            else:
                batch.valid.append(parsed)
                batch.sources.append(message)
        return batch

    async def handle(self, events: list[Any]) -> None:
        """Classify the batch and put everything it became on the broker; raises (so the runner retries the
        whole batch) on any failure. Counters move only once the batch is done."""
        messages = [event.message for event in events]
        if self.confluent is not None and self.ingestor.registry is not None:
            # Raises while the registry is unavailable: the batch is retried, never dead-lettered for an outage.
            await self.confluent.resolve([m.value for m in messages], self.ingestor.registry, self.clock())
        schemas_read = False
        for attempt in range(PARSE_ATTEMPTS):
            batch = self.classify(messages, int(self.clock() * 1000), last_attempt=attempt == PARSE_ATTEMPTS - 1)
            if Reason.UNKNOWN_SCHEMA in batch.reasons and not schemas_read:
                # Its writer may have been registered after the schema feed's last poll: read up to now, again.
                schemas_read = True
                if await self.catch_up():
                    batch = self.classify(messages, int(self.clock() * 1000),
                                          last_attempt=attempt == PARSE_ATTEMPTS - 1)
            if not batch.faults:
                break
            message, exc = batch.faults[0]
            metrics.STAGE_FAILURES.labels("ingest", type(exc).__name__).inc()
            log.warning("ingest: parsing %s raised %s: %s; retrying the batch", source_of(message),
                        type(exc).__name__, str(exc)[:200])
            await asyncio.sleep(0.1 * 2 ** attempt)
        await self._deliver(batch)
        self.delivered(batch.valid)
        for message in messages:
            metrics.EVENTS_IN.labels(message.topic.rsplit(".", 1)[-1]).inc()
        for reason in batch.reasons:
            metrics.DEADLETTERED.labels(reason).inc()
        self.status.consumed += len(messages)
        self.status.deadlettered += len(batch.reasons)

    async def _deliver(self, batch: IngestBatch) -> None:
        deliveries = [await self._send_dead_letter(letter) for letter in batch.dead_letters]
        if batch.valid:
            payloads: list[tuple[int | None, bytes]] = []
            too_large: list[Interaction] = []
            for partition, events in self._by_front(batch.valid):
                fitting, too_big = resolve_payloads(events, self.settings.message_max_bytes)
                payloads.extend((partition, payload) for payload in fitting)
                too_large.extend(too_big)
            for partition, payload in payloads:
                deliveries.append(await self.resolve_topic.send(
                    key=b"batch", value=payload, headers=signature_headers(self.key, payload),
                    **({} if partition is None else {"partition": partition})))
            now_ms = int(self.clock() * 1000)
            for oversized in too_large:
                source = batch.sources[next(i for i, v in enumerate(batch.valid) if v is oversized)]
                detail = ("the normalised event exceeds the resolver message limit "
                          f"({self.settings.message_max_bytes} bytes)")
                batch.reasons.append(Reason.TOO_LARGE)
                letter = dead_letter(source_of(source), source.value, Reason.TOO_LARGE, detail, now_ms,
                                     self.settings.message_max_bytes)
                deliveries.append(await self._send_dead_letter(letter))
        # The batch may be acknowledged only once everything it became is on the broker.
        await asyncio.gather(*deliveries)

    def _by_front(self, events: list[Interaction]) -> list[tuple[int | None, list[Interaction]]]:
        """The single resolver reads one partition; the partitioned one's fronts each read the ids that hash to
        them (CEM_SPLIT_PARTITIONS)."""
        partitions = self.settings.split_partitions
        if not partitions:
            return [(None, events)]
        groups: dict[int, list[Interaction]] = {}
        for event in events:
            groups.setdefault(front_partition(event.event_id, partitions), []).append(event)
        return sorted(groups.items())

    async def _send_dead_letter(self, letter: DeadLetter) -> Any:
        return await self.deadletter_topic.send(key=letter.key, value=letter.value, headers=letter.headers)

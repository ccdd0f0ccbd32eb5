"""The Faust app: two thin agents around the pure core.

    cem.raw.<channel> --ingest--> cem.resolve (1 partition) --resolve--> ClickHouse
           \\--> cem.deadletter

`ingest` is stateless (decode, validate, normalise, enrich), so it scales with the raw topics' partitions. It
forwards each batch of valid events as ONE message, so the second Kafka hop costs one Faust loop turn per
batch, not per event. `resolve` owns the single resolver partition: deduplication and identity stitching need
one authority for the whole keyspace to give the same answer with 1 or N workers (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import faust
import orjson
from prometheus_client import generate_latest

from cem.config import identifier_rules, resolver_config
from cem.domain.model import Interaction, Rejection
from cem.domain.resolver import Effects, Resolver
from cem.domain.validate import Limits, build_interaction, parse_event_time
from cem.settings import CHANNELS, Settings
from schemas.codec import DecodeError, decode
from sinks.clickhouse import (
    TABLE_ORDER,
    Warehouse,
    apply_erasure,
    connect,
    effect_columns,
    load_snapshot,
    migrate,
    value_hash,
)
from streams import metrics

log = logging.getLogger("cem.worker")


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


class Ingestor:
    """Raw bytes -> Interaction or a dead letter. Pure apart from the clock it is handed."""

    def __init__(self, settings: Settings) -> None:
        self.rules = identifier_rules(settings)
        self.limits = limits_of(settings)
        self.max_bytes = settings.max_record_bytes

    def parse(self, raw: bytes | None, channel: str | None, now_ms: int) -> Interaction | Rejection:
        try:
            record = decode(raw, self.max_bytes)
        except DecodeError as exc:
            return Rejection(exc.reason, exc.detail)
        try:
            return build_interaction(record, channel, self.rules, self.limits, now_ms)
        except Exception as exc:  # a validator bug must not lose the record: dead-letter it with the cause
            return Rejection("internal_error", f"{type(exc).__name__}: {str(exc)[:200]}")


class ResolverSink:
    """The resolver and its warehouse. Quixstreams-style: process() collects, flush() writes; the caller acks
    Kafka only after flush() returned, and flush() returns only once everything is written."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.config = resolver_config(settings)
        self.clock = clock
        self.warehouse: Warehouse | None = None
        self.resolver: Resolver | None = None

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _ensure_warehouse(self) -> Warehouse:
        if self.warehouse is None:
            self.warehouse = connect(self.settings.clickhouse_url)
            migrate(self.warehouse)
        return self.warehouse

    def invalidate(self) -> None:
        """Another worker may write while we do not own the resolver partition: rebuild before the next batch."""
        self.resolver = None

    def _ensure_resolver(self) -> Resolver:
        if self.resolver is None:
            started = time.perf_counter()
            warehouse = self._ensure_warehouse()
            resolver = Resolver(self.config)
            resolver.restore(load_snapshot(warehouse, self._now_ms() - self.config.dedup_window_ms))
            self.resolver = resolver
            metrics.STATE_RESTORE_SECONDS.set(time.perf_counter() - started)
        return self.resolver

    def process_and_write(self, events: list[Interaction]) -> Effects:
        """Blocking: runs in a worker thread. Retries the write until it lands."""
        delay = 0.2
        while True:
            try:
                resolver = self._ensure_resolver()
                break
            except Exception as exc:
                self._failed(exc)
                time.sleep(delay)
                delay = min(delay * 2, self.settings.sink_retry_max_seconds)
        now_ms = self._now_ms()
        effects = resolver.process(events, now_ms)
        tables = effect_columns(effects, now_ms, self.config.fcr_window_ms)
        metrics.SINK_PENDING_EVENTS.set(len(events))
        written: set[str] = set()
        while True:
            try:
                started = time.perf_counter()
                warehouse = self._ensure_warehouse()
                for table in TABLE_ORDER:
                    if table in tables and table not in written:
                        warehouse.insert(table, tables[table])
                        written.add(table)
                metrics.SINK_BATCH_SECONDS.observe(time.perf_counter() - started)
                break
            except Exception as exc:
                self._failed(exc)
                time.sleep(delay)
                delay = min(delay * 2, self.settings.sink_retry_max_seconds)
        metrics.SINK_UP.set(1)
        metrics.SINK_PENDING_EVENTS.set(0)
        for table, columns in tables.items():
            metrics.ROWS_WRITTEN.labels(table).inc(len(next(iter(columns.values()))))
        self._count(effects, len(events))
        return effects

    def apply_control(self, message: dict[str, Any]) -> None:
        """Blocking. Today the one control is "forget" (GDPR erasure); retried until it is applied."""
        if message.get("control") != "forget":
            log.warning("ignoring unknown control message %r", message.get("control"))
            return
        delay = 0.2
        while True:
            try:
                resolver = self._ensure_resolver()
                warehouse = self._ensure_warehouse()
                erasure = resolver.forget((str(message["id_type"]), str(message["value"])))
                anonymised = apply_erasure(warehouse, erasure)
                warehouse.insert("erasure_log", {
                    "request_id": [str(message["request_id"])],
                    "id_type": [str(message["id_type"])],
                    "value_hash": [value_hash(str(message["value"]))],
                    "customer_id": [erasure.customer_id],
                    "identifiers_removed": [len(erasure.identifiers)],
                    "events_anonymised": [anonymised],
                    "requested_ms": [int(message.get("requested_ms", 0))],
                    "completed_ms": [self._now_ms()],
                })
                metrics.ERASURES.inc()
                return
            except Exception as exc:
                # The graph may already be forgotten: rebuild from the warehouse so the retry sees the truth.
                self.invalidate()
                self._failed(exc)
                time.sleep(delay)
                delay = min(delay * 2, self.settings.sink_retry_max_seconds)

    def _failed(self, exc: Exception) -> None:
        metrics.SINK_FAILURES.inc()
        metrics.SINK_UP.set(0)
        log.warning("ClickHouse write failed, retrying: %s: %s", type(exc).__name__, str(exc)[:300])
        if self.warehouse is not None:
            try:
                self.warehouse.close()
            except Exception:
                pass
            self.warehouse = None

    @staticmethod
    def _count(effects: Effects, n_events: int) -> None:
        metrics.EVENTS_RESOLVED.inc(n_events)
        metrics.DUPLICATES.inc(effects.duplicates)
        metrics.CONFLICTS.inc(effects.conflicts)
        metrics.MERGES.inc(len(effects.merges))
        metrics.RECOMPUTES.inc(effects.recomputes)
        for refusal in effects.refused:
            metrics.REFUSED_MERGES.labels(refusal.reason).inc()
        for ident, _reason in effects.unlinked:
            metrics.UNLINKED.labels(ident[0]).inc()


def kafka_credentials(settings: Settings) -> Any:
    if settings.kafka_sasl_mechanism:
        ssl_context = None
        if settings.kafka_security_protocol.upper().startswith("SASL_SSL"):
            import ssl

            ssl_context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    if settings.kafka_security_protocol.upper() == "SSL":
        import ssl

        return faust.SSLCredentials(ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None))
    return None


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker="kafka://" + ";".join(settings.kafka_bootstrap.split(",")),
        broker_credentials=kafka_credentials(settings),
        store="memory://",
        datadir=settings.state_dir,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.heartbeat_interval_seconds,
        broker_commit_interval=1.0,
        web_enabled=True,
        web_host="0.0.0.0",
        web_port=settings.web_port,
        web_in_thread=False,
    )
    raw_topics = app.topic(*settings.raw_topics, key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw")
    resolve_topic = app.topic(settings.resolve_topic, partitions=1, key_serializer="raw", value_serializer="raw")
    deadletter_topic = app.topic(settings.deadletter_topic, key_serializer="raw", value_serializer="raw")
    ingestor = Ingestor(settings)
    sink = ResolverSink(settings)
    status = {"consumed": 0, "deadlettered": 0, "resolved": 0, "written": 0}

    @app.agent(raw_topics)
    async def ingest(stream: Any) -> None:
        async for events in stream.take_events(settings.ingest_batch_max, within=settings.ingest_batch_seconds):
            now_ms = int(time.time() * 1000)
            valid: list[Interaction] = []
            deliveries = []
            for event in events:
                message = event.message
                channel = message.topic.rsplit(".", 1)[-1]
                metrics.EVENTS_IN.labels(channel).inc()
                parsed = ingestor.parse(message.value, channel if channel in CHANNELS else None, now_ms)
                if isinstance(parsed, Rejection):
                    metrics.DEADLETTERED.labels(parsed.reason).inc()
                    deliveries.append(await _dead_letter(deadletter_topic, message, parsed, now_ms))
                else:
                    valid.append(parsed)
            if valid:
                payload = orjson.dumps([v.to_wire() for v in valid])
                deliveries.append(await resolve_topic.send(key=b"batch", value=payload))
            # Ack the raw records only once what they became is on the broker.
            await asyncio.gather(*deliveries)
            status["consumed"] += len(events)
            status["deadlettered"] += len(events) - len(valid)

    flush_messages = max(1, settings.sink_batch_max // max(1, settings.ingest_batch_max))

    @app.agent(resolve_topic)
    async def resolve(stream: Any) -> None:
        loop = asyncio.get_running_loop()

        async def write(events: list[Interaction]) -> None:
            # ClickHouse calls block; a thread keeps heartbeats and the web server alive during an outage.
            effects = await loop.run_in_executor(None, sink.process_and_write, events)
            status["resolved"] += len(events)
            status["written"] += len(effects.interactions)

        async for batch in stream.take(flush_messages, within=settings.sink_flush_seconds):
            events: list[Interaction] = []
            for payload in batch:
                message = orjson.loads(payload)
                if isinstance(message, dict):  # a control message (cem forget): applied in stream order
                    if events:
                        await write(events)
                        events = []
                    await loop.run_in_executor(None, sink.apply_control, message)
                else:
                    events.extend(Interaction.from_wire(row) for row in message)
            if events:
                await write(events)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        if any(tp.topic == settings.resolve_topic for tp in revoked):
            sink.invalidate()

    @app.timer(interval=5.0)
    async def export_lag() -> None:
        consumer: Any = app.consumer
        for tp in consumer.assignment():
            try:
                highwater = consumer.highwater(tp)
                committed = consumer._committed_offset.get(tp)  # Faust keeps the last committed message offset
            except Exception:
                continue
            if highwater is not None:
                lag = highwater - (committed + 1 if committed is not None else 0)
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, lag))

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(metrics.REGISTRY), content_type="text/plain; version=0.0.4")

    @app.page("/status")
    async def status_page(web: Any, request: Any) -> Any:
        return web.json(status)

    return app


async def _dead_letter(topic: Any, message: Any, rejection: Rejection, now_ms: int) -> Any:
    """The original bytes, untouched, with the reason and the source coordinates in headers (as Kafka Connect
    does). The key names the source record, so a replayed dead letter is recognisably the same one."""
    source = f"{message.topic}/{message.partition}/{message.offset}"
    headers = [
        ("cem.reason", rejection.reason.encode()),
        ("cem.detail", rejection.detail.encode("utf-8", "replace")),
        ("cem.source", source.encode()),
        ("cem.failed_at_ms", str(now_ms).encode()),
    ]
    return await topic.send(key=source.encode(), value=message.value or b"", headers=headers)

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
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from prometheus_client import generate_latest

from cem.config import identifier_rules, resolver_config
from cem.domain.model import Interaction, Rejection
from cem.domain.resolver import Effects, ResolvedInteraction, Resolver
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

# Loggers whose DEBUG lines print whole Kafka messages (keys, values: identifiers of customers). They stay at INFO
# whatever CEM_LOG_LEVEL says, so no log level ever writes an email or a phone number to the worker's log.
PAYLOAD_LOGGERS = ("faust.topics", "faust.transport.drivers.aiokafka", "aiokafka.producer.producer",
                   "aiokafka.consumer.fetcher")


def quiet_payload_loggers() -> None:
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger(name).getEffectiveLevel()))


# A resolver stuck on a failing warehouse while the consumer group waits for it to give up its partitions exits
# after this long, well inside Faust's broker_rebalance_timeout (60 s). Otherwise the group would drop it after
# the timeout, hand the resolver partition to another worker, and the stuck one, still holding its batch, would
# write it too once ClickHouse is back: a zombie writer. Dying is the crash path, which is proven safe.
REBALANCE_GIVE_UP_SECONDS = 20.0
EXIT_STUCK_IN_REBALANCE = 75

# A resolver message stays under Faust's producer_max_request_size (1,000,000) and Kafka's default
# message.max.bytes (1 MiB); larger ingest batches are split, and one event too large alone is dead-lettered.
RESOLVE_MESSAGE_MAX_BYTES = 900_000

# ClickHouse error codes that refuse the data of one insert (a value, a type, a constraint), as opposed to a
# server that is unavailable, overloaded or misconfigured. Only these are isolated row by row and dead-lettered
# (`warehouse_rejected`); every other failure is retried with backoff, so nothing valid is ever dropped because
# the warehouse was unwell.
DATA_REJECTION_CODES = frozenset({
    6,    # CANNOT_PARSE_TEXT
    19,   # SIZE_OF_FIXED_STRING_DOESNT_MATCH
    26,   # CANNOT_PARSE_QUOTED_STRING
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH, also clickhouse-driver's client-side check of a value against the column type
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    190,  # SIZES_OF_ARRAYS_DOESNT_MATCH
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    395,  # FUNCTION_THROW_IF_VALUE_IS_NON_ZERO: a throwIf guard in a column DEFAULT (how 18.16 spells CHECK)
    469,  # VIOLATED_CONSTRAINT: a CHECK constraint (current ClickHouse)
})
_ERROR_CODE = re.compile(r"^\s*Code:\s*(\d+)")
# When this many rows were refused one by one and not a single row was accepted, the table refuses everything
# (a schema change, a guard that is too strict): that is an outage to fix, not data to dead-letter.
REFUSED_ALL_AFTER = 8


class WarehouseRefusesEverything(Exception):
    """interaction_log refuses every row tried: retried with backoff like an outage, nothing is dead-lettered."""


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code of an exception: clickhouse-driver's `.code`, or chdb's "Code: N." text."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    match = _ERROR_CODE.match(str(exc))
    return int(match.group(1)) if match else None


def is_rejection(exc: BaseException) -> bool:
    """True when ClickHouse refused the data itself; retrying the same rows would fail the same way."""
    return error_code(exc) in DATA_REJECTION_CODES


def describe_error(exc: BaseException) -> str:
    """A one-line description for logs: the exception type and code, and the server's first line unless the
    data was refused (a refusal may quote the offending value, which can be an identifier)."""
    code = error_code(exc)
    if code in DATA_REJECTION_CODES:
        return f"{type(exc).__name__} code {code} (data refused)"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:2]).split(" Stack trace:")[0]
    return f"{type(exc).__name__}: {text[:300]}"


def rejection_detail(exc: BaseException) -> str:
    """The cem.detail header of a warehouse_rejected dead letter: the server's reason, without its stack."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2]).split(" Stack trace:")[0][:500]


@dataclass(frozen=True)
class SinkResult:
    """What one resolver batch became: its effects, the interaction rows written, and the events ClickHouse
    refused (with the server's reason), for the dead-letter topic."""

    effects: Effects
    written: int
    refused: list[tuple[Interaction, str]] = field(default_factory=list)


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
        self.rebalance_pending: Callable[[], bool] = lambda: False  # set by create_app: the group waits on us
        self._stuck_since: float | None = None

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

    def process_and_write(self, events: list[Interaction]) -> SinkResult:
        """Blocking: runs in a worker thread. Returns once every row of the batch is written, or refused by
        ClickHouse (those events are returned for the dead-letter topic), retrying with backoff meanwhile.

        A failed attempt is never re-sent as it was: an insert that failed may still have landed (the server
        committed it and the reply was lost), and the attempt may have stopped between two tables. The resolver
        is rebuilt from the warehouse and the batch processed again, exactly as after a crash, so rows that
        landed are recognised as duplicates and only the missing ones are written."""
        delay = 0.2
        while True:
            try:
                resolver = self._ensure_resolver()
            except Exception as exc:
                delay = self._back_off(exc, delay, rebuild=False)
                continue
            now_ms = self._now_ms()
            effects = resolver.process(events, now_ms)
            metrics.SINK_PENDING_EVENTS.set(len(events))
            try:
                result = self._write(effects, now_ms)
                break
            except Exception as exc:
                delay = self._back_off(exc, delay, rebuild=True)
        self._stuck_since = None
        metrics.SINK_UP.set(1)
        metrics.SINK_PENDING_EVENTS.set(0)
        self._count(effects, len(events))
        return result

    def _give_up_if_the_group_waits(self) -> None:
        """Exit the process when a rebalance has been waiting on this failing batch for too long (see
        REBALANCE_GIVE_UP_SECONDS). Nothing of the batch is committed; whoever takes the partition replays it."""
        if not self.rebalance_pending():
            self._stuck_since = None
            return
        now = time.monotonic()
        if self._stuck_since is None:
            self._stuck_since = now
        elif now - self._stuck_since > REBALANCE_GIVE_UP_SECONDS:
            log.error("a rebalance has waited %.0f s for a batch ClickHouse keeps failing; exiting (code %d) so "
                      "that no later write can race the worker taking over", now - self._stuck_since,
                      EXIT_STUCK_IN_REBALANCE)
            logging.shutdown()
            os._exit(EXIT_STUCK_IN_REBALANCE)

    def _write(self, effects: Effects, now_ms: int) -> SinkResult:
        tables = effect_columns(effects, now_ms, self.config.fcr_window_ms)
        warehouse = self._ensure_warehouse()
        started = time.perf_counter()
        refused: list[tuple[Interaction, str]] = []
        for table in TABLE_ORDER:
            columns = tables.get(table)
            if columns is None:
                continue
            try:
                warehouse.insert(table, columns)
            except Exception as exc:
                if table != "interaction_log" or not is_rejection(exc):
                    raise
                refused = self._isolate(warehouse, effects, columns, exc)
            else:
                metrics.ROWS_WRITTEN.labels(table).inc(_row_count(columns))
        metrics.SINK_BATCH_SECONDS.observe(time.perf_counter() - started)
        return SinkResult(effects, len(effects.interactions) - len(refused), refused)

    def _isolate(self, warehouse: Warehouse, effects: Effects, columns: dict[str, list[Any]],
                 error: Exception) -> list[tuple[Interaction, str]]:
        """ClickHouse refused the batch's interaction rows: bisect them, writing every accepted half as it goes,
        until the refused rows are single. Then repair: the resolver is rebuilt from the warehouse (which holds
        no row of the refused events) and the journeys and sessions they touched are written again from it, so
        neither the resolver's state nor any view counts them. Only this slow path does per-row work."""
        total = _row_count(columns)
        refused: list[tuple[int, str]] = []
        accepted = 0
        pending: list[tuple[int, int, Exception]] = [(0, total, error)]
        while pending:
            low, high, exc = pending.pop()
            if high - low == 1:
                refused.append((low, rejection_detail(exc)))
                if not accepted and len(refused) >= REFUSED_ALL_AFTER:
                    raise WarehouseRefusesEverything(
                        f"interaction_log refused each of {len(refused)} rows tried alone and accepted none "
                        f"(code {error_code(exc)})")
                continue
            middle = (low + high) // 2
            for a, b in ((middle, high), (low, middle)):
                try:
                    warehouse.insert("interaction_log", {name: values[a:b] for name, values in columns.items()})
                    metrics.ROWS_WRITTEN.labels("interaction_log").inc(b - a)
                    accepted += b - a
                except Exception as sub:
                    if not is_rejection(sub):
                        raise
                    pending.append((a, b, sub))
        refused.sort()
        log.warning("ClickHouse refused %d of %d interaction rows (code %s); they go to the dead-letter topic "
                    "as warehouse_rejected", len(refused), total, error_code(error))
        rows = [effects.interactions[i] for i, _ in refused]
        self._rewrite_touched(rows, effects.version)
        return [(row.interaction, detail) for row, (_, detail) in zip(rows, refused, strict=True)]

    def _rewrite_touched(self, rows: list[ResolvedInteraction], after_version: int) -> None:
        """Rebuild the resolver from the warehouse and write the current state of the journeys and sessions that
        `rows` (refused events) had touched, with a newer version than the batch's."""
        self.invalidate()
        resolver = self._ensure_resolver()
        now_ms = self._now_ms()
        resolver.version = max(resolver.version + 1, after_version + 1, now_ms * 1000)
        repair = Effects(resolver.version)
        for issue_ref in {r.interaction.issue_ref for r in rows if r.interaction.issue_ref}:
            journey = resolver.journeys.get(issue_ref)
            if journey is not None:
                repair.journeys[journey.journey_id] = journey
        session_ids = {r.session_id for r in rows if r.session_id}
        if session_ids:
            for sessions in resolver.sessions.by_customer.values():
                for session in sessions:
                    if session.session_id in session_ids or session_ids.intersection(session.members):
                        repair.sessions[session.session_id] = session
        journeys = effect_columns(repair, now_ms, self.config.fcr_window_ms).get("journey_log")
        if journeys is not None:
            self._ensure_warehouse().insert("journey_log", journeys)
            metrics.ROWS_WRITTEN.labels("journey_log").inc(_row_count(journeys))

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
                self._stuck_since = None
                return
            except Exception as exc:
                # The graph may already be forgotten: rebuild from the warehouse so the retry sees the truth.
                delay = self._back_off(exc, delay, rebuild=True)

    def _back_off(self, exc: Exception, delay: float, rebuild: bool) -> float:
        """One failed attempt: count it, drop the connection (and the state, when it may be stale), exit if a
        rebalance waits on us, sleep. Returns the next delay."""
        if rebuild:
            self.invalidate()
        self._failed(exc)
        self._give_up_if_the_group_waits()
        time.sleep(delay)
        return min(delay * 2, self.settings.sink_retry_max_seconds)

    def _failed(self, exc: Exception) -> None:
        metrics.SINK_FAILURES.inc()
        metrics.SINK_UP.set(0)
        log.warning("ClickHouse write failed, retrying: %s", describe_error(exc))
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
        for found in effects.shared:
            metrics.SHARED_IDENTIFIERS.labels(found.id_type).inc()


def _row_count(columns: dict[str, list[Any]]) -> int:
    return len(next(iter(columns.values())))


def resolve_payloads(valid: list[Interaction], limit: int = RESOLVE_MESSAGE_MAX_BYTES
                     ) -> tuple[list[bytes], list[Interaction]]:
    """The resolver messages for a batch of valid events, each at most `limit` bytes: one message in the common
    case, halves of the batch when it is larger. Events too large to travel alone are returned apart."""
    payload = orjson.dumps([v.to_wire() for v in valid])
    if len(payload) <= limit:
        return [payload], []
    if len(valid) == 1:
        return [], valid
    middle = len(valid) // 2
    first, first_apart = resolve_payloads(valid[:middle], limit)
    second, second_apart = resolve_payloads(valid[middle:], limit)
    return first + second, first_apart + second_apart


def contract_record(event: Interaction) -> dict[str, Any]:
    """An event in the input contract's JSON shape (normalised identifiers, epoch-millisecond time): what a
    warehouse_rejected dead letter carries, so it can be published again once the cause is fixed."""
    record: dict[str, Any] = {
        "event_id": event.event_id,
        "channel": event.channel,
        "type": event.type,
        "occurred_at": event.occurred_ms,
        "identifiers": dict(event.identifiers),
        "properties": event.properties,
    }
    if event.text is not None:
        record["text"] = event.text
    if event.issue_ref is not None:
        record["issue_ref"] = event.issue_ref
    if event.survey_kind is not None:
        record["survey"] = {"kind": event.survey_kind, "score": event.survey_score}
    return record


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


def faust_app(settings: Settings, web: bool) -> faust.App:
    """The Faust app every cem worker runs, and the bench's bare-Faust ceiling too: one configuration for both."""
    return faust.App(
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
        web_enabled=web,
        web_host="0.0.0.0",
        web_port=settings.web_port,
        web_in_thread=False,
    )


def create_app(settings: Settings) -> faust.App:
    quiet_payload_loggers()
    app = faust_app(settings, web=True)
    raw_topics = app.topic(*settings.raw_topics, key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw")
    resolve_topic = app.topic(settings.resolve_topic, partitions=1, key_serializer="raw", value_serializer="raw")
    deadletter_topic = app.topic(settings.deadletter_topic, key_serializer="raw", value_serializer="raw")
    ingestor = Ingestor(settings)
    sink = ResolverSink(settings)
    sink.rebalance_pending = lambda: bool(app.rebalancing)
    status = {"consumed": 0, "deadlettered": 0, "resolved": 0, "written": 0, "warehouse_rejected": 0}

    @app.agent(raw_topics)
    async def ingest(stream: Any) -> None:
        async for events in stream.take_events(settings.ingest_batch_max, within=settings.ingest_batch_seconds):
            now_ms = int(time.time() * 1000)
            valid: list[Interaction] = []
            valid_messages: list[Any] = []  # the raw message of each valid event, for the rare too_large case
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
                    valid_messages.append(message)
            if valid:
                payloads, too_large = resolve_payloads(valid)
                for payload in payloads:
                    deliveries.append(await resolve_topic.send(key=b"batch", value=payload))
                for oversized in too_large:
                    rejection = Rejection("too_large", "the normalised event exceeds the resolver message limit "
                                                       f"({RESOLVE_MESSAGE_MAX_BYTES} bytes)")
                    metrics.DEADLETTERED.labels(rejection.reason).inc()
                    source = valid_messages[next(i for i, v in enumerate(valid) if v is oversized)]
                    deliveries.append(await _dead_letter(deadletter_topic, source, rejection, now_ms))
                valid_count = len(valid) - len(too_large)
            else:
                valid_count = 0
            # Ack the raw records only once what they became is on the broker.
            await asyncio.gather(*deliveries)
            status["consumed"] += len(events)
            status["deadlettered"] += len(events) - valid_count

    flush_messages = max(1, settings.sink_batch_max // max(1, settings.ingest_batch_max))

    @app.agent(resolve_topic)
    async def resolve(stream: Any) -> None:
        loop = asyncio.get_running_loop()

        async def write(events: list[Interaction]) -> None:
            # ClickHouse calls block; a thread keeps heartbeats and the web server alive during an outage.
            result = await loop.run_in_executor(None, sink.process_and_write, events)
            if result.refused:
                # Acked with the batch only once on the broker; a replay refuses and dead-letters them again,
                # under the same key (deduplicate by key).
                now_ms = int(time.time() * 1000)
                await asyncio.gather(*[
                    await _dead_letter_refused(deadletter_topic, settings, event, detail, now_ms)
                    for event, detail in result.refused])
                metrics.DEADLETTERED.labels("warehouse_rejected").inc(len(result.refused))
            status["resolved"] += len(events)
            status["written"] += result.written
            status["warehouse_rejected"] += len(result.refused)

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


async def _dead_letter_refused(topic: Any, settings: Settings, event: Interaction, detail: str, now_ms: int) -> Any:
    """An event ClickHouse refused: the value is the event in the input contract's JSON shape (the raw bytes are
    not kept past ingest), publishable again to its raw topic once the cause is fixed. The key and cem.source
    name the event itself (`<prefix>.resolve#<event_id>`): identical on every replay and re-send, and unique
    per event, so consumers deduplicate by key."""
    source = f"{settings.resolve_topic}#{event.event_id}"
    headers = [
        ("cem.reason", b"warehouse_rejected"),
        ("cem.detail", detail.encode("utf-8", "replace")),
        ("cem.source", source.encode()),
        ("cem.failed_at_ms", str(now_ms).encode()),
    ]
    return await topic.send(key=source.encode(), value=orjson.dumps(contract_record(event)), headers=headers)

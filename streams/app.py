r"""The worker's composition root: the Faust app, its topics, stages, agents, timers and pages, wired in one place.

    cem.raw.<channel> --ingest--> cem.resolve (1 partition) --resolve--> ClickHouse
           \--> cem.deadletter        ^-- control <-- cem.control (signed erasure requests)

The agents (streams.agents) are thin loops over their stages: streams.ingest (stateless: decode, validate,
normalise, enrich; it scales with the raw topics' partitions and forwards each batch as one signed message),
streams.resolve (the single resolver partition: deduplication and identity stitching need one authority over the
whole keyspace to give the same answer with 1 or N workers, docs/architecture.md) and streams.control.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from prometheus_client import generate_latest

from cem.config import resolver_config
from cem.domain.erasure import ErasureRequest, InvalidRequest
from cem.domain.journeys import REMOVED, JourneyAlias
from cem.domain.model import Interaction
from cem.domain.resolver import Effects, ResolvedInteraction, Resolver
from cem.settings import Settings
from schemas.codec import new_registry
from sinks.clickhouse import (
    TABLE_ORDER,
    Warehouse,
    connect,
    effect_columns,
    load_snapshot,
    migrate,
)
from sinks.erasure import ErasureOutcome, erase, erasure_key
from streams import agents, metrics
from streams.batches import Stopping
from streams.control import ControlStage
from streams.ingest import Ingestor, IngestStage, limits_of  # noqa: F401  (Ingestor, limits_of: importable here)
from streams.purge import purge_consumed
from streams.resolve import ResolveStage
from streams.schema_feed import SchemaFeed
from streams.stages import Stages
from streams.status import WorkerStatus
from streams.watchdog import watch_event_loop

log = logging.getLogger("cem.worker")

# Loggers whose DEBUG lines print whole Kafka messages (keys, values: identifiers of customers). They stay at INFO
# whatever CEM_LOG_LEVEL says, so no log level ever writes an email or a phone number to the worker's log.
PAYLOAD_LOGGERS = ("faust.topics", "faust.transport.drivers.aiokafka", "aiokafka.producer.producer",
                   "aiokafka.consumer.fetcher", "clickhouse_driver")  # clickhouse_driver: every query at DEBUG


def quiet_payload_loggers() -> None:
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger(name).getEffectiveLevel()))


# A resolver stuck on a failing warehouse while the consumer group waits for it to give up its partitions exits
# after this long, well inside Faust's broker_rebalance_timeout (60 s). Otherwise the group would drop it after
# the timeout, hand the resolver partition to another worker, and the stuck one, still holding its batch, would
# write it too once ClickHouse is back: a zombie writer. Dying is the crash path, which is proven safe.
REBALANCE_GIVE_UP_SECONDS = 20.0
EXIT_STUCK_IN_REBALANCE = 75

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
        self.stopping = threading.Event()  # set when the worker stops: retry loops give their batch up
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
            try:
                effects = resolver.process(events, now_ms)
            except Exception as exc:  # a fault of the resolver: its state may be half-updated, rebuild it
                delay = self._back_off(exc, delay, rebuild=True, where="resolver")
                continue
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
        journey_ids = {r.journey_id for r in rows if r.journey_id}
        if journey_ids:
            for journey in resolver.journeys.containing(journey_ids):
                repair.journeys[journey.journey_id] = journey
                journey_ids.difference_update((journey.journey_id, *journey.members))
            # Journeys only refused events had: marked removed, so the journeys view no longer counts them.
            repair.journey_aliases = [JourneyAlias(journey_id, REMOVED, issue_ref) for journey_id, issue_ref in
                                      sorted({(r.journey_id, r.interaction.issue_ref or "") for r in rows
                                              if r.journey_id in journey_ids})]
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

    def apply_control(self, message: dict[str, Any]) -> ErasureOutcome | None:
        """Blocking. Today the one control is "forget" (GDPR erasure); retried until it is applied."""
        if message.get("control") != "forget":
            log.warning("ignoring unknown control message %r", message.get("control"))
            return None
        try:
            request = ErasureRequest.from_message(message)
        except InvalidRequest as exc:
            log.warning("ignoring an erasure request: %s", exc)
            return None
        key = erasure_key(self.settings)
        delay = 0.2
        while True:
            try:
                resolver = self._ensure_resolver()
                warehouse = self._ensure_warehouse()
                outcome = erase(resolver, warehouse, request, key, self._now_ms(),
                                max_customers=self.settings.erasure_max_customers,
                                fcr_window_ms=self.config.fcr_window_ms)
                metrics.ERASURES.inc()
                self._stuck_since = None
                return outcome
            except Exception as exc:
                # The graph may already be forgotten: rebuild from the warehouse so the retry sees the truth.
                delay = self._back_off(exc, delay, rebuild=True)

    def _back_off(self, exc: Exception, delay: float, rebuild: bool, where: str = "ClickHouse write") -> float:
        """One failed attempt: count it, drop the connection (and the state, when it may be stale), exit if a
        rebalance waits on us, sleep; give up the batch when the worker is stopping. Returns the next delay."""
        if rebuild:
            self.invalidate()
        self._failed(exc, where)
        self._give_up_if_the_group_waits()
        if self.stopping.wait(delay):
            raise Stopping() from exc
        return min(delay * 2, self.settings.sink_retry_max_seconds)

    def _failed(self, exc: Exception, where: str = "ClickHouse write") -> None:
        metrics.SINK_FAILURES.inc()
        metrics.SINK_UP.set(0)
        log.warning("%s failed, retrying: %s", where, describe_error(exc))
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


def faust_app(settings: Settings, web: bool, app_class: type[faust.App] = faust.App) -> Any:
    """The Faust app every cem worker runs, and the bench's bare-Faust ceiling too: one configuration for both."""
    return app_class(
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
        web_bind=settings.web_host,
        producer_max_request_size=settings.producer_max_request_bytes,
        web_port=settings.web_port,
        web_in_thread=False,
    )


class CemApp(faust.App):
    """The Faust app with the worker's stages on it: the agents (streams.agents) find them through their stream."""

    stages: Stages


def create_app(settings: Settings, stopping: threading.Event | None = None) -> CemApp:
    """The worker's app: topics, stages, agents, timers and pages, wired once. `stopping` is set when the worker
    is asked to stop (cem.cli.run_worker does it on SIGTERM): from then on every stage gives up a batch it cannot
    finish instead of retrying it."""
    quiet_payload_loggers()
    erasure_key(settings)  # warns at start when CEM_SECRET_KEY is unset
    app = faust_app(settings, web=True, app_class=CemApp)
    topics = _topics(app, settings)
    sink = ResolverSink(settings)
    if stopping is not None:
        sink.stopping = stopping
    sink.rebalance_pending = lambda: bool(app.rebalancing)
    app.stages = _stages(app, settings, sink, topics)
    app.task(app.stages.schema_feed.run)
    app.agent(topics["raw"], name="ingest")(agents.ingest)
    app.agent(topics["resolve"], name="resolve")(agents.resolve)
    app.agent(topics["control"], name="control")(agents.control)
    watch_event_loop(app, settings.watchdog_seconds)  # a stuck loop exits the worker (streams/watchdog.py)
    observe(app, settings, sink)
    return app


def _topics(app: faust.App, settings: Settings) -> dict[str, Any]:
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    return {
        "raw": app.topic(*settings.raw_topics, key_type=bytes, value_type=bytes, **raw),
        "resolve": app.topic(settings.resolve_topic, partitions=1, **raw),
        "control": app.topic(settings.control_topic, partitions=1, **raw),
        "deadletter": app.topic(settings.deadletter_topic, **raw),
    }


def _stages(app: faust.App, settings: Settings, sink: ResolverSink, topics: dict[str, Any]) -> Stages:
    status = WorkerStatus()
    schema_feed = SchemaFeed(settings, new_registry())
    purges: set[asyncio.Future[int]] = set()

    def purge_after_erasure() -> None:
        """In the background: the purge waits for the erasure's own message to be committed."""
        topics = [settings.resolve_topic, *(settings.raw_topics if settings.erasure_purge_raw_topics else [])]
        purge = asyncio.ensure_future(purge_consumed(settings, topics))
        purges.add(purge)
        purge.add_done_callback(purges.discard)

    return Stages(
        settings=settings,
        ingest=IngestStage(settings, topics["resolve"], topics["deadletter"], status,
                           registry=schema_feed.registry, catch_up=schema_feed.catch_up),
        resolve=ResolveStage(settings, sink, topics["deadletter"], status, after_erasure=purge_after_erasure),
        control=ControlStage(settings, topics["resolve"], topics["deadletter"], status),
        schema_feed=schema_feed,
        stopping=sink.stopping,
        status=status,
    )


def observe(app: CemApp, settings: Settings, sink: ResolverSink) -> None:
    """What ops see: consumer lag as a metric, /metrics, /status; and the resolver rebuilt on takeover."""

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
        return web.json(app.stages.status.as_json())

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
import threading
from pathlib import Path
from typing import Any

import faust
from prometheus_client import generate_latest

from cem import metrics
from cem.service.resolver_service import ResolverService
from cem.service.split_service import SplitWarehouse
from cem.settings import Settings
from cem.state_store import StateStore
from schemas.codec import new_registry
from sinks.erasure import erasure_key
from streams import agents
from streams.alerts import AlertActionStage, AlertOutbox
from streams.assignment import owner_sparing_assignor
from streams.control import ControlStage
from streams.identity_feed import IdentityFeed, IdentityPublisher
from streams.ingest import Ingestor, IngestStage, limits_of  # noqa: F401  (Ingestor, limits_of: importable here)
from streams.kafka_transport import EagerApp
from streams.purge import purge_consumed
from streams.record_order import WrittenOrder
from streams.resolve import ResolveStage
from streams.schema_feed import SchemaFeed
from streams.split import CustomerStage, OwnerStage
from streams.split_front import FrontStage
from streams.stages import SplitStages, Stages
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


# Exit code of a worker that gave up a batch because a rebalance waited on it (cem.service.retry.RebalanceWatch):
# dying is the crash path, which is proven safe; whoever takes the partition replays the batch.
EXIT_STUCK_IN_REBALANCE = 75
CUSTOMER_TICK_SECONDS = 0.2


def exit_stuck_in_rebalance() -> None:
    log.error("exiting (code %d): nothing of the batch is committed", EXIT_STUCK_IN_REBALANCE)
    logging.shutdown()
    os._exit(EXIT_STUCK_IN_REBALANCE)


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


STREAM_BUFFER_EVENTS = 16_384


def faust_app(settings: Settings, web: bool, app_class: type[faust.App] = EagerApp,
              assignor: type[Any] | None = None) -> Any:
    """The Faust app every cem worker runs, and the bench's bare-Faust ceiling too: one configuration for both.
    `assignor`: the partition assignor class (None: Faust's own)."""
    return app_class(
        settings.app_id,
        PartitionAssignor=assignor,
        broker="kafka://" + ";".join(settings.kafka_bootstrap.split(",")),
        broker_credentials=kafka_credentials(settings),
        store="memory://",
        datadir=settings.state_dir,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.heartbeat_interval_seconds,
        broker_commit_interval=1.0,
        web_enabled=web,
        web_bind=settings.web_host,
        producer_max_request_size=settings.producer_max_request_bytes,
        web_port=settings.web_port,
        web_in_thread=False,
        # A front holds messages unacknowledged while the owner answers; a rebalance must not wait for them (their
        # next holder reads them again)
        stream_wait_empty=not settings.split_partitions,
        ConsumerScheduler=WrittenOrder,
        consumer_max_fetch_size=settings.consumer_fetch_bytes,
        # Room for a fetch's records (a quiet channel's backlog arrives whole): a full queue stops the hand-over of
        # records until the agent takes one, and with Faust's 4,096 that was the common case during a backlog.
        stream_buffer_maxsize=STREAM_BUFFER_EVENTS,
    )


class CemApp(EagerApp):
    """The Faust app with the worker's stages on it: the agents (streams.agents) find them through their stream."""

    stages: Stages


def create_app(settings: Settings, stopping: threading.Event | None = None) -> CemApp:
    """The worker's app: topics, stages, agents, timers and pages, wired once. `stopping` is set when the worker
    is asked to stop (cem.cli.run_worker does it on SIGTERM): from then on every stage gives up a batch it cannot
    finish instead of retrying it."""
    quiet_payload_loggers()
    erasure_key(settings)  # warns at start when CEM_SECRET_KEY is unset
    spare_owner = not settings.owner_ingests and not settings.split_partitions
    assignor = owner_sparing_assignor(settings.resolve_topic, settings.raw_topics) if spare_owner else None
    app = faust_app(settings, web=True, app_class=CemApp, assignor=assignor)
    topics = _topics(app, settings)
    sink = ResolverService(settings, stopping=stopping, rebalance_pending=lambda: bool(app.rebalancing),
                           on_stuck=exit_stuck_in_rebalance)
    app.stages = _stages(app, settings, sink, topics)
    app.task(app.stages.schema_feed.run)
    if settings.identity_replica and app.stages.identity_feed is not None:
        app.task(app.stages.identity_feed.run)
    if app.stages.split is not None:
        app.task(app.stages.split.front.release_forever)
    app.agent(topics["raw"], name="ingest")(agents.ingest)
    if settings.split_partitions:
        app.agent(topics["resolve"], name="front")(agents.front)
        app.agent(topics["identity"], name="owner")(agents.owner)
        app.agent(topics["customers"], name="customers")(agents.customers)
    else:
        app.agent(topics["resolve"], name="resolve")(agents.resolve)
    app.agent(topics["control"], name="control")(agents.control)
    app.agent(topics["alert_actions"], name="alert_actions")(agents.alert_actions)
    watch_event_loop(app, settings.watchdog_seconds)  # a stuck loop exits the worker (streams/watchdog.py)
    observe(app, settings, sink)
    return app


def _topics(app: faust.App, settings: Settings) -> dict[str, Any]:
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    split = settings.split_partitions
    return {
        "raw": app.topic(*settings.raw_topics, key_type=bytes, value_type=bytes, **raw),
        "resolve": app.topic(settings.resolve_topic, partitions=split or 1, **raw),
        **({"identity": app.topic(settings.identity_topic, partitions=1, **raw),
            "customers": app.topic(settings.customers_topic, partitions=split, **raw)} if split else {}),
        "control": app.topic(settings.control_topic, partitions=1, **raw),
        "deadletter": app.topic(settings.deadletter_topic, **raw),
        "alert_actions": app.topic(settings.alert_actions_topic, partitions=1, **raw),
    }


def _stages(app: faust.App, settings: Settings, sink: ResolverService, topics: dict[str, Any]) -> Stages:
    status = WorkerStatus()
    schema_feed = SchemaFeed(settings, new_registry())
    identity_feed = IdentityFeed(settings, lambda: asyncio.get_running_loop().run_in_executor(
        None, sink.identity_start), store=_replica_store(settings))
    purges: set[asyncio.Future[int]] = set()

    def purge_after_erasure() -> None:
        """In the background: the purge waits for the erasure's own message to be committed."""
        topics = [settings.resolve_topic, *(settings.raw_topics if settings.erasure_purge_raw_topics else [])]
        purge = asyncio.ensure_future(purge_consumed(settings, topics))
        purges.add(purge)
        purge.add_done_callback(purges.discard)

    stages = Stages(
        settings=settings,
        ingest=IngestStage(settings, topics["resolve"], topics["deadletter"], status,
                           registry=schema_feed.registry, catch_up=schema_feed.catch_up,
                           delivered=identity_feed.probe if settings.identity_replica and not settings.split_partitions
                           else lambda events: None),
        resolve=ResolveStage(settings, sink, topics["deadletter"], status, after_erasure=purge_after_erasure,
                             outbox=AlertOutbox(settings, sink), identity_out=IdentityPublisher(settings, sink)),
        alert_actions=AlertActionStage(settings, sink, topics["deadletter"]),
        control=ControlStage(settings, topics["resolve"], topics["deadletter"], status),
        schema_feed=schema_feed,
        identity_feed=identity_feed,
        stopping=sink.stopping,
        status=status,
    )
    if settings.split_partitions:
        stages.split = _split_stages(app, settings, identity_feed, topics, status, sink.stopping)
    return stages


def _split_stages(app: faust.App, settings: Settings, feed: IdentityFeed, topics: dict[str, Any],
                  status: WorkerStatus, stopping: threading.Event) -> SplitStages:
    def warehouse(stage: str) -> SplitWarehouse:
        return SplitWarehouse(settings, stage, stopping=stopping, rebalance_pending=lambda: bool(app.rebalancing),
                              on_stuck=exit_stuck_in_rebalance)

    owner_warehouse = warehouse("owner")
    customers = CustomerStage(settings, warehouse("customers"), topics, status)
    feed.listeners.append(customers.changed)
    return SplitStages(front=FrontStage(settings, warehouse("front"), feed, topics, status),
                       owner=OwnerStage(settings, owner_warehouse, IdentityPublisher(settings, owner_warehouse),
                                        topics),
                       customers=customers)


def _replica_store(settings: Settings) -> StateStore | None:
    if not settings.identity_replica or settings.state_store != "disk":
        return None
    return StateStore(Path(settings.state_dir) / "identity-replica", settings.identity_replica_memory_mb)


def _split_moved(split: SplitStages, settings: Settings, moved: set[Any], revoked: bool) -> None:
    """Partitions of the split's stages came or went: whoever holds them next starts from the warehouse (and
    reads again what a front held of them, never acknowledged)."""
    topics = {tp.topic for tp in moved}
    if settings.resolve_topic in topics:
        split.front.invalidate(moved if revoked else ())
    if not revoked:  # every assignment ends a rebalance, with or without partitions of the resolver topic
        split.front.assigned({tp for tp in moved if tp.topic == settings.resolve_topic})
    if settings.identity_topic in topics:
        split.owner.invalidate()
    customers = {tp.partition for tp in moved if tp.topic == settings.customers_topic}
    split.customers.invalidate(customers)
    split.customers.moved(customers, revoked)


def observe(app: CemApp, settings: Settings, sink: ResolverService) -> None:
    """What ops see: consumer lag as a metric, /metrics, /status; and the resolver rebuilt on takeover."""

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        if app.stages.split is not None:
            _split_moved(app.stages.split, settings, revoked, revoked=True)
        elif any(tp.topic == settings.resolve_topic for tp in revoked):
            sink.invalidate()
            app.stages.resolve.outbox.invalidate()
            app.stages.resolve.identity_out.invalidate()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        if app.stages.split is not None:
            _split_moved(app.stages.split, settings, assigned, revoked=False)

    if settings.split_partitions:
        @app.timer(interval=CUSTOMER_TICK_SECONDS)
        async def customer_tick() -> None:
            """Owner versions reach the customer partitions with no event arriving too."""
            # Active partitions only: Faust's assignment also lists standbys, which another worker processes
            mine = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == settings.customers_topic}
            await app.stages.runner("customers").run(lambda _: app.stages.split_stages().customers.tick(mine), None)

    @app.timer(interval=settings.alert_tick_seconds)
    async def alert_tick() -> None:
        """SLA deadlines pass with no traffic too: the owner of the resolver partition evaluates them. The
        partitioned resolver evaluates no alerts yet (docs/scaling.md, "The split on Kafka")."""
        owner = any(tp.topic == settings.resolve_topic for tp in app.consumer.assignment())
        if owner and not settings.split_partitions:
            await app.stages.runner("alerts").run(lambda _: app.stages.resolve.tick(), None)

    @app.timer(interval=5.0)
    async def export_lag() -> None:
        consumer: Any = app.consumer
        lags: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            try:
                highwater = consumer.highwater(tp)
                committed = consumer._committed_offset.get(tp)  # Faust keeps the last committed message offset
            except Exception:
                continue
            if highwater is not None:
                lags[(tp.topic, tp.partition)] = highwater - (committed + 1 if committed is not None else 0)
        metrics.export_consumer_lag(lags)
        owner_topic = settings.identity_topic if settings.split_partitions else settings.resolve_topic
        metrics.export_owner_lag({p: lag for (topic, p), lag in lags.items() if topic == owner_topic})

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(metrics.REGISTRY), content_type="text/plain; version=0.0.4")

    @app.page("/status")
    async def status_page(web: Any, request: Any) -> Any:
        status: dict[str, Any] = dict(app.stages.status.as_json())
        status["assigned"] = sorted(f"{tp.topic}/{tp.partition}" for tp in app.assignor.assigned_actives())
        if settings.identity_replica and app.stages.identity_feed is not None:
            status["identity_replica"] = app.stages.identity_feed.describe()
        return web.json(status)

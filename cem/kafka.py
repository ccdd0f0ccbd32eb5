"""The plain aiokafka clients of the command line and the worker's start-up: SASL/TLS options from settings, a
producer for a batch of records, and the creation of the pipeline's topics. The Faust app configures its own
clients (streams.app); everything else that talks to Kafka outside Faust goes through here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from cem.settings import Settings
from cem.topic_limits import LimitsDisagree, check_message_limits


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """SASL/TLS options for plain aiokafka clients, from settings only."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_sasl_mechanism:
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    if "SSL" in settings.kafka_security_protocol.upper():
        import ssl

        options["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    return options


async def produce(settings: Settings, records: Sequence[tuple[Any, ...]],
                  max_batch_size: int = 16_384, on_acknowledged: Callable[[int], None] | None = None) -> None:
    """Send records, (topic, key, value) or (topic, key, value, headers), and wait until every one is acknowledged
    by all in-sync replicas; `on_acknowledged(1)` is called as each is (a progress bar)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=False,
        max_batch_size=max_batch_size, linger_ms=5, max_request_size=settings.producer_max_request_bytes,
        **kafka_client_options(settings),
    )
    await producer.start()
    try:
        futures = [await producer.send(record[0], record[2], key=record[1],
                                       headers=list(record[3]) if len(record) > 3 else None)
                   for record in records]
        if on_acknowledged is not None:
            for future in futures:
                future.add_done_callback(
                    lambda done: on_acknowledged(1) if not done.cancelled() and done.exception() is None else None)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def wanted_topics(settings: Settings) -> dict[str, int]:
    """Every topic the pipeline uses, with its partition count."""
    wanted = {t: settings.topic_partitions for t in settings.raw_topics}
    wanted[settings.deadletter_topic] = settings.topic_partitions
    # One resolver partition, or one per front of the partitioned resolver, which adds the owner's one and the
    # customer partitions
    wanted[settings.resolve_topic] = settings.split_partitions or 1
    if settings.split_partitions:
        wanted[settings.identity_topic] = 1
        wanted[settings.customers_topic] = settings.split_partitions
    wanted[settings.control_topic] = 1
    wanted[settings.schemas_topic] = 1
    # One partition each: the tail of cem.alerts is the alert publisher's progress (docs/alerts.md)
    wanted[settings.alerts_topic] = 1
    wanted[settings.alert_actions_topic] = 1
    if settings.identity_replica:  # one partition: the owner's versions in its order
        wanted[settings.identity_changes_topic] = 1
    return wanted


def _topic_configs(settings: Settings, topic: str, compacted: set[str]) -> dict[str, str] | None:
    if topic in compacted:
        return {"cleanup.policy": "compact"}
    if topic == settings.identity_changes_topic:  # replicas start from the warehouse and read only recent versions
        return {"retention.ms": str(int(settings.identity_changes_retention_hours * 3_600_000))}
    return None


async def ensure_topics(settings: Settings, timeout: float = 60.0, check_limits: bool = False) -> None:
    """Create the pipeline's topics if missing, before the consumer subscribes (Faust does not create source
    topics, and a subscription to a missing topic is ignored until the next metadata refresh); with
    `check_limits`, also check that the size limits agree (cem.topic_limits)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    wanted = wanted_topics(settings)
    compacted = {settings.schemas_topic}
    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **kafka_client_options(settings))
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(t, n, settings.topic_replication_factor, topic_configs=_topic_configs(settings, t,
                                                                                                   compacted))
                       for t, n in wanted.items() if t not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
            if check_limits:
                await check_message_limits(admin, settings)
            return
        except LimitsDisagree:
            raise
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)
        finally:
            await admin.close()

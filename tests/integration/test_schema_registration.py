"""Producers upgrade their Avro schema first: `cem schemas register` publishes a writer schema on the compacted
`<prefix>.schemas` topic and a real worker (Apache Kafka + a ClickHouse server) decodes records written with it,
whether it was registered before the worker started or while it runs. Records of a writer never registered, or
refused, are dead-lettered `unknown_schema`; bad messages on the schemas topic do not stop the worker."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cem.settings import Settings
from devtools.harness import WorkerProcess, isolated_settings, run_cem, wait_until
from devtools.topics import publish, read_topic
from schemas.codec import encode_avro, schema_documents
from schemas.evolution import registration_message
from schemas.internal import signature_headers
from sinks.clickhouse import connect

pytestmark = pytest.mark.integration
V1: dict[str, Any] = schema_documents()[1]


def with_fields(*fields: dict[str, Any], drop: str | None = None) -> dict[str, Any]:
    schema = copy.deepcopy(V1)
    schema["fields"] = [f for f in schema["fields"] if f["name"] != drop] + list(fields)
    return schema


V2 = with_fields({"name": "locale", "type": ["null", "string"], "default": None})
V3 = with_fields({"name": "locale", "type": ["null", "string"], "default": None},
                 {"name": "campaign", "type": ["null", "string"], "default": None})
NEVER_REGISTERED = with_fields({"name": "region", "type": "string"})
INCOMPATIBLE = with_fields(drop="identifiers")


def records(settings: Settings, prefix: str, count: int, schema: dict[str, Any], **extra: Any
            ) -> list[tuple[str, bytes | None, bytes]]:
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(count):
        record = {"event_id": f"{prefix}-{i}", "channel": "web", "type": "page_view",
                  "occurred_at": now_ms - 3_600_000 + i, "identifiers": {"anonymous_id": f"a-{prefix}-{i}"}, **extra}
        if schema is INCOMPATIBLE:
            record.pop("identifiers")
        out.append((settings.raw_topic("web"), None, encode_avro(record, schema=schema)))
    return out


def topic_config(settings: Settings, topic: str) -> dict[str, str]:
    async def describe() -> dict[str, str]:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            # resources: (error_code, error_message, type, name, entries); entries: (name, value, ...)
            return {entry[0]: entry[1] for r in responses for resource in r.resources for entry in resource[4]}
        finally:
            await admin.close()

    return asyncio.run(describe())


def test_registered_writer_schemas_are_decoded_and_unknown_ones_dead_lettered(kafka, clickhouse,
                                                                              tmp_path: Path) -> None:
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "schemas")
    files = {}
    for name, schema in (("v2", V2), ("v3", V3), ("incompatible", INCOMPATIBLE)):
        files[name] = tmp_path / f"{name}.avsc"
        files[name].write_text(json.dumps(schema, indent=2))

    refused = run_cem("schemas", "register", str(files["incompatible"]), env=settings.as_env())
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "identifiers" in refused.stderr

    registered = run_cem("schemas", "register", str(files["v2"]), env=settings.as_env())
    assert registered.returncode == 0, registered.stdout + registered.stderr
    assert topic_config(settings, settings.schemas_topic).get("cleanup.policy") == "compact"

    # Bypassing the command: garbage, and a schema the reader cannot read. Workers skip both.
    incompatible_key, incompatible_value = registration_message(json.dumps(INCOMPATIBLE))
    publish(settings, [(settings.schemas_topic, b"junk", b"not json"),
                       (settings.schemas_topic, incompatible_key, incompatible_value,
                        signature_headers(settings.signing_key, incompatible_value)),
                       (settings.schemas_topic, b"0" * 16, None)])

    # Records written with v2 wait in the topic before the worker starts: it must know v2 before decoding them.
    before_start = records(settings, "v2a", 40, V2, locale="de-DE")
    publish(settings, before_start)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: (worker.status() or {}).get("resolved", 0) >= len(before_start), 120,
                   f"v2 records were not resolved:\n{worker.log_tail()}")

        # Registered while the worker runs, published right after the command returns.
        registered = run_cem("schemas", "register", str(files["v3"]), env=settings.as_env())
        assert registered.returncode == 0, registered.stdout + registered.stderr
        running = (records(settings, "v3", 30, V3, locale="fr-FR", campaign="spring")
                   + records(settings, "v2b", 10, V2) + records(settings, "v1", 10, V1))
        unknown = records(settings, "never", 7, NEVER_REGISTERED, region="eu")
        refused_records = records(settings, "refused", 5, INCOMPATIBLE)
        publish(settings, running + unknown + refused_records)
        total = len(before_start) + len(running) + len(unknown) + len(refused_records)
        wait_until(lambda: (worker.status() or {}).get("consumed", 0) >= total
                   and worker.last_status.get("resolved", 0) + worker.last_status.get("deadlettered", 0) >= total,
                   120, f"worker did not drain:\n{worker.log_tail()}")
        assert worker.running
        status = dict(worker.last_status)
    finally:
        worker.stop()

    assert status["resolved"] == len(before_start) + len(running)
    assert status["deadlettered"] == len(unknown) + len(refused_records)
    db = connect(settings.clickhouse_url)
    landed = {row[0] for row in db.query(f"SELECT event_id FROM {db.database}.interactions")}
    assert landed == {f"{p}-{i}" for p, n in (("v2a", 40), ("v3", 30), ("v2b", 10), ("v1", 10)) for i in range(n)}

    dead = read_topic(settings, settings.deadletter_topic)
    assert sorted(d.value for d in dead) == sorted(value for _, _, value in unknown + refused_records)
    assert {d.reason for d in dead} == {"unknown_schema"}
    never_fp = unknown[0][2][2:10].hex()
    refused_fp = refused_records[0][2][2:10].hex()
    details = {d.value[2:10].hex(): d.headers["cem.detail"] for d in dead}
    assert details[never_fp] == (
        f"writer schema {never_fp} is neither kept in schemas/ nor registered; register it with "
        "`cem schemas register FILE.avsc` before publishing records written with it")
    assert details[refused_fp].startswith(f"writer schema {refused_fp} was registered but refused: records "
                                          "written with it cannot be read with the reader schema")


def _numbered_schema(n: int) -> dict[str, Any]:
    return with_fields({"name": f"extra_{n}", "type": ["null", "string"], "default": None})


def _feed_settings(kafka: Any, clickhouse: Any, name: str) -> Settings:
    from cem.kafka import ensure_topics

    settings = isolated_settings(kafka.bootstrap, clickhouse.url, name)
    asyncio.run(ensure_topics(settings))
    return settings


def test_feed_is_ready_only_once_it_read_every_earlier_registration(kafka, clickhouse) -> None:
    from schemas.codec import new_registry
    from streams.schema_feed import SchemaFeed

    settings = _feed_settings(kafka, clickhouse, "feedready")
    messages = [registration_message(json.dumps(_numbered_schema(n))) for n in range(30)]
    publish(settings, [(settings.schemas_topic, key, value, signature_headers(settings.signing_key, value))
                       for key, value in messages])

    async def scenario() -> int:
        registry = new_registry()
        feed = SchemaFeed(settings, registry)
        task = asyncio.ensure_future(feed.run())
        try:
            await asyncio.wait_for(feed.ready.wait(), 60)
            return len(registry.registered())  # read at the moment `ready` is set, before anything else runs
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    assert asyncio.run(scenario()) == len(messages)


def test_catch_up_returns_once_what_was_just_registered_is_applied(kafka, clickhouse) -> None:
    from cem.kafka import produce
    from schemas.codec import new_registry
    from streams.schema_feed import SchemaFeed

    settings = _feed_settings(kafka, clickhouse, "feedcatchup")

    async def scenario() -> list[bool]:
        registry = new_registry()
        feed = SchemaFeed(settings, registry)
        task = asyncio.ensure_future(feed.run())
        known = []
        try:
            await asyncio.wait_for(feed.ready.wait(), 60)
            for n in range(8):
                key, value = registration_message(json.dumps(_numbered_schema(100 + n)))
                await produce(settings, [(settings.schemas_topic, key, value,
                                          signature_headers(settings.signing_key, value))])
                assert await feed.catch_up()
                known.append(registry.writer(bytes.fromhex(key.decode())) is not None)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return known

    assert asyncio.run(scenario()) == [True] * 8

"""Confluent framing through a real schema registry (Apicurio Registry, the Confluent API, its schemas kept in
Kafka), real Kafka, a real worker and a ClickHouse server: records framed 00 + schema id land in ClickHouse next
to single-object encoded ones; a record naming an id the registry does not know is dead-lettered with the reason;
while the registry is down, records naming an id the worker has not fetched yet wait (nothing is dead-lettered)
and land once it is back. `cem replay` then rebuilds the same events through the registry."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest

from cem.settings import Settings
from devtools.harness import WorkerProcess, isolated_settings, run_cem, wait_until
from devtools.topics import publish, read_topic
from schemas.codec import encode_avro, encode_confluent, schema_documents
from sinks.clickhouse import connect

pytestmark = pytest.mark.integration
CURRENT: dict[str, Any] = schema_documents()[max(schema_documents())]
UNKNOWN_ID = 987_654


def with_fields(*names: str) -> dict[str, Any]:
    schema = copy.deepcopy(CURRENT)
    schema["fields"] += [{"name": name, "type": ["null", "string"], "default": None} for name in names]
    return schema


def framed(settings: Settings, prefix: str, count: int, schema_id: int, schema: Any, **extra: Any
           ) -> list[tuple[str, bytes | None, bytes]]:
    now_ms = int(time.time() * 1000)
    return [(settings.raw_topic("web"), None, encode_confluent(
        {"event_id": f"{prefix}-{i}", "channel": "web", "type": "page_view", "occurred_at": now_ms - 60_000 + i,
         "identifiers": {"anonymous_id": f"a-{prefix}-{i}"}, **extra}, schema_id, schema)) for i in range(count)]


def test_confluent_framed_records_land_and_an_unknown_id_is_dead_lettered(kafka, clickhouse, schema_registry,
                                                                          tmp_path: Path) -> None:
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "registry", schema_registry_url=schema_registry.url)
    started = time.time()
    subject = f"{settings.raw_topic('web')}-value"
    current_id = schema_registry.register(subject, CURRENT)
    locale_id = schema_registry.register(subject, with_fields("locale"))
    later_id = schema_registry.register(subject, with_fields("locale", "campaign"))  # used only during the outage
    assert len({current_id, locale_id, later_id}) == 3
    assert schema_registry.schema(UNKNOWN_ID).get("status") == 404

    single_object = [(settings.raw_topic("web"), None, encode_avro(
        {"event_id": f"so-{i}", "channel": "web", "type": "page_view", "occurred_at": int(time.time() * 1000) - i,
         "identifiers": {"anonymous_id": f"a-so-{i}"}})) for i in range(10)]
    good = (framed(settings, "cur", 25, current_id, CURRENT)
            + framed(settings, "loc", 25, locale_id, with_fields("locale"), locale="de-DE") + single_object)
    unknown = framed(settings, "unknown", 6, UNKNOWN_ID, CURRENT)
    publish(settings, good + unknown)

    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        total = len(good) + len(unknown)
        wait_until(lambda: (worker.status() or {}).get("resolved", 0) >= len(good)
                   and worker.last_status.get("deadlettered", 0) >= len(unknown), 120,
                   lambda: f"worker did not drain:\n{worker.log_tail()}")
        assert worker.last_status["consumed"] == total

        # The registry goes down: records naming an id the worker has never fetched cannot be decoded yet.
        schema_registry.stop()
        during = framed(settings, "outage", 15, later_id, with_fields("locale", "campaign"), campaign="spring")
        publish(settings, during)
        wait_until(lambda: worker.metrics().get("cem_stage_failures_total", 0) >= 2, 60,
                   lambda: f"the ingest stage did not retry while the registry was down:\n{worker.log_tail()}")
        assert (worker.status() or {}).get("deadlettered") == len(unknown)  # nothing dead-lettered for the outage
        assert worker.last_status["consumed"] == total
        schema_registry.start()  # same port; its schemas come back from its Kafka topic
        wait_until(lambda: (worker.status() or {}).get("resolved", 0) >= len(good) + len(during), 180,
                   lambda: f"records of the outage did not land:\n{worker.log_tail()}")
        assert worker.running
        status = dict(worker.last_status)
    finally:
        worker.stop()
        if not schema_registry.is_running:
            schema_registry.start()

    assert status["deadlettered"] == len(unknown)
    db = connect(settings.clickhouse_url)
    landed = [row[0] for row in db.query(f"SELECT event_id FROM {db.database}.interactions")]
    assert sorted(landed) == sorted([f"cur-{i}" for i in range(25)] + [f"loc-{i}" for i in range(25)]
                                    + [f"so-{i}" for i in range(10)] + [f"outage-{i}" for i in range(15)])
    dead = read_topic(settings, settings.deadletter_topic)
    assert sorted(d.value for d in dead) == sorted(value for _, _, value in unknown)
    assert {d.reason for d in dead} == {"unknown_schema"}
    assert {d.headers["cem.detail"] for d in dead} == {
        f"schema id {UNKNOWN_ID} is unknown to the schema registry at {schema_registry.url}: register the writer "
        "schema there before publishing records that name it"}

    # `cem replay` decodes them with the registry too: the same events, the same records refused.
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started - 60))
    replayed = run_cem("replay", "--from", since, "--database", f"{db.database}_rebuilt", env=settings.as_env())
    assert replayed.returncode == 0, replayed.stderr
    assert f"unknown_schema {len(unknown)}" in replayed.stderr
    rebuilt = connect(settings.clickhouse_url.rsplit("/", 1)[0] + f"/{db.database}_rebuilt")
    assert sorted(row[0] for row in rebuilt.query(f"SELECT event_id FROM {rebuilt.database}.interactions")) == \
        sorted(landed)

"""`cem forget` on the production components (Apache Kafka, ClickHouse 18.16, real worker processes at DEBUG):
afterwards nothing of the person is in any table, view, system table, mutation text or file, worker log or
message of any topic of the pipeline; a restart restores nothing of her; a shared placeholder is refused
without --force and erased with it; the report does not count `forgotten` as a customer."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from cem.settings import Settings
from devtools.harness import WorkerProcess, isolated_settings, run_cem, wait_until
from devtools.topics import drained, publish
from schemas.codec import encode_json
from sinks.clickhouse import connect
from tests.integration import erasure_scenario as jane
from tests.integration.common import BASE_MS

pytestmark = pytest.mark.integration


def topic_texts(settings: Settings) -> list[tuple[str, str]]:
    """Every message (key, value, headers) of every topic whose name starts with the test's prefix."""

    async def read() -> list[tuple[str, str]]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        out: list[tuple[str, str]] = []
        try:
            topics = sorted(t for t in await consumer.topics() if t.startswith(settings.topic_prefix))
            consumer.subscribe(topics)
            idle = 0
            while idle < 4:
                batch = await consumer.getmany(timeout_ms=500)
                idle = 0 if batch else idle + 1
                for messages in batch.values():
                    for m in messages:
                        text = repr((m.key, m.value, m.headers))
                        out.append((f"{m.topic}@{m.offset}", text))
        finally:
            await consumer.stop()
        return out

    return asyncio.run(read())


def published(settings: Settings) -> list[tuple[str, bytes | None, bytes]]:
    return [(settings.raw_topic(channel), None, encode_json(body)) for channel, body in jane.records(BASE_MS)]


def test_forget_leaves_nothing_of_her_anywhere(kafka, clickhouse, tmp_path: Path) -> None:
    settings = replace(isolated_settings(kafka.bootstrap, clickhouse.url, "erase"), identifier_limits="phone=1",
                       erasure_purge_raw_topics=True,
                       secret_key="integration-secret", log_level="DEBUG")
    events = published(settings)
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    with WorkerProcess(settings, logs[0]) as worker:
        publish(settings, events)
        wait_until(lambda: drained(settings), 120, "worker did not drain", workers=[worker])
        db = connect(settings.clickhouse_url)
        name = db.database
        before = dict(db.query(f"SELECT event_id, customer_id FROM {name}.interactions"))
        assert jane.find(topic_texts(settings), [jane.EMAIL])  # the searches see her before
        assert jane.find(jane.warehouse_texts(db), [jane.EMAIL, jane.TEXTS[0]])
        assert "Query:" in logs[0].read_text() or "DEBUG" in logs[0].read_text()  # the log is at DEBUG

        # The phone she typed went unlinked at the limit (phone=1); it still finds her.
        forgotten = run_cem("forget", "phone", jane.PHONE_TYPED, env=settings.as_env())
        assert forgotten.returncode == 0, forgotten.stderr + worker.log_tail()
        assert "1 customer(s) forgotten: 5 identifiers deleted, 5 interactions anonymised" in forgotten.stdout

        def topics_clean() -> bool:
            return not jane.find(topic_texts(settings), jane.needles())

        wait_until(topics_clean, 90, "her records are still on the topics: "
                   + "; ".join(jane.find(topic_texts(settings), jane.needles())[:5]))
        texts = list(jane.warehouse_texts(db))
        mutations = list(jane.file_texts(clickhouse.data_dir))
        assert mutations and any("interaction_log" in where for where, _ in texts if "system.mutations" in where) \
            or mutations
        assert jane.find([*texts, *mutations], jane.needles()) == []
        assert jane.find([t for t in texts if not t[0].startswith("system.")], [before["j1"]]) == []
        after = dict(db.query(f"SELECT event_id, customer_id FROM {name}.interactions"))
        assert {after[e] for e in ("j1", "j2", "j3", "j4", "b2")} == {"forgotten"}
        assert after["b1"] == after["b3"] == before["b1"] and after["k1"] == before["k1"]
        assert db.query(f"SELECT count(), uniqExact(event_id) FROM {name}.interactions") == [(13, 13)]

    # A restart restores nothing of her: her email makes a brand-new customer, held by one set only.
    with WorkerProcess(settings, logs[1]) as worker:
        publish(settings, [(settings.raw_topic("chat"), None, encode_json(
            {"event_id": "j9", "channel": "chat", "type": "chat_message", "occurred_at": BASE_MS + 900_000,
             "identifiers": {"email": jane.EMAIL}}))])
        wait_until(lambda: drained(settings), 120, "worker did not drain", workers=[worker])
        new_id = dict(db.query(f"SELECT event_id, customer_id FROM {name}.interactions"))["j9"]
        assert new_id not in (before["j1"], "forgotten", before["b1"])
        holders = db.query(f"SELECT set_customer_id FROM {name}.set_resolution ANY INNER JOIN {name}.identity_sets "
                           f"USING identity_key WHERE has(id_values, '{jane.EMAIL}')")
        assert holders == [(new_id,)]
        assert db.query(f"SELECT customer_id FROM {name}.identities WHERE value = '{jane.EMAIL}'") == [(new_id,)]

        # A shared placeholder: refused with an explanation, then erased with --force.
        refused = run_cem("forget", "email", jane.PLACEHOLDER, env=settings.as_env())
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert "events of 5 customers" in refused.stderr and "--force" in refused.stderr
        assert db.query(f"SELECT count() FROM {name}.interactions WHERE customer_id = 'forgotten'") == [(5,)]
        forced = run_cem("forget", "email", jane.PLACEHOLDER, "--force", env=settings.as_env())
        assert forced.returncode == 0, forced.stderr
        assert f"{jane.PLACEHOLDER_PEOPLE} interactions anonymised" in forced.stdout, forced.stdout
        assert jane.find(jane.warehouse_texts(db), [jane.PLACEHOLDER, "placeholder person"]) == []

        report = run_cem("report", env=settings.as_env())
        overview = report.stdout.split("Overview")[1].splitlines()[3].split()
        live = db.query(f"SELECT uniqExact(customer_id) FROM {name}.interactions WHERE customer_id != 'forgotten'")
        # Bob, Kate and j9's customer: the placeholder is nobody's, and its five people had no other event.
        assert (int(overview[0]), int(overview[2])) == (14, live[0][0]) and live[0][0] == 3
    audit = db.query(f"SELECT id_type, status, forced FROM {name}.erasure_audit ORDER BY completed_ms")
    assert audit == [("phone", "applied", 0), ("email", "refused", 0), ("email", "applied", 1)]
    worker_log = "".join(path.read_text(errors="replace") for path in logs)
    assert jane.find([("worker log", worker_log)], [*jane.needles(), jane.PLACEHOLDER]) == []

"""`cem doctor` and `cem replay` on real Apache Kafka, a ClickHouse server and a real worker.

Traffic from the simulator is published with `cem publish` (its standard error piped: no escape code may land
there) and drained by a worker. Then `cem doctor` says OK on every line; `cem replay --from` rebuilds a new
database from the raw topics whose events, customers, sessions and journeys are those of the live database (a
person forgotten with `cem forget` stays forgotten), and refuses to write into a database that is not empty.
Then each thing is broken in turn and the doctor's line for it says FAIL: lag over the limit (and no worker in
the group), a migration missing, a topic missing, no broker.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from cem.kafka import ensure_topics
from cem.settings import Settings
from devtools.harness import WorkerProcess, isolated_settings, run_cem, wait_until
from devtools.services import free_port
from devtools.simulate import Simulator, recent_base_ms, traffic_lines
from devtools.topics import drained, publish
from sinks.clickhouse import MIGRATIONS_DIR, connect

pytestmark = pytest.mark.integration


def lines_of(output: str) -> dict[str, str]:
    """The doctor's check lines by name (the text between the status and the detail)."""
    found = {}
    for line in output.splitlines()[1:]:
        status, _, rest = line.partition("  ")
        name = rest.strip().split("  ")[0]
        found[name] = status.strip()
    return found


def grouping(settings: Settings, column: str) -> set[frozenset[str]]:
    db = connect(settings.clickhouse_url)
    rows = db.query(f"SELECT {column}, groupArray(event_id) FROM {db.database}.interactions GROUP BY {column}")
    db.close()
    return {frozenset(ids) for _, ids in rows}


def delete_topic(settings: Settings, topic: str) -> None:
    async def delete() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
            for _ in range(100):
                if topic not in await admin.list_topics():
                    return
                await asyncio.sleep(0.2)
        finally:
            await admin.close()

    asyncio.run(delete())


def test_doctor_says_ok_replay_rebuilds_the_same_then_each_fault_fails_its_line(kafka, clickhouse,
                                                                                tmp_path: Path) -> None:
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "doctor")
    asyncio.run(ensure_topics(settings))
    started_ms = int(time.time() * 1000) - 1_000
    traffic = Simulator(customers=50, seed=11, base_time_ms=recent_base_ms()).run()
    file = tmp_path / "traffic.jsonl"
    file.write_bytes(traffic_lines(traffic.topic_records(settings)))
    published = run_cem("publish", str(file), env=settings.as_env())
    assert published.returncode == 0, published.stderr
    assert "\x1b" not in published.stderr and "\r" not in published.stderr
    assert published.stderr.strip().splitlines()[-1] == f"published {len(traffic.records)} records"

    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        wait_until(lambda: drained(settings), 180, lambda: f"worker did not drain:\n{worker.log_tail()}")
        email = next(e["identifiers"]["email"] for e in traffic.events.values() if "email" in e["identifiers"])
        forgotten = run_cem("forget", "email", email, env=settings.as_env())
        assert forgotten.returncode == 0, forgotten.stdout + forgotten.stderr
        env = {**worker.settings.as_env()}
        fine = run_cem("doctor", env=env)
        assert fine.returncode == 0, fine.stdout + fine.stderr
        statuses = lines_of(fine.stdout)
        assert statuses == {"kafka": "OK", "topics": "OK", "lag": "OK", "workers": "OK", "dead letters": "OK",
                            "warehouse": "OK", "migrations": "OK", "worker /status": "OK"}, fine.stdout
    finally:
        worker.stop()

    # Replay into a new database: the same events, customers, sessions and journeys.
    rebuilt_db = f"{connect(settings.clickhouse_url).database}_rebuilt"
    rebuilt = replace(settings, clickhouse_url=settings.clickhouse_url.rsplit("/", 1)[0] + f"/{rebuilt_db}")
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_ms / 1000 - 60))
    replayed = run_cem("replay", "--from", since, "--database", rebuilt_db, env=settings.as_env(), timeout=600)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "\x1b" not in replayed.stderr
    assert f"replayed {len(traffic.records)} records" in replayed.stderr and "1 erasures applied" in replayed.stderr
    events = grouping(settings, "event_id")
    assert len(events) == len(traffic.person_of_event)
    assert grouping(rebuilt, "event_id") == events
    for column in ("customer_id", "session_id", "journey_id"):
        assert grouping(rebuilt, column) == grouping(settings, column), column
    # The person forgotten before the replay stays forgotten in the rebuilt database.
    for where in (settings, rebuilt):
        db = connect(where.clickhouse_url)
        assert db.query(f"SELECT count() FROM {db.database}.interactions WHERE customer_id = 'forgotten'")[0][0] > 0
        assert db.query(f"SELECT count() FROM {db.database}.identities WHERE value = '{email}'")[0][0] == 0
    again = run_cem("replay", "--from", since, "--database", rebuilt_db, env=settings.as_env())
    assert again.returncode == 2 and "refused" in again.stderr

    # Lag: records published while no worker runs.
    publish(settings, [(settings.raw_topic("web"), None, b'{"not": "consumed yet"}')] * 12)
    lagging = run_cem("doctor", env={**settings.as_env(), "CEM_DOCTOR_MAX_LAG": "10"})
    assert lagging.returncode == 1
    statuses = lines_of(lagging.stdout)
    assert statuses[f"lag {settings.raw_topic('web')}"] == "FAIL", lagging.stdout
    assert statuses["workers"] == "FAIL" and statuses["migrations"] == "OK", lagging.stdout

    # A migration missing: a database whose schema_migrations lacks the last one.
    names = sorted(path.stem for path in MIGRATIONS_DIR.glob("*.sql"))
    partial_db = f"{rebuilt_db}_partial"
    db = connect(settings.clickhouse_url)
    db.command(f"CREATE DATABASE {partial_db}")
    db.command(f"CREATE TABLE {partial_db}.schema_migrations (name String, applied_ms UInt64) ENGINE = MergeTree() "
               "ORDER BY name")
    partial = replace(settings, clickhouse_url=settings.clickhouse_url.rsplit("/", 1)[0] + f"/{partial_db}")
    connect(partial.clickhouse_url).insert("schema_migrations",
                                           {"name": names[:-1], "applied_ms": [0] * (len(names) - 1)})
    missing = run_cem("doctor", env=partial.as_env())
    assert missing.returncode == 1
    assert lines_of(missing.stdout)["migrations"] == "FAIL"
    assert f"not applied: {names[-1]}: run `cem migrate`" in missing.stdout

    # A topic missing.
    delete_topic(settings, settings.control_topic)
    no_topic = run_cem("doctor", env=settings.as_env())
    assert no_topic.returncode == 1
    statuses = lines_of(no_topic.stdout)
    assert statuses[f"topic {settings.control_topic}"] == "FAIL" and "topics" not in statuses, no_topic.stdout

    # No broker.
    no_broker = run_cem("doctor", env={**settings.as_env(), "CEM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"})
    assert no_broker.returncode == 1
    statuses = lines_of(no_broker.stdout)
    assert statuses["kafka"] == "FAIL" and statuses["warehouse"] == "OK", no_broker.stdout

"""The identity replica on the production components: the resolver publishes its identity versions to Kafka and
replicas that follow them (live from the topic's start, late from the warehouse, and each worker's own) answer
exactly as the warehouse does, an erasure included; an owner that never published catches up."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from cem.settings import Settings
from devtools.harness import WorkerProcess, isolated_settings, run_cem, wait_until
from devtools.scrape import metric_value
from devtools.simulate import Simulator
from devtools.topics import drained, publish
from schemas.codec import encode_json
from sinks.clickhouse import connect
from tests.integration.common import BASE_MS
from tests.integration.replica_checks import (
    FeedThread,
    assert_replica_exact,
    follow,
    topic_feed,
    warehouse_feed,
    warehouse_identity,
)
from tests.integration.test_identity_workers import feed_workers, guard_cases

pytestmark = pytest.mark.integration


def test_replicas_follow_the_owner_exactly_with_two_workers_and_an_erasure(kafka, clickhouse, tmp_path: Path) -> None:
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "replica", identity_replica=True)
    traffic = Simulator(customers=80, seed=31, base_time_ms=BASE_MS).run()
    records = traffic.records + guard_cases(BASE_MS + 3_600_000)
    random.Random(7).shuffle(records)
    topic_records = [(settings.raw_topic(r.channel), r.key, r.value) for r in records]
    live = FeedThread(topic_feed(settings)).start()
    workers = [WorkerProcess(settings, tmp_path / f"w{i}.log", f"w{i}") for i in range(2)]
    try:
        feed_workers(settings, topic_records, workers)
        forgotten = run_cem("forget", "email", "kiosk3@example.org", env=settings.as_env())
        assert forgotten.returncode == 0, forgotten.stderr
        assert "1 customer(s) forgotten" in forgotten.stdout, forgotten.stdout
        after = {"event_id": "after-erasure", "channel": "web", "type": "login", "occurred_at": BASE_MS + 9_000_000,
                 "identifiers": {"email": "kiosk4@example.org", "anonymous_id": "anon-after"}}
        publish(settings, [(settings.raw_topic("web"), None, encode_json(after))])
        wait_until(lambda: drained(settings), 90, "workers did not drain", workers=workers, settings=settings)
        # A burst outruns the owner: ingest's replicas were behind for most of it. Records sent again once they
        # have caught up (duplicates, dropped by the resolver) are what a front would forward at once.
        publish(settings, topic_records[:200])
        wait_until(lambda: drained(settings), 90, "workers did not drain", workers=workers, settings=settings)

        newest = warehouse_identity(settings).version
        wait_until(lambda: live.feed.replica.version >= newest and live.feed.lag == 0, 60,
                   lambda: f"the live replica stopped at {live.feed.describe()}, the warehouse is at {newest}")
        checked = assert_replica_exact(settings, live.feed)
        assert checked["replica_sets"] > 80

        # Every worker keeps its own replica: each reports the newest version.
        wait_until(lambda: all((w.status() or {}).get("identity_replica", {}).get("version") == newest
                               for w in workers), 30, "a worker's replica is behind", workers=workers)
        # Only the owner attributed events: its outcome counts cover every unique event, local or not.
        texts = [w.metrics_text() for w in workers]
        counted = sum(metric_value(t, "cem_identity_events_total") for t in texts)
        local = sum(metric_value(t, "cem_identity_events_total", {"outcome": "local"}) for t in texts)
        unique = len({r[2] for r in _event_ids(settings)})
        assert counted == unique
        assert 0 < local < unique
        assert sum(metric_value(t, "cem_identity_versions_published_total") for t in texts) > 1
        # Every worker's ingest asked its replica what a front would do: some events at once, some to the owner.
        front_local = sum(metric_value(t, "cem_identity_front_answers_total", {"answer": "local"}) for t in texts)
        front_owner = sum(metric_value(t, "cem_identity_front_answers_total", {"answer": "owner"}) for t in texts)
        assert front_local > 0 and front_owner > 0
        assert front_local + front_owner <= sum(metric_value(t, "cem_events_in_total") for t in texts)
    finally:
        live.stop()
        for worker in workers:
            worker.stop()

    late = warehouse_feed(settings)
    follow(late, newest)
    assert_replica_exact(settings, late, from_warehouse=True)


def _event_ids(settings: Settings) -> list[tuple[str, str, str]]:
    db = connect(settings.clickhouse_url)
    return db.query(f"SELECT channel, type, event_id FROM {db.database}.interaction_log")


def test_an_owner_that_never_published_catches_up_when_it_starts_publishing(kafka, clickhouse,
                                                                             tmp_path: Path) -> None:
    silent = isolated_settings(kafka.bootstrap, clickhouse.url, "catchup")
    publishing = dataclasses.replace(silent, identity_replica=True)
    traffic = Simulator(customers=40, seed=32, base_time_ms=BASE_MS).run()
    records = [(silent.raw_topic(r.channel), r.key, r.value) for r in traffic.records]
    half = len(records) // 2
    with WorkerProcess(silent, tmp_path / "silent.log", "silent") as worker:
        publish(silent, records[:half])
        wait_until(lambda: drained(silent), 120, "the silent worker did not drain", workers=[worker])
    with WorkerProcess(publishing, tmp_path / "publishing.log", "publishing") as worker:
        publish(publishing, records[half:])
        wait_until(lambda: drained(publishing), 120, "the publishing worker did not drain", workers=[worker])
    # A replica that reads only the topic holds the first half too: the first publication was a catch-up.
    replica = topic_feed(publishing)
    follow(replica, warehouse_identity(publishing).version)
    checked = assert_replica_exact(publishing, replica)
    assert checked["interactions_checked"] == len({r[2] for r in _event_ids(publishing)})

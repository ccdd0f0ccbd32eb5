"""The partitioned resolver on the production components: 2 workers on 4 front and 4 customer partitions, and 3
workers on 6, give what the single resolver gives on the same shuffled traffic, guards and duplicates included;
2 workers on 4 give the simulator's ground truth, and new workers reading every record again count nothing twice."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from cem.settings import Settings
from devtools.harness import WorkerProcess, isolated_settings, wait_until
from devtools.scrape import metric_value
from devtools.simulate import Simulator, groups
from devtools.topics import drained, publish
from schemas.codec import encode_json
from sinks.clickhouse import connect
from tests.integration.common import BASE_MS
from tests.integration.e2e_checks import assert_ground_truth
from tests.integration.test_identity_workers import guard_cases

pytestmark = pytest.mark.integration

# Faust gives each worker at most ceil(partitions / workers) partitions of a topic and keeps what a worker holds: 4
# partitions over 3 workers leave one idle, so a deployment takes a multiple of its workers.
SPLIT_PARTITIONS = {2: 4, 3: 6}


def _views(settings: Settings) -> dict[str, set[frozenset[str]]]:
    """Events grouped by customer, by session and by journey, as analysts read them from the views."""
    db = connect(settings.clickhouse_url)
    rows = db.query(f"SELECT event_id, customer_id, session_id, journey_id FROM {db.database}.interactions")
    found: dict[str, set[frozenset[str]]] = {}
    for column, name in ((1, "customers"), (2, "sessions"), (3, "journeys")):
        groups: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            if row[column]:
                groups[row[column]].add(row[0])
        found[name] = {frozenset(g) for g in groups.values()}
    found["events"] = {frozenset([row[0]]) for row in rows}
    assert len(rows) == len(found["events"]), "an event has two interaction rows"
    return found


def _assigned(proc: WorkerProcess) -> list[str]:
    assigned: object = (proc.status() or {}).get("assigned", [])
    return list(assigned) if isinstance(assigned, list) else []


def _settled(settings: Settings, procs: list[WorkerProcess]) -> bool:
    """Every partition of the stage that keeps state (customer partitions, or the single resolver's) is held by
    exactly one worker, and with the split every worker holds some."""
    topic = settings.customers_topic if settings.split_partitions else settings.resolve_topic
    held = [[p for p in _assigned(proc) if p.startswith(topic + "/")] for proc in procs]
    every = [p for parts in held for p in parts]
    return all(held) and len(every) == len(set(every)) == (settings.split_partitions or 1)


def _drain(settings: Settings, procs: list[WorkerProcess]) -> None:
    """Drained twice, apart: an owner version still on its way to a replica may hand a merged customer on."""
    for _ in range(2):
        wait_until(lambda: drained(settings), 240, "workers did not drain", workers=procs, settings=settings)
        time.sleep(2)


def _run(settings: Settings, records: list[tuple[str, bytes | None, bytes]], later: list[dict[str, Any]],
         workers: int, tmp_path: Path) -> tuple[dict[str, set[frozenset[str]]], list[str]]:
    procs = [WorkerProcess(settings, tmp_path / f"{settings.app_id}-{i}.log", f"w{i}") for i in range(workers)]
    try:
        for proc in procs:
            proc.start()
        # The group settles first: partitions moving between workers mid-traffic is the restart path, which the
        # fault suite covers for the single resolver only.
        wait_until(lambda: _settled(settings, procs), 90, "the group did not settle", workers=procs)
        publish(settings, records[: len(records) // 2])
        publish(settings, records[len(records) // 2:])
        wait_until(lambda: drained(settings), 240, "workers did not drain", workers=procs, settings=settings)
        # Events of known customers once the replicas know them: a front routes them at once.
        publish(settings, [(settings.raw_topic(e["channel"]), None, encode_json(e)) for e in later])
        _drain(settings, procs)
        texts = [proc.metrics_text() for proc in procs]
    finally:
        for proc in procs:
            proc.stop()
    return _views(settings), texts


def test_two_and_three_workers_on_four_and_six_partitions_give_the_single_resolvers_result(
        kafka, clickhouse, tmp_path: Path) -> None:
    traffic = Simulator(customers=60, seed=44, base_time_ms=BASE_MS).run()
    records = traffic.records + guard_cases(BASE_MS + 3_600_000)
    random.Random(9).shuffle(records)
    # Every valid record twice: the second copies are duplicates wherever they arrive.
    records = records + random.Random(10).sample(records, len(records) // 5)

    def simulated(grouped: set[frozenset[str]]) -> set[frozenset[str]]:
        return {g for g in grouped if any(e in traffic.person_of_event for e in g)}

    later = [{**event, "event_id": event["event_id"] + "-again", "occurred_at": event["occurred_at"] + 1_000}
             for event in list(traffic.events.values())[:40]]
    single = isolated_settings(kafka.bootstrap, clickhouse.url, "single")
    expected, _ = _run(single, [(single.raw_topic(r.channel), r.key, r.value) for r in records], later, 1, tmp_path)
    people = {frozenset(e for e in g if e in traffic.person_of_event) for g in simulated(expected["customers"])}
    assert people == traffic.groups()

    for workers in (2, 3):
        settings = isolated_settings(kafka.bootstrap, clickhouse.url, f"split{workers}",
                                     split_partitions=SPLIT_PARTITIONS[workers])
        found, texts = _run(settings, [(settings.raw_topic(r.channel), r.key, r.value) for r in records], later,
                            workers, tmp_path)
        assert found["events"] == expected["events"]
        assert found["customers"] == expected["customers"]
        # Sessions and journeys of the simulated people. The guards' crafted events are left out: where a guard
        # splits a customer after its events were folded, the single resolver's sessions depend on its batches too.
        for name in ("sessions", "journeys"):
            assert simulated(found[name]) == simulated(expected[name]), name
        # The fronts answered most events from their replica and asked the owner about the rest.
        local = sum(metric_value(t, "cem_identity_front_answers_total", {"answer": "local"}) for t in texts)
        asked = sum(metric_value(t, "cem_identity_front_answers_total", {"answer": "owner"}) for t in texts)
        assert local > 0 and asked > 0
        # Each unique event was answered once; a record read again after a rebalance is answered again.
        assert len(expected["events"]) <= local + asked <= len(expected["events"]) * 1.05


def test_two_workers_on_four_partitions_give_the_ground_truth_and_three_new_ones_count_nothing_twice(
        kafka, clickhouse, tmp_path: Path) -> None:
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "splite2e", split_partitions=4)
    traffic = Simulator(customers=120, seed=11, base_time_ms=BASE_MS).run()
    records = traffic.topic_records(settings)
    unique = len(traffic.person_of_event)

    procs = [WorkerProcess(settings, tmp_path / f"e2e-{i}.log", f"e{i}") for i in range(2)]
    try:
        for proc in procs:
            proc.start()
        wait_until(lambda: _settled(settings, procs), 90, "the group did not settle", workers=procs)
        publish(settings, records)
        _drain(settings, procs)
        texts = [proc.metrics_text() for proc in procs]
    finally:
        for proc in procs:
            proc.stop()
    assert_ground_truth(settings, traffic)

    def total(name: str, labels: dict[str, str] | None = None) -> float:
        return sum(metric_value(text, name, labels) for text in texts)

    assert total("cem_events_in_total") == len(records)
    assert total("cem_duplicates_dropped_total") == traffic.duplicates_sent
    assert total("cem_rows_written_total", {"table": "interaction_log"}) == unique
    assert total("cem_identities_merged_total") > 0

    # New workers (each stage rebuilt from the warehouse, joining one after another) get every record again.
    procs = [WorkerProcess(settings, tmp_path / f"again-{i}.log", f"a{i}") for i in range(3)]
    try:
        for proc in procs:
            proc.start()
        publish(settings, records)
        _drain(settings, procs)
    finally:
        for proc in procs:
            proc.stop()
    db = connect(settings.clickhouse_url)
    assert db.query(f"SELECT count(), uniqExact(event_id) FROM {db.database}.interactions") == [(unique, unique)]
    assert groups(db.query(f"SELECT event_id, customer_id FROM {db.database}.interactions")) == traffic.groups()
    assert db.query(f"SELECT sum(events) FROM {db.database}.channel_hourly") == [(unique,)]

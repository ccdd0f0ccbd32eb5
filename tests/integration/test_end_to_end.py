"""End to end on the production components: Apache Kafka (KRaft) + a ClickHouse server + real worker processes.

The simulator's ground truth is computed independently of the pipeline; every assertion compares exact values.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from cem.settings import CHANNELS
from devtools.harness import WorkerProcess, isolated_settings, wait_until
from devtools.scrape import metric_value
from devtools.simulate import Simulator, groups, iso
from devtools.topics import drained, publish, read_topic
from schemas.codec import encode_json
from sinks.clickhouse import connect
from tests.integration.common import BASE_MS
from tests.integration.e2e_checks import assert_ground_truth

pytestmark = pytest.mark.integration


def test_pipeline_exact_results_and_dedup_across_restart(kafka, clickhouse, tmp_path: Path) -> None:
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "e2e")
    traffic = Simulator(customers=120, seed=11, base_time_ms=BASE_MS).run()
    records = traffic.topic_records(settings)
    unique = len(traffic.person_of_event)

    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        publish(settings, records)
        wait_until(lambda: drained(settings), 120, "worker did not drain", workers=[worker])
        metrics = worker.metrics_text()
    finally:
        worker.stop()

    assert_ground_truth(settings, traffic)
    db = connect(settings.clickhouse_url)
    name = db.database

    # Metrics tell the same story.
    assert metric_value(metrics, "cem_events_in_total") == len(records)
    assert metric_value(metrics, "cem_deadletter_total") == len(traffic.invalid)
    assert metric_value(metrics, "cem_deadletter_total", {"reason": "malformed_json"}) == \
        Counter(r for r, _ in traffic.invalid)["malformed_json"]
    assert metric_value(metrics, "cem_duplicates_dropped_total") == traffic.duplicates_sent
    assert metric_value(metrics, "cem_rows_written_total", {"table": "interaction_log"}) == unique
    assert metric_value(metrics, "cem_identities_merged_total") > 0
    assert metric_value(metrics, "cem_sink_batch_duration_seconds_count") >= 1
    assert "cem_consumer_lag_messages" in metrics
    for channel in {r.channel for r in traffic.records}:
        assert metric_value(metrics, "cem_events_in_total", {"channel": channel}) > 0

    # A new worker process (state rebuilt from ClickHouse) gets every record again: nothing is counted twice.
    again = WorkerProcess(settings, tmp_path / "worker2.log").start()
    try:
        publish(settings, records)
        wait_until(lambda: drained(settings), 120, "second worker did not drain", workers=[again])
    finally:
        again.stop()
    assert db.query(f"SELECT count(), uniqExact(event_id) FROM {name}.interactions") == [(unique, unique)]
    assert groups(db.query(f"SELECT event_id, customer_id FROM {name}.interactions")) == traffic.groups()
    assert db.query(f"SELECT sum(events) FROM {name}.channel_hourly") == [(unique,)]


def test_identity_bridge_published_by_kcat(kafka, clickhouse, tmp_path: Path) -> None:
    """JSON events from a client no project code wrote (kcat, librdkafka) are stitched and counted once."""
    import shutil
    import subprocess

    kcat = shutil.which("kcat")
    assert kcat is not None, "kcat is installed by `make test` (Debian package kcat)"
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "kcat")
    t = "2025-11-14T10:00:00.000Z"
    lines = {
        "web": [  # anonymous browsing, then a login with an email written differently
            '{"event_id":"k1","channel":"web","type":"page_view","occurred_at":"%s","identifiers":{"anonymous_id":"a-1"}}',
            '{"event_id":"k2","channel":"web","type":"login","occurred_at":"%s","identifiers":{"anonymous_id":"a-1",'
            '"email":"  Jane.Doe@Example.COM "}}',
        ],
        "call_center": [  # the phone alone: a separate customer until the order below links it
            '{"event_id":"k3","channel":"call_center","type":"call_ended","occurred_at":"%s",'
            '"identifiers":{"phone":"(415) 555-0199"},"text":"Terrible wait, still not fixed","issue_ref":"T-1"}',
        ],
        "commerce": [  # the bridge: email and phone on one order
            '{"event_id":"k4","channel":"commerce","type":"purchase","occurred_at":"%s","identifiers":'
            '{"email":"jane.doe@example.com","phone":"+14155550199"},"properties":{"order_total":"12.50"}}',
        ],
        "chat": [  # a placeholder identifier links nobody, and a re-sent event counts once
            '{"event_id":"k5","channel":"chat","type":"chat_message","occurred_at":"%s","identifiers":'
            '{"anonymous_id":"null","email":"someone.else@example.com"},"text":"hello"}',
            '{"event_id":"k5","channel":"chat","type":"chat_message","occurred_at":"%s","identifiers":'
            '{"anonymous_id":"null","email":"someone.else@example.com"},"text":"hello"}',
            'this is not json',
        ],
    }
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        for channel, items in lines.items():
            payload = "\n".join(line % t if "%s" in line else line for line in items) + "\n"
            subprocess.run([kcat, "-P", "-b", settings.kafka_bootstrap, "-t", settings.raw_topic(channel)],
                           input=payload.encode(), check=True, timeout=60)
        wait_until(lambda: drained(settings), 90, "worker did not drain", workers=[worker])
    db = connect(settings.clickhouse_url)
    rows = dict(db.query(f"SELECT event_id, customer_id FROM {db.database}.interactions"))
    assert sorted(rows) == ["k1", "k2", "k3", "k4", "k5"]
    assert rows["k1"] == rows["k2"] == rows["k3"] == rows["k4"] != rows["k5"]
    identities = dict(((t, v), c) for t, v, c in db.query(
        f"SELECT id_type, value, customer_id FROM {db.database}.identities"))
    assert identities[("email", "jane.doe@example.com")] == rows["k1"]
    assert identities[("phone", "+14155550199")] == rows["k1"]
    assert ("anonymous_id", "null") not in identities
    dead = read_topic(settings, settings.deadletter_topic)
    assert [(d.reason, d.value) for d in dead] == [("unknown_encoding", b"this is not json")]
    assert set(CHANNELS) >= set(lines)


def test_one_issue_ref_shared_by_unrelated_customers_and_by_identities_that_merge(kafka, clickhouse,
                                                                                  tmp_path: Path) -> None:
    """issue_ref "1" on three unrelated customers is three journeys. On two identities of one person (an email
    and a phone) it is two journeys until an order carrying both merges them: then one, whose id is that of the
    journey started first, and the interaction written before the merge resolves to it in `interactions`."""
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "journeys")
    minute = 60_000
    email, phone = "x.person@example.com", "+14155550142"

    def record(event_id: str, channel: str, event_type: str, at_minute: int, identifiers: dict[str, str],
               issue_ref: str | None = None) -> tuple[str, bytes | None, bytes]:
        body = {"event_id": event_id, "channel": channel, "type": event_type, "identifiers": identifiers,
                "occurred_at": iso(BASE_MS + at_minute * minute), "text": f"about my case ({event_id})"}
        if issue_ref is not None:
            body["issue_ref"] = issue_ref
        return settings.raw_topic(channel), event_id.encode(), encode_json(body)

    before = [
        record("u1", "chat", "chat_message", 0, {"email": "u1@example.com"}, "1"),
        record("u2", "chat", "chat_message", 1, {"email": "u2@example.com"}, "1"),
        record("u3", "email", "email_reply", 2, {"email": "u3@example.com"}, "1"),
        record("x0", "email", "email_open", 0, {"email": email}),  # the person's first event
        record("x", "chat", "chat_message", 60, {"email": email}, "1"),
        record("y", "call_center", "call_ended", 30, {"phone": phone}, "1"),
        record("r", "support", "ticket_resolved", 120, {"phone": phone}, "1"),
    ]
    merge = [record("link", "commerce", "purchase", 180, {"email": email, "phone": phone})]
    after = [record("x2", "chat", "chat_message", 240, {"email": email}, "1")]  # once merged: the survivor's
    db = connect(settings.clickhouse_url)
    name = db.database
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        publish(settings, before)
        wait_until(lambda: drained(settings), 90, "worker did not drain", workers=[worker])
        assert db.query(f"SELECT count() FROM {name}.journeys WHERE kind = 'service'") == [(5,)]
        for phase in (merge, after):
            publish(settings, phase)
            wait_until(lambda: drained(settings), 90, "not drained", workers=[worker])

    rows = {r[0]: r[1:] for r in db.query(
        f"SELECT event_id, customer_id, journey_id, origin_journey_id FROM {name}.interactions")}
    journeys = {r[0]: r[1:] for r in db.query(
        f"SELECT journey_id, customer_id, issue_ref, contacts, channels, resolved, fcr, time_to_resolution_s "
        f"FROM {name}.journeys WHERE kind = 'service'")}
    person, merged = rows["x0"][0], rows["y"][1]
    assert len(journeys) == 4
    for unrelated, channel in (("u1", "chat"), ("u2", "chat"), ("u3", "email")):
        customer, journey_id, origin = rows[unrelated]
        assert journey_id == origin and journeys[journey_id] == (customer, "1", 1, [channel], 0, 0, None)
    assert len({rows[u][0] for u in ("u1", "u2", "u3")} | {person}) == 4
    assert len({rows[u][1] for u in ("u1", "u2", "u3")} | {merged}) == 4
    # y's journey started first (minute 30, x's at 60): its id survives; x was written before the merge.
    assert {rows[e][:2] for e in ("x", "y", "r", "x2", "link")} == {(person, merged), (person, "")}
    assert [rows[e][1] for e in ("x", "y", "r", "x2")] == [merged] * 4
    assert rows["x"][2] != merged and rows["x2"][2] == merged
    assert journeys[merged] == (person, "1", 3, ["call_center", "chat"], 1, 0, 90 * 60.0)

"""ClickHouse refusing rows: the refused events are isolated and dead-lettered (`warehouse_rejected`), everything
else is written, and no view counts the refused ones. Once the cause is fixed, the dead letters are published
again (twice) and land exactly once.

The refusal is a guard column on `interaction_log`, `DEFAULT throwIf(position(text, 'POISON#') > 0)`: how a CHECK
constraint is written on ClickHouse 18.16. The server evaluates it before writing any part, so a refused insert
writes nothing (the sink relies on that: a refusal must be atomic, like every insert it makes).
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import orjson
import pytest

from devtools.simulate import iso
from devtools.topics import publish, read_topic
from schemas.codec import encode_json
from sinks.clickhouse import connect, migrate

pytestmark = [pytest.mark.faults, pytest.mark.integration]
MARKER = "POISON#"
DIGITAL = {"web", "mobile"}


def poisoned_copies(traffic: Any, rng: random.Random, count: int) -> list[tuple[str, int, dict[str, Any]]]:
    """Copies of real events (same person, identifiers and issue) with a new id and a text the guard refuses;
    half of them join a service journey, so the repair of journeys is exercised. (channel, person, record)"""
    candidates = sorted(
        (eid for eid, rec in traffic.events.items() if rec["channel"] not in DIGITAL),
        key=lambda eid: (traffic.events[eid].get("issue_ref") is None, eid))
    with_issue = [e for e in candidates if traffic.events[e].get("issue_ref")]
    without = [e for e in candidates if not traffic.events[e].get("issue_ref")]
    chosen = rng.sample(with_issue, count // 2) + rng.sample(without, count - count // 2)
    out = []
    for source in chosen:
        record = dict(traffic.events[source])
        record.update(event_id=f"poison-{uuid.UUID(int=rng.getrandbits(128))}",
                      occurred_at=iso(record["occurred_at"] + 1), text=f"{MARKER} {record.get('text') or ''}")
        out.append((record["channel"], traffic.person_of_event[source], record))
    return out


def test_clickhouse_refusing_rows_isolates_them_and_writes_the_rest(scenario, kafka, clickhouse) -> None:
    s = scenario("refuse", kafka.bootstrap, clickhouse.url, customers=80, seed=24)
    rng = random.Random(24)
    warehouse = connect(s.settings.clickhouse_url)
    migrate(warehouse)
    db = warehouse.database
    warehouse.command(f"ALTER TABLE {db}.interaction_log ADD COLUMN refuse_guard UInt8 "
                      f"DEFAULT throwIf(position(text, '{MARKER}') > 0)")
    poison = poisoned_copies(s.traffic, rng, 8)
    s.records += [(s.settings.raw_topic(channel), None, encode_json(record)) for channel, _, record in poison]
    rng.shuffle(s.records)
    s.expected.rejected = {record["event_id"] for _, _, record in poison}

    worker = s.start_worker()
    publish(s.settings, s.records)
    drain = s.wait_drained()
    metrics = worker.metrics_text()
    refused = s.total("cem_deadletter_total", {"reason": "warehouse_rejected"})
    failures = s.total("cem_sink_failures_total")
    figures = s.finish(time_to_recover_s=0.0, drain_s=round(drain, 1), refused_events=len(poison),
                       warehouse_rejected_metric=int(refused), sink_failures=int(failures))
    assert refused >= len(poison)
    assert failures == 0, "a refusal is not an outage: nothing is retried"
    assert "cem_sink_up 1.0" in metrics
    letters = [d for d in read_topic(s.settings, s.settings.deadletter_topic) if d.reason == "warehouse_rejected"]
    assert all("395" in d.headers["cem.detail"] and "throwIf" in d.headers["cem.detail"] for d in letters)
    assert all(d.headers["cem.source"] == f"{s.settings.resolve_topic}#{orjson.loads(d.value)['event_id']}"
               for d in letters)
    assert figures["rows_in_clickhouse"] == len(s.traffic.person_of_event)

    # The cause is fixed; the dead letters are published again, twice: each refused event lands exactly once.
    warehouse.command(f"ALTER TABLE {db}.interaction_log DROP COLUMN refuse_guard")
    replay = [(s.settings.raw_topic(orjson.loads(d.value)["channel"]), None, d.value) for d in letters]
    fixed = scenario("refuse_fixed", kafka.bootstrap, clickhouse.url, traffic=s.traffic)
    fixed.settings, fixed.expected, fixed.records = s.settings, s.expected, replay + replay
    for channel, person, record in poison:
        fixed.expected.add_event(record["event_id"], person, channel, orjson.loads(
            next(d.value for d in letters if orjson.loads(d.value)["event_id"] == record["event_id"]))["occurred_at"])
    fixed.start_worker("after-fix")
    publish(fixed.settings, fixed.records)
    fixed.wait_drained()
    # Journeys now include the re-published contacts, which the simulator's truth does not know about.
    fixed.finish(check_journeys=False, republished=len(replay) * 2)
    warehouse.close()

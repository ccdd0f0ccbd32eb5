"""Conflicting duplicates on the production components (Apache Kafka + a ClickHouse server + worker processes):
the same event_id on two channels, and a re-send with other content, before and after a restart. The first copy
is kept once in ClickHouse; every other copy is on the dead-letter topic as duplicate_conflict, under a key that
names the event and its content, so a replayed or re-sent copy is recognisably the same dead letter."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from cem.settings import Settings
from devtools.harness import WorkerProcess, isolated_settings, wait_until
from devtools.scrape import metric_value
from devtools.simulate import iso, recent_base_ms
from devtools.topics import drained, publish, read_topic
from schemas.codec import encode_avro, encode_json
from sinks.clickhouse import connect

pytestmark = pytest.mark.integration


def body(event_id: str, channel: str, text: str, at_ms: int) -> dict[str, Any]:
    return {"event_id": event_id, "channel": channel, "type": "contact", "occurred_at": at_ms,
            "identifiers": {"email": f"{event_id}@example.com"}, "text": text, "properties": {}}


def record(settings: Settings, fields: dict[str, Any]) -> tuple[str, bytes | None, bytes]:
    json_body = {**fields, "occurred_at": iso(fields["occurred_at"])}
    return settings.raw_topic(fields["channel"]), None, encode_json(json_body)


def run(settings: Settings, log: Path, records: list[tuple[str, bytes | None, bytes]]) -> str:
    """A fresh worker process (its state restored from ClickHouse) handles `records`; returns its metrics."""
    with WorkerProcess(settings, log) as worker:
        publish(settings, records)
        wait_until(lambda: drained(settings), 90, "worker did not drain", workers=[worker])
        return worker.metrics_text()


def test_conflicting_copies_are_dead_lettered_and_the_first_copy_kept_once(kafka, clickhouse, tmp_path) -> None:
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "conflicts")
    at = recent_base_ms(days_ago=2)
    first = {f"d{i}": body(f"d{i}", "chat", f"first copy {i}", at + i * 60_000) for i in range(6)}
    other_channel = [body(e, "email", first[e]["text"], first[e]["occurred_at"]) for e in ("d0", "d1")]
    other_text = {**first["d2"], "text": "CONFLICT"}
    other_text_later = {**first["d4"], "text": "CONFLICT"}
    first_records = [record(settings, b) for b in first.values()]
    # d3: a natural re-send, re-encoded as Avro: the same content, so only counted.
    natural = (settings.raw_topic("chat"), None, encode_avro({"issue_ref": None, "survey": None, **first["d3"]}))

    metrics = [run(settings, tmp_path / "w1.log", first_records)]
    metrics.append(run(settings, tmp_path / "w2.log", [record(settings, b) for b in other_channel]
                       + [record(settings, other_text)] * 2 + [natural]))
    # After a restart the first copies' fingerprints come back from interaction_log: still recognised.
    metrics.append(run(settings, tmp_path / "w3.log", [record(settings, other_text),
                                                       record(settings, other_text_later), natural]))

    db = connect(settings.clickhouse_url)
    kept = db.query(f"SELECT event_id, channel, text, count() FROM {db.database}.interactions GROUP BY event_id, "
                    "channel, text ORDER BY event_id")
    assert kept == [(e, "chat", b["text"], 1) for e, b in sorted(first.items())]
    db.close()

    letters = read_topic(settings, settings.deadletter_topic)
    assert {d.reason for d in letters} == {"duplicate_conflict"}
    by_key: dict[bytes, list[Any]] = defaultdict(list)
    for letter in letters:
        assert letter.key is not None and letter.headers["cem.source"] == letter.key.decode()
        by_key[letter.key].append(letter)
    assert all(len({(c.value, c.reason) for c in copies}) == 1 for copies in by_key.values())
    contents = {}
    for key, copies in by_key.items():
        value = orjson.loads(copies[0].value)
        assert re.fullmatch(rf"{re.escape(settings.resolve_topic)}#{value['event_id']}#[0-9a-f]{{16}}", key.decode())
        contents[(value["event_id"], value["channel"], value["text"])] = len(copies)
    assert contents == {("d0", "email", "first copy 0"): 1, ("d1", "email", "first copy 1"): 1,
                        ("d2", "chat", "CONFLICT"): 3, ("d4", "chat", "CONFLICT"): 1}

    per_worker = [(metric_value(m, "cem_deadletter_total", {"reason": "duplicate_conflict"}),
                   metric_value(m, "cem_duplicate_conflicts_total"), metric_value(m, "cem_duplicates_dropped_total"))
                  for m in metrics]
    assert per_worker == [(0, 0, 0), (4, 4, 5), (2, 2, 3)]

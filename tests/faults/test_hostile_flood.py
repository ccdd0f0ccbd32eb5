"""A flood of hostile input and a duplicate storm, through a real worker: every bad record is dead-lettered with
its specific reason, large valid events still reach the resolver (batches are split under the Kafka message
limit), every event is re-sent twice more, and conflicting duplicates (other content, or the same event_id on
another channel) are dead-lettered as duplicate_conflict while the first copy wins."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from typing import Any

import pytest

from devtools.simulate import iso
from devtools.topics import publish
from schemas.codec import encode_avro, encode_json
from sinks.clickhouse import connect

pytestmark = [pytest.mark.faults, pytest.mark.integration]
MAX_RECORD_BYTES = 300_000  # the scenario's limit: a too_large record must still fit in a Kafka message


def hostile_records(good: dict[str, Any], rng: random.Random) -> list[tuple[str, str, bytes]]:
    """(channel, expected reason, bytes), each reason known by construction."""
    good = {**good, "channel": "web", "occurred_at": iso(good["occurred_at"])}
    avro = encode_avro({"text": None, "issue_ref": None, "survey": None, **good, "occurred_at": 1_700_000_000_000})
    out: list[tuple[str, str, bytes]] = []
    for _ in range(150):  # random bytes that are neither JSON nor Avro single-object encoding
        first = rng.choice([b for b in range(256) if b not in b"{[ \t\r\n\xc3"])
        out.append(("web", "unknown_encoding", bytes([first]) + rng.randbytes(rng.randint(0, 300))))
    for cut in (11, 20, len(avro) // 2, len(avro) - 1):
        out.append(("web", "malformed_avro", avro[:cut]))
    out += [
        ("web", "too_large", encode_json({**good, "event_id": "huge", "text": "x" * (MAX_RECORD_BYTES + 10)})),
        ("web", "text_too_long", encode_json({**good, "event_id": "long-text", "text": "y" * 25_000})),
        ("web", "too_deeply_nested", b"[" * 5000 + b"]" * 5000),
        ("web", "too_deeply_nested", b'{"event_id": "n", "properties": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3001),
        ("web", "too_many_identifiers", encode_json(
            {**good, "event_id": "ids", "identifiers": {f"t{i}": "v" for i in range(10_000)}})),
        ("web", "invalid_utf8", b'{"event_id": "bad\xff\xfe", "type": "page_view"}'),
        ("web", "timestamp_in_future", encode_json({**good, "event_id": "future", "occurred_at": "2999-01-01T00:00Z"})),
        ("web", "timestamp_too_old", encode_json({**good, "event_id": "ancient", "occurred_at": -86_400_000})),
        ("web", "wrong_type", encode_json({**good, "event_id": "wt", "text": 42})),
        ("web", "wrong_type", encode_json({**good, "event_id": 12345})),
        ("web", "not_an_object", b"[1, 2, 3]"),
        ("web", "empty_record", b""),
        ("web", "unknown_schema", b"\xc3\x01" + b"\x00" * 8 + b"body"),
        # Valid, and 245 kB as Avro, but control characters take 6 bytes each once the event is JSON on its way to
        # the resolver: 1.5 MB, more than one Kafka message. Dead-lettered, and nothing else is held up.
        ("web", "too_large", encode_avro({"text": None, "issue_ref": None, "survey": None, **good,
                                          "event_id": "control-chars", "occurred_at": 1_700_000_000_000,
                                          "properties": {f"p{i}": "\x01" * 4096 for i in range(60)}})),
    ]
    return out


def test_bad_input_flood_and_duplicate_storm(scenario, kafka, clickhouse) -> None:
    s = scenario("flood", kafka.bootstrap, clickhouse.url, customers=80, seed=28, max_record_bytes=MAX_RECORD_BYTES)
    rng = random.Random(28)
    good = next(iter(s.traffic.events.values()))
    hostile = hostile_records(good, rng)
    s.expected.invalid += [(reason, value) for _, reason, value in hostile]
    # Large valid events: copies of real events without a journey or a session, with 15,000-character texts.
    # A few hundred of them in one ingest batch are several MB, more than one Kafka message may hold.
    sources = [e for e, r in s.traffic.events.items() if r["channel"] in ("email", "commerce", "store", "survey")
               and not r.get("issue_ref")]
    large = []
    for source in rng.sample(sources, min(300, len(sources))):
        record = {**s.traffic.events[source], "event_id": f"large-{uuid.UUID(int=rng.getrandbits(128))}",
                  "text": "".join(rng.choice("abcdefgh ") for _ in range(15_000))}
        large.append(record)
        s.expected.add_event(record["event_id"], s.traffic.person_of_event[source], record["channel"],
                             record["occurred_at"])
    records = s.records + [(s.settings.raw_topic(ch), None, value) for ch, _, value in hostile]
    records += [(s.settings.raw_topic(r["channel"]), None, encode_json({**r, "occurred_at": iso(r["occurred_at"])}))
                for r in large]
    # The duplicate storm: every valid record twice more.
    invalid = {value for _, value in s.traffic.invalid}
    storm = [r for r in s.records if r[2] not in invalid] * 2
    rng.shuffle(storm)
    s.records = records + storm
    worker = s.start_worker()
    publish(s.settings, s.records)
    s.wait_drained(timeout=240)

    # Then conflicting copies of events already written: a different text, or the same event on another channel.
    # The first copy must win; each other copy is dead-lettered once (the text conflicts are sent twice: one key).
    conflicted = rng.sample(sorted(s.traffic.events), 30)
    conflicts = [(s.settings.raw_topic(s.traffic.events[e]["channel"]), None, encode_json(
        {**s.traffic.events[e], "occurred_at": iso(s.traffic.events[e]["occurred_at"]), "text": "CONFLICT"}))
        for e in conflicted[:20]] * 2
    moved = {e: "chat" if s.traffic.events[e]["channel"] != "chat" else "email" for e in conflicted[20:]}
    conflicts += [(s.settings.raw_topic(channel), None, encode_json(
        {**s.traffic.events[e], "occurred_at": iso(s.traffic.events[e]["occurred_at"]), "channel": channel}))
        for e, channel in moved.items()]
    s.expected.conflicting += conflicted
    publish(s.settings, conflicts)
    s.records += conflicts
    s.wait_drained()
    assert s.total("cem_duplicate_conflicts_total") == len(conflicts)
    assert s.total("cem_deadletter_total", {"reason": "duplicate_conflict"}) == len(conflicts)
    duplicates = s.total("cem_duplicates_dropped_total")
    assert duplicates == s.traffic.duplicates_sent + len(storm) + len(conflicts)
    # One worker went through all of it: still the same process, and it consumed every record sent.
    assert worker.running and (worker.status() or {}).get("consumed") == len(s.records), worker.last_status
    # Each reason counted exactly as often as records with it were sent (no crash: no replay, no double count).
    sent_reasons = Counter(reason for reason, _ in s.expected.invalid)
    counted = {reason: s.total("cem_deadletter_total", {"reason": reason}) for reason in sent_reasons}
    assert counted == sent_reasons, (counted, sent_reasons)
    db = connect(s.settings.clickhouse_url)
    quoted = ", ".join(f"'{e}'" for e in conflicted)
    kept = {r[0]: r[1:] for r in db.query(
        f"SELECT event_id, text, channel FROM {db.database}.interactions WHERE event_id IN ({quoted})")}
    assert kept == {e: (s.traffic.events[e].get("text") or "", s.traffic.events[e]["channel"]) for e in conflicted}, \
        "the first copy wins"
    db.close()
    figures = s.finish(time_to_recover_s=0.0, hostile_records=len(hostile), large_events=len(large),
                       storm_copies=len(storm), conflicting_copies=len(conflicts))
    assert figures["dead_letters"] == len(s.expected.invalid) + len(s.expected.conflicting)

"""`cem publish` against Apache Kafka: a file with a bad line publishes nothing; with --skip-invalid exactly its
valid lines land, byte for byte, on their channels' topics; a recorded traffic file is replayed as recorded."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import orjson

from cem.kafka import ensure_topics
from devtools.harness import isolated_settings, run_cem
from devtools.services import KafkaBroker
from devtools.topics import read_topic

EVENT = {"type": "chat_message", "occurred_at": "2025-11-20T10:00:00Z", "identifiers": {"email": "jane@example.com"}}


def test_publish_sends_all_valid_lines_or_nothing(kafka: KafkaBroker, tmp_path: Path) -> None:
    settings = isolated_settings(kafka.bootstrap, f"chdb://{tmp_path}/warehouse", "publish")
    asyncio.run(ensure_topics(settings))
    good = [orjson.dumps({**EVENT, "event_id": "p1", "channel": "chat"}),
            orjson.dumps({**EVENT, "event_id": "p2"}),  # --channel chat gives it its channel
            orjson.dumps({**EVENT, "event_id": "p3", "channel": "chat", "text": "ça marche"})]
    bad = orjson.dumps({**EVENT, "event_id": "p4", "channel": "web"})  # disagrees with --channel chat
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([good[0], bad, good[1], good[2]]) + b"\n")
    chat, web = settings.raw_topic("chat"), settings.raw_topic("web")

    refused = run_cem("publish", str(path), "--channel", "chat", env=settings.as_env())
    assert refused.returncode == 1 and f"{path}:2: the event's channel 'web' disagrees" in refused.stderr
    assert read_topic(settings, chat, idle_seconds=2) == []

    skipped = run_cem("publish", str(path), "--channel", "chat", "--skip-invalid", env=settings.as_env())
    assert skipped.returncode == 1, skipped.stderr
    assert skipped.stderr.splitlines()[-2:] == ["published 3 records", "skipped 1 invalid line"]
    assert sorted(record.value for record in read_topic(settings, chat)) == sorted(good)
    assert read_topic(settings, web, idle_seconds=2) == []

    recorded = tmp_path / "traffic.jsonl"
    values = [b"\xc3\x01 not really avro", orjson.dumps({**EVENT, "event_id": "p5", "channel": "web"})]
    recorded.write_bytes(b"".join(orjson.dumps({"topic": web, "key": base64.b64encode(b"k").decode(),
                                                "value": base64.b64encode(v).decode()}) + b"\n" for v in values))
    replayed = run_cem("publish", str(recorded), env=settings.as_env())
    assert replayed.returncode == 0 and replayed.stderr.strip() == "published 2 records", replayed.stderr
    assert [(r.key, r.value) for r in read_topic(settings, web)] == [(b"k", v) for v in values]

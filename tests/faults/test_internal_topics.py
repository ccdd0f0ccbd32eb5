"""Silent loss and a hijackable control channel, through a real worker on Apache Kafka and ClickHouse.

1. A rejected record near or above 1 MB used to make the dead-letter send fail, the ingest agent crash and Faust
   acknowledge the whole batch: the valid events published before it never landed. Now its dead letter is cut
   to fit (length and SHA-256 in headers) and every valid event around it lands once, whatever its size.
2. Internal topics accept only what cem signed: a malformed control request, a forged erasure, and a forged
   batch (one that skipped validation) become dead letters with a reason; the worker keeps resolving.
3. SIGTERM stops a worker that is retrying a failing warehouse, and nothing is lost when it comes back.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import time
from typing import Any

import orjson
import pytest

from cem.settings import Settings
from devtools.harness import wait_until
from devtools.services import ClickHouseServer
from devtools.topics import publish, read_topic
from schemas.internal import encode_batch, signature_headers
from sinks.clickhouse import connect
from streams.deadletters import HEADER_ROOM_BYTES
from tests.unit.factories import event

pytestmark = [pytest.mark.faults, pytest.mark.integration]
BIG_TOPIC_BYTES = 3_000_000


def create_raw_topics_for_big_records(settings: Settings) -> None:
    """The raw topics exist before the worker starts, with room for 2 MB records (Kafka's default is 1 MiB)."""

    async def create() -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, 1, 1, topic_configs={"max.message.bytes": str(BIG_TOPIC_BYTES)})
                                       for t in settings.raw_topics])
        finally:
            await admin.close()

    asyncio.run(create())


def publish_big(settings: Settings, records: list[tuple[str, bytes | None, bytes]]) -> None:
    async def send() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                    max_request_size=BIG_TOPIC_BYTES, linger_ms=20)
        await producer.start()
        try:
            futures = [await producer.send(topic, value, key=key) for topic, key, value in records]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(send())


def rejected_record(size: int, index: int) -> bytes:
    """A JSON record of exactly `size` bytes that the validator rejects."""
    head = orjson.dumps({"event_id": f"big-{index}", "type": "page_view",
                         "identifiers": {"email": f"big.record{index + 1}@example.com"},
                         "occurred_at": "2026-11-16T10:00:00Z", "text": ""})[:-2]
    return head + b"z" * (size - len(head) - 2) + b'"}'


SIZES = [899_000, 950_000, 999_999, 1_000_100, 1_048_000, 2_000_000]


def test_valid_events_around_records_near_and_above_one_megabyte_all_land(scenario, kafka, clickhouse) -> None:
    s = scenario("bigrec", kafka.bootstrap, clickhouse.url, customers=30, seed=41, topic_partitions=1)
    create_raw_topics_for_big_records(s.settings)
    topic = s.settings.raw_topic("web")
    big = [rejected_record(size, i) for i, size in enumerate(SIZES)]
    for value in big:
        s.expected.invalid.append(("too_large" if len(value) > s.settings.max_record_bytes else "text_too_long",
                                   value))
    # Every big record sits between valid events of the same partition and batch.
    valid = [r for r in s.records if r[2] not in {v for _, v in s.traffic.invalid}]
    chunk = -(-len(valid) // (len(big) + 1))
    mixed: list[tuple[str, bytes | None, bytes]] = []
    for i in range(len(big) + 1):
        mixed += valid[i * chunk:(i + 1) * chunk]
        if i < len(big):
            mixed.append((topic, b"k", big[i]))
    invalid = [r for r in s.records if r[2] in {v for _, v in s.traffic.invalid}]
    s.records = mixed + invalid
    worker = s.start_worker()
    publish_big(s.settings, s.records)
    s.wait_drained(timeout=240)
    assert worker.running
    by_original: dict[str, Any] = {}
    for letter in read_topic(s.settings, s.settings.deadletter_topic):
        digest = letter.headers.get("cem.original_sha256") or hashlib.sha256(letter.value).hexdigest()
        by_original[digest] = letter
    truncated = 0
    for value in big:
        letter = by_original[hashlib.sha256(value).hexdigest()]
        must_cut = len(value) > s.settings.message_max_bytes - HEADER_ROOM_BYTES - len(letter.key)
        assert (letter.headers.get("cem.truncated") == "true") is must_cut, len(value)
        assert value.startswith(letter.value) and len(letter.value) < s.settings.message_max_bytes
        truncated += must_cut
    s.finish(check_journeys=True, big_records=len(big), truncated_dead_letters=truncated)


def forged_messages(settings: Settings) -> list[tuple[str, bytes, bytes, list[tuple[str, bytes]], str]]:
    """(topic, key, value, headers, expected reason) for every kind of message cem did not write."""
    key = settings.signing_key
    wrong = b"not-the-worker-key"
    malformed = orjson.dumps({"control": "forget"})
    erasure = orjson.dumps({"control": "forget", "request_id": "r1", "id_type": "email", "value_key": "ab" * 32,
                            "requested_ms": 1})
    glued = encode_batch([event("forged-1", 1_700_000_000_000, [("email", "null")])])
    bad_row = orjson.dumps([["forged-2", "web", "page_view", "yesterday", [], "", None, None, None, None, {},
                             None, "", "", ""]])
    return [
        (settings.control_topic, b"c", malformed, signature_headers(key, malformed), "invalid_control"),
        (settings.control_topic, b"c", malformed, [], "bad_signature"),
        (settings.control_topic, b"c", erasure, signature_headers(wrong, erasure), "bad_signature"),
        (settings.control_topic, b"c", b"\x00\x01", signature_headers(key, b"\x00\x01"), "invalid_control"),
        (settings.resolve_topic, b"control", erasure, [], "bad_signature"),
        (settings.resolve_topic, b"batch", glued, [], "bad_signature"),
        (settings.resolve_topic, b"batch", glued, signature_headers(wrong, glued), "bad_signature"),
        (settings.resolve_topic, b"batch", bad_row, signature_headers(key, bad_row), "invalid_internal_message"),
        (settings.resolve_topic, b"batch", b"{", signature_headers(key, b"{"), "invalid_internal_message"),
    ]


def publish_with_headers(settings: Settings, records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]) -> None:
    from cem.kafka import produce

    asyncio.run(produce(settings, records))


def listening_addresses(port: int) -> set[str]:
    """The local addresses sockets listen on for `port`, read from /proc/net/tcp and tcp6 (no traffic sent)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, _, hex_port = local.rpartition(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


def test_internal_topics_accept_only_what_cem_signed(scenario, kafka, clickhouse) -> None:
    s = scenario("forged", kafka.bootstrap, clickhouse.url, customers=40, seed=42)
    half = len(s.records) // 2
    worker = s.start_worker()
    # The unauthenticated /metrics and /status listen on loopback only, unless CEM_WEB_HOST says otherwise.
    assert listening_addresses(worker.settings.web_port) == {"0100007F"}  # 127.0.0.1, little-endian hex
    publish(s.settings, s.records[:half])
    forged = forged_messages(s.settings)
    publish_with_headers(s.settings, [(topic, key, value, headers) for topic, key, value, headers, _ in forged])
    publish(s.settings, s.records[half:])
    s.wait_drained(timeout=180)
    wait_until(lambda: s.total("cem_deadletter_total", {"reason": "invalid_control"}) == 2, 60,
               "the control stage did not reject the malformed requests")
    assert worker.running, worker.log_tail()
    internal = [letter for letter in read_topic(s.settings, s.settings.deadletter_topic)
                if not letter.headers["cem.source"].startswith(s.settings.topic_prefix + ".raw.")]
    got = sorted((letter.headers["cem.source"].rsplit("/", 2)[0], letter.reason, letter.value)
                 for letter in {letter.key: letter for letter in internal}.values())
    assert got == sorted((topic, reason, value) for topic, _, value, _, reason in forged)
    db = connect(s.settings.clickhouse_url)
    try:
        assert db.query(f"SELECT count() FROM {db.database}.interaction_log WHERE event_id LIKE 'forged-%'") == [(0,)]
        assert db.query(f"SELECT count() FROM {db.database}.identity_links WHERE value = 'null'") == [(0,)]
        assert db.query(f"SELECT count() FROM {db.database}.erasure_audit") == [(0,)]
    finally:
        db.close()
    assert s.total("cem_sink_up") == 1
    s.finish(forged_messages=len(forged))


def test_sigterm_stops_a_worker_retrying_a_failing_warehouse(scenario, kafka, tmp_workdir) -> None:
    with ClickHouseServer(tmp_workdir("clickhouse-sigterm")) as server:
        s = scenario("sigterm", kafka.bootstrap, server.url, customers=50, seed=43, shutdown_grace_seconds=3.0)
        half = len(s.records) // 2
        worker = s.start_worker()
        publish(s.settings, s.records[:half])
        wait_until(lambda: (worker.status() or {}).get("written", 0) > 0, 90, worker.log_tail())
        server.stop()
        publish(s.settings, s.records[half:])
        wait_until(lambda: s.total("cem_sink_failures_total") >= 2, 60, "the sink never failed")
        assert worker.process is not None
        worker.process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        try:
            code = worker.process.wait(90)  # liveness bound: before the fix the worker never exited
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker ignored SIGTERM while ClickHouse was down:\n{worker.log_tail()}")
        s.ended.add(worker.name)
        figures: dict[str, Any] = {"exit_code": code, "stop_seconds": round(time.monotonic() - stopped_at, 1)}
        server.start()
        s.start_worker("w2")
        s.wait_drained(timeout=180)
        s.finish(**figures)

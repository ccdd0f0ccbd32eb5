"""`cem doctor`: is the pipeline well? One line per check, OK or FAIL with what to do, on one screen; exit 0 when
every check passes, 1 otherwise. It reads, never changes: Kafka through an admin client and a consumer that never
joins the group (the lag comes from the group's committed offsets, not from a worker), the warehouse through a
plain connection, a worker through its /status page (optional: a worker elsewhere is fine)."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from cem.domain.health import (
    FAIL,
    INFO,
    OK,
    Check,
    exit_code,
    judge_deadletters,
    judge_lag,
    judge_members,
    judge_migrations,
    judge_topics,
    render,
)
from cem.kafka import kafka_client_options, wanted_topics
from cem.preflight import Unavailable, check_kafka, check_warehouse
from cem.settings import Settings
from sinks.clickhouse import MIGRATIONS_DIR, WarehouseError, connect, parse_url

KAFKA_TIMEOUT_SECONDS = 20.0
HOUR_MS = 3_600_000


@dataclass
class KafkaFacts:
    partitions: dict[str, int] = field(default_factory=dict)  # existing pipeline topics -> partitions
    lags: dict[str, int] = field(default_factory=dict)  # topics the group consumes -> messages not committed
    members: int | None = None
    deadletters_total: int = 0
    deadletters_last_hour: int = 0


def run_doctor(settings: Settings, out: TextIO) -> int:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # its errors become the checks' lines
    checks = kafka_checks(settings) + warehouse_checks(settings) + [worker_check(settings)]
    print(f"cem doctor: Kafka {settings.kafka_bootstrap}, consumer group {settings.app_id}, topic prefix "
          f"{settings.topic_prefix}", file=out)
    for line in render(checks):
        print(line, file=out)
    return exit_code(checks)


def kafka_checks(settings: Settings, now_ms: int | None = None) -> list[Check]:
    try:
        check_kafka(settings)
        facts = asyncio.run(asyncio.wait_for(gather_kafka(settings, now_ms or int(time.time() * 1000)),
                                             KAFKA_TIMEOUT_SECONDS))
    except Unavailable as exc:
        return [Check(FAIL, "kafka", str(exc)),
                Check(INFO, "topics, lag", "not checked without a broker")]
    except Exception as exc:  # the broker accepted a connection but did not answer as a broker
        return [Check(FAIL, "kafka", f"{settings.kafka_bootstrap} did not answer: {type(exc).__name__}: "
                      f"{str(exc)[:160]}")]
    single = [settings.resolve_topic, settings.control_topic, settings.schemas_topic]
    wanted = wanted_topics(settings)
    return [Check(OK, "kafka", f"{settings.kafka_bootstrap} answers"),
            *judge_topics(wanted, facts.partitions, single),
            *judge_lag(facts.lags, settings.doctor_max_lag),
            judge_members(facts.members, settings.app_id),
            judge_deadletters(facts.deadletters_last_hour, facts.deadletters_total,
                              settings.doctor_max_deadletters_per_hour, settings.deadletter_topic)]


async def gather_kafka(settings: Settings, now_ms: int) -> KafkaFacts:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    options = kafka_client_options(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000, **options)
    # In the group only to read its commits: it never subscribes, so it never joins nor moves a partition.
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=settings.app_id,
                                enable_auto_commit=False, request_timeout_ms=10_000, **options)
    await admin.start()
    try:
        await consumer.start()
        facts = KafkaFacts()
        existing = set(await admin.list_topics())
        present = [t for t in wanted_topics(settings) if t in existing]  # never ask for a missing one: auto-creation
        described = await admin.describe_topics(present) if present else []
        partitions = {d["topic"]: [TopicPartition(d["topic"], p["partition"]) for p in d["partitions"]]
                      for d in described if not d["error_code"]}
        facts.partitions = {topic: len(tps) for topic, tps in partitions.items()}
        consumed = [t for t in (*settings.raw_topics, settings.resolve_topic, settings.control_topic)
                    if t in partitions]
        tps = [tp for t in consumed for tp in partitions[t]]
        if tps:
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            committed = await asyncio.gather(*(consumer.committed(tp) for tp in tps))
            for tp, done in zip(tps, committed, strict=True):
                behind = ends[tp] - (done if done is not None else starts[tp])
                facts.lags[tp.topic] = facts.lags.get(tp.topic, 0) + max(0, behind)
        facts.members = await group_members(admin, settings.app_id)
        dead = partitions.get(settings.deadletter_topic, [])
        if dead:
            ends = await consumer.end_offsets(dead)
            starts = await consumer.beginning_offsets(dead)
            since = await consumer.offsets_for_times({tp: now_ms - HOUR_MS for tp in dead})
            facts.deadletters_total = sum(ends[tp] - starts[tp] for tp in dead)
            facts.deadletters_last_hour = sum(ends[tp] - since[tp].offset for tp in dead if since[tp] is not None)
        return facts
    finally:
        await consumer.stop()
        await admin.close()


async def group_members(admin: Any, group: str) -> int | None:
    try:
        described = await admin.describe_consumer_groups([group])
    except Exception:  # a broker without the request (the demo's Tansu)
        return None
    # DescribeGroupsResponse: groups of (error_code, group_id, state, protocol_type, protocol, members, ...)
    for response in described:
        for entry in response.groups:
            if entry[1] == group:
                return len(entry[5])
    return 0


def warehouse_checks(settings: Settings) -> list[Check]:
    try:
        target = parse_url(settings.clickhouse_url)
    except WarehouseError as exc:
        return [Check(FAIL, "warehouse", str(exc))]
    if target.scheme == "chdb" and not Path(target.path).is_dir():  # connecting would create it
        return [Check(FAIL, "warehouse", f"no embedded warehouse at {target.path}: run `make demo` or `cem worker`, "
                      "or set CEM_CLICKHOUSE_URL (or CEM_STATE_DIR) to the warehouse you mean")]
    try:
        check_warehouse(settings, must_exist=False)
        warehouse = connect(settings.clickhouse_url)
    except Unavailable as exc:
        status = INFO if "in use by process" in str(exc) else FAIL  # the embedded warehouse, open in a worker
        return [Check(status, "warehouse", str(exc))]
    except Exception as exc:
        return [Check(FAIL, "warehouse", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")]
    try:
        version = warehouse.query("SELECT version()")[0][0]
        database = warehouse.database
        tables = {row[0] for row in warehouse.query(
            f"SELECT name FROM system.tables WHERE database = '{database}' AND name = 'schema_migrations'")}
        applied = ({row[0] for row in warehouse.query(f"SELECT name FROM {database}.schema_migrations")}
                   if tables else None)
    except Exception as exc:
        return [Check(FAIL, "warehouse", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")]
    finally:
        warehouse.close()
    files = sorted(path.stem for path in MIGRATIONS_DIR.glob("*.sql"))
    return [Check(OK, "warehouse", f"ClickHouse {version}, database {database}"), judge_migrations(files, applied)]


def worker_check(settings: Settings) -> Check:
    host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "::", "") else settings.web_host
    url = f"http://{host}:{settings.web_port}/status"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status = orjson.loads(response.read())
    except (OSError, ValueError):
        return Check(INFO, "worker /status", f"nothing answers at {url} (fine when the workers run elsewhere)")
    return Check(OK, "worker /status", f"{url}: consumed {status.get('consumed', '?')}, resolved "
                 f"{status.get('resolved', '?')}, dead-lettered {status.get('deadlettered', '?')}")

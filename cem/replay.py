"""`cem replay --from TIME --database NAME`: rebuild a new warehouse database from the records retained in the raw
topics, appended from TIME on, with the worker's own code, in this process.

How: a consumer without a group (the workers' offsets are untouched) reads each raw partition from the first
offset whose record timestamp is at or after TIME (Kafka's offsets_for_times) to the end offset it has when the
replay starts; each record goes through the ingest stage's parser (streams.ingest.Ingestor, with the writer
schemas registered on the schemas topic and, if configured, the schema registry) and each batch of valid events
through the resolver service (cem.service.resolver_service) into the new database. Erasure requests on the
control topic from TIME on are applied at their place in time: the records appended before a request are
resolved first, then the request is applied, then the replay goes on. A record is judged with its own timestamp
as the clock, as the worker judged it when it arrived.

Why the result is the live one: events land once, because the resolver deduplicates by event_id (the new
database starts empty and every write is idempotent); the grouping (customers, sessions, journeys) is the same,
because the resolver's output does not depend on the order events arrive in (tests/unit/test_identity_order.py,
test_journey_order.py), which is also what makes 1 or N live workers agree. What differs: records appended before
TIME are not replayed (so events they held are missing, and so are links they made), and of two copies of one
event_id with different content the first read wins, which across partitions may not be the copy the live worker
saw first. Dead letters are counted, not written again: they are already in the dead-letter topic.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

import orjson

from cem.domain.model import Interaction, Rejection
from cem.domain.validate import parse_event_time
from cem.kafka import kafka_client_options
from cem.progress import progress_bar
from cem.service.resolver_service import ResolverService
from cem.settings import CHANNELS, Settings
from schemas.codec import new_registry
from schemas.confluent import ConfluentSchemas
from schemas.internal import InternalMessageError
from sinks.clickhouse import connect, parse_url
from streams.control import read_control
from streams.ingest import Ingestor
from streams.schema_feed import SchemaFeed

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
BATCH_RECORDS = 5_000
SCHEMAS_READ_SECONDS = 60.0
_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def time_argument(text: str) -> int:
    """`--from`: an ISO-8601 time, UTC when it has no zone; epoch milliseconds."""
    value = parse_event_time(int(text) if text.isdigit() else text)
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time, e.g. 2026-11-20T00:00:00Z")
    return value


def database_argument(text: str) -> str:
    if not _DATABASE_NAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a database name: letters, digits and _, not first a digit")
    return text


def with_database(url: str, database: str) -> str:
    """CEM_CLICKHOUSE_URL pointing at another database of the same server (or embedded directory)."""
    if parse_url(url).scheme == "chdb":
        return url.split("?", 1)[0] + f"?database={database}"
    base, _, _ = url.partition("?")
    return base.rsplit("/", 1)[0] + f"/{database}" if base.count("/") >= 3 else f"{base}/{database}"


@dataclass
class Outcome:
    records: int = 0
    events: int = 0
    written: int = 0
    erasures: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


def run_replay(settings: Settings, since_ms: int, database: str, err: TextIO | None = None) -> int:
    err = err or sys.stderr
    target = replace(settings, clickhouse_url=with_database(settings.clickhouse_url, database))
    if database == parse_url(settings.clickhouse_url).database:
        print(f"refused: {database} is the live database (CEM_CLICKHOUSE_URL): replay into a new one", file=err)
        return EXIT_REFUSED
    warehouse = connect(target.clickhouse_url)
    try:
        tables = warehouse.query(f"SELECT count() FROM system.tables WHERE database = '{database}'")[0][0]
    finally:
        warehouse.close()
    if tables:
        print(f"refused: database {database} exists and holds {tables} tables: replay builds a new database; drop "
              "it or name another", file=err)
        return EXIT_REFUSED
    outcome = asyncio.run(replay(settings, target, since_ms, err))
    reasons = ", ".join(f"{reason} {n}" for reason, n in outcome.rejected.most_common()) or "none"
    print(f"replayed {outcome.records} records appended since {_iso(since_ms)} into {database}: {outcome.events} "
          f"valid events, {outcome.written} written (the others were duplicates), {outcome.erasures} erasures "
          f"applied; not written (already in {settings.deadletter_topic}): {reasons}", file=err)
    return EXIT_OK


async def replay(settings: Settings, target: Settings, since_ms: int, err: TextIO) -> Outcome:
    from aiokafka import AIOKafkaConsumer

    registry = new_registry()
    await _read_registered_schemas(settings, registry)
    confluent = None
    if settings.schema_registry_url:
        registry.confluent_enabled = True
        confluent = ConfluentSchemas(settings.schema_registry_url, settings.schema_registry_timeout_seconds)
    ingestor = Ingestor(settings, registry)
    clock_ms = [since_ms]
    service = ResolverService(replace(target, state_store="memory"), clock=lambda: clock_ms[0] / 1000)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", **kafka_client_options(settings))
    await consumer.start()
    outcome = Outcome()
    try:
        raw = await _partitions(settings, settings.raw_topics)
        starts = await _offsets_at(consumer, raw, since_ms)
        ends = await consumer.end_offsets(raw) if raw else {}
        erasures = await _erasures(consumer, settings, since_ms)
        total = sum(ends[tp] - starts[tp] for tp in raw)
        with progress_bar("replaying", total, "records", err) as advance:
            positions = dict(starts)
            for at_ms, request in [*erasures, (None, None)]:
                bounds = ends if at_ms is None else await _offsets_at(consumer, raw, at_ms, ends)
                pending: list[Any] = []
                async for batch in _read(consumer, positions, bounds):
                    pending.extend(batch)
                    if len(pending) >= BATCH_RECORDS:  # partitions are read one by one; writes span them
                        await _resolve(pending, ingestor, confluent, service, clock_ms, outcome)
                        advance(len(pending))
                        pending = []
                if pending:
                    await _resolve(pending, ingestor, confluent, service, clock_ms, outcome)
                    advance(len(pending))
                positions = {tp: max(positions[tp], bounds[tp]) for tp in raw}
                if request is not None and at_ms is not None:
                    clock_ms[0] = at_ms
                    if service.apply_control(request) is not None:
                        outcome.erasures += 1
    finally:
        await consumer.stop()
        service.close()
    return outcome


async def _resolve(batch: list[Any], ingestor: Ingestor, confluent: ConfluentSchemas | None,
                   service: ResolverService, clock_ms: list[int], outcome: Outcome) -> None:
    if confluent is not None and ingestor.registry is not None:
        await confluent.resolve([m.value for m in batch], ingestor.registry, time.time())
    valid: list[Interaction] = []
    for message in batch:
        channel = message.topic.rsplit(".", 1)[-1]
        parsed = ingestor.parse(message.value, channel if channel in CHANNELS else None, message.timestamp)
        if isinstance(parsed, Rejection):
            outcome.rejected[parsed.reason.value] += 1
        else:
            valid.append(parsed)
    outcome.records += len(batch)
    if valid:
        clock_ms[0] = max(clock_ms[0], max(m.timestamp for m in batch))
        result = await asyncio.get_running_loop().run_in_executor(None, service.process_and_write, valid)
        outcome.events += len(valid)
        outcome.written += result.written
        for _event, _detail in result.rejected:
            outcome.rejected["warehouse_rejected"] += 1
        outcome.rejected["duplicate_conflict"] += len(result.effects.conflicting)
    outcome.rejected = +outcome.rejected  # drop zero counts


async def _partitions(settings: Settings, topics: list[str]) -> list[Any]:
    """The partitions of those of `topics` that exist (a missing one is not asked for: brokers may create it)."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **kafka_client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [t for t in topics if t in existing]
        described = await admin.describe_topics(present) if present else []
    finally:
        await admin.close()
    return sorted((TopicPartition(d["topic"], p["partition"]) for d in described if not d["error_code"]
                   for p in d["partitions"]), key=lambda tp: (topics.index(tp.topic), tp.partition))


async def _offsets_at(consumer: Any, partitions: list[Any], at_ms: int, ends: dict[Any, int] | None = None
                      ) -> dict[Any, int]:
    """Per partition, the first offset whose record is at or after `at_ms` (the end when there is none)."""
    if not partitions:
        return {}
    found = await consumer.offsets_for_times({tp: at_ms for tp in partitions})
    ends = ends if ends is not None else await consumer.end_offsets(partitions)
    return {tp: ends[tp] if found[tp] is None else found[tp].offset for tp in partitions}


async def _read(consumer: Any, positions: dict[Any, int], bounds: dict[Any, int]) -> Any:
    """Batches of the records between `positions` and `bounds` (excluded), partition by partition."""
    for tp, start in positions.items():
        end = bounds[tp]
        if start >= end:
            continue
        consumer.assign([tp])
        consumer.seek(tp, start)
        at = start
        while at < end:
            fetched = await consumer.getmany(tp, timeout_ms=1000, max_records=BATCH_RECORDS)
            batch = [m for m in fetched.get(tp, []) if m.offset < end]
            if batch:
                at = batch[-1].offset + 1
                yield batch
            elif fetched.get(tp):  # only records past the bound (compaction or a transaction marker before it)
                break
            else:
                at = await consumer.position(tp)


async def _erasures(consumer: Any, settings: Settings, since_ms: int) -> list[tuple[int, dict[str, Any]]]:
    """The valid erasure requests of the control topic appended from `since_ms` on, in time order."""
    control = await _partitions(settings, [settings.control_topic])
    if not control:
        return []
    starts = await _offsets_at(consumer, control, since_ms)
    ends = await consumer.end_offsets(control)
    requests = []
    async for batch in _read(consumer, starts, ends):
        for message in batch:
            try:
                relayed = read_control(settings.signing_key, message.value, message.headers)
            except InternalMessageError:
                continue  # the worker dead-lettered it
            requests.append((message.timestamp, orjson.loads(relayed)))
    return sorted(requests, key=lambda item: item[0])


async def _read_registered_schemas(settings: Settings, registry: Any) -> None:
    if not await _partitions(settings, [settings.schemas_topic]):
        return  # nothing was ever registered (a worker creates the topic at start)
    feed = SchemaFeed(settings, registry)
    task = asyncio.ensure_future(feed.run())
    try:
        await asyncio.wait_for(feed.ready.wait(), SCHEMAS_READ_SECONDS)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))

"""Benchmark traffic: the project's simulator, scaled, with identifiers that stay unique at any size, and a
compact generator of many customers with few events each for the memory run. Plus fast and rate-limited
producers.

devtools.simulate.Simulator derives phones and issue refs from the person index (phone numbers repeat every 10,000
people), which is right for the tests' few hundred customers but would merge unrelated people at benchmark
scale. BenchSimulator keeps everything else (channels, identity links, placeholders, duplicates, re-encodings,
malformed records, out-of-order delivery) and only makes identifiers unique per (offset + index).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cem.domain.model import Interaction
from cem.settings import Settings
from devtools.simulate import HAPPY, NEUTRAL, UNHAPPY, USER_AGENTS, Person, Simulator, iso
from schemas.codec import DecodeError, decode, encode_avro, encode_json
from streams.app import Ingestor

RawRecord = tuple[str, bytes | None, bytes]  # (channel, key, value)
EVENTS_PER_CUSTOMER = 17.7  # what Simulator produces on average, measured (records incl. duplicates: ~18.6)


def unique_phone(n: int) -> str:
    """A distinct, well-formed phone number for every n < 8,000,000, written in the simulator's styles."""
    block, line = divmod(n, 10_000)
    if n % 2:
        return f"+1 (415) {200 + block % 800:03d}-{line:04d}"
    return f"+44 20 7{block % 1000:03d} {line:04d}"


# Distinct user-agent strings: real traffic has thousands (browser builds, OS versions, apps), and the first sight
# of each one costs the ua-parser resolver a full regex scan; four strings would hide that cost entirely. A person
# keeps one build, drawn log-uniformly from UA_VARIANTS: a few builds are very common, with a long tail (about
# 3,000 distinct strings among the default run's 11,000 customers, 1.5% of its records).
UA_VARIANTS = 5_000


def varied_user_agent(user_agent: str, n: int) -> str:
    """One of UA_VARIANTS builds of the same browser: a different WebKit build number, same families."""
    u = int.from_bytes(hashlib.blake2b(n.to_bytes(8, "little"), digest_size=4).digest(), "little") / 2**32
    variant = int(UA_VARIANTS ** u) - 1
    head, sep, tail = user_agent.partition("AppleWebKit/")
    if not sep:
        return user_agent
    _version, space, rest = tail.partition(" ")
    return f"{head}AppleWebKit/{537 + variant % 70}.{variant // 70}{space}{rest}"


class BenchSimulator(Simulator):
    """Simulator whose people are numbered from `offset`, with identifiers unique across offsets, a realistic
    number of distinct user agents (UA_VARIANTS; a person keeps one) and free texts that are not all the same
    dozen sentences (each gets a reference number, so caching a text's sentiment only pays for re-sent
    duplicates, as in real traffic)."""

    def __init__(self, customers: int, seed: int, offset: int, base_time_ms: int, **kwargs: Any) -> None:
        super().__init__(customers=customers, seed=seed, base_time_ms=base_time_ms, **kwargs)
        self.offset = offset
        self._texts = 0

    def _emit(self, person: Person, channel: str, event_type: str, at_ms: int, identifiers: dict[str, str],
              **extra: Any) -> str:
        properties = extra.get("properties")
        if properties and "user_agent" in properties:
            extra["properties"] = {**properties,
                                   "user_agent": varied_user_agent(properties["user_agent"], person.index)}
        if extra.get("text"):
            self._texts += 1
            extra["text"] = f"{extra['text']} (ref {person.index}-{self._texts})"
        return super()._emit(person, channel, event_type, at_ms, identifiers, **extra)

    def _person(self, i: int) -> Person:
        n = self.offset + i
        return Person(
            index=n,  # issue refs (CASE-<index>-<k>) stay unique across traffic sets too
            anonymous_id=f"anon-{self._uuid()}",
            device_id=f"dev-{self._uuid()}",
            email=f"Customer.{n}@Example.org " if n % 5 == 0 else f"customer.{n}@example.org",
            phone=unique_phone(n),
            customer_ref=f"CRM-{1_000_000 + n}" if n % 3 else None,
            social=f"twitter:@cust{n}" if n % 4 == 0 else None,
        )


@dataclass
class TrafficSet:
    records: list[RawRecord]
    unique_valid: int  # rows interaction_log must end with
    customers: int
    duplicates: int
    malformed: int
    event_ids: list[str | None] = field(default_factory=list)  # per record (None for malformed ones)

    def to_topics(self, settings: Settings) -> list[tuple[str, bytes | None, bytes]]:
        return [(settings.raw_topic(c), k, v) for c, k, v in self.records]


# Delivery order. The simulator shuffles all records of its whole time span (every event may arrive days late): a
# correctness worst case that makes about 35% of events "late" for the identity graph's replay. A live stream is
# mostly in event-time order: "time" delivers records by event time plus a lateness (exponential, mean
# LATENESS_MEAN_MS; 1% of records hours late, like devices syncing after being offline; re-sent duplicates get
# their own lateness). "shuffled" keeps the simulator's order. "channels" is how a consumer drains a backlog of
# several topics: each channel's records in "time" order, the channels taken in turn, CHANNEL_CHUNK records at a
# time; a quiet channel's chunk spans far more event time than a busy one's, so the channels drift apart.
ORDERS = ("time", "shuffled", "channels")
CHANNEL_CHUNK = 300
LATENESS_MEAN_MS = 120_000
VERY_LATE_SHARE = 0.01
HOUR_MS = 3_600_000


def delivery_order(timed: list[tuple[int | None, RawRecord]], seed: int, order: str) -> list[RawRecord]:
    """Records in delivery order; `timed` pairs each record with its event time (None: anywhere)."""
    if order == "shuffled":
        return [record for _, record in timed]
    rng = random.Random(seed * 7919 + 17)
    known = [t for t, _ in timed if t is not None]
    low, high = (min(known), max(known)) if known else (0, 1)
    keyed = []
    for i, (occurred, record) in enumerate(timed):
        at = occurred if occurred is not None else rng.randint(low, high)
        late = rng.expovariate(1 / LATENESS_MEAN_MS)
        if rng.random() < VERY_LATE_SHARE:
            late += rng.uniform(1, 12) * HOUR_MS
        keyed.append((at + late, i, record))
    keyed.sort()
    in_time = [record for _, _, record in keyed]
    return by_channel_turns(in_time) if order == "channels" else in_time


def by_channel_turns(records: list[RawRecord], chunk: int = CHANNEL_CHUNK) -> list[RawRecord]:
    """Each channel's records in their order, the channels taken in turn, `chunk` records at a time."""
    queues: dict[str, list[RawRecord]] = {}
    for record in records:
        queues.setdefault(record[0], []).append(record)
    out: list[RawRecord] = []
    start = 0
    while len(out) < len(records):
        for queue in queues.values():
            out.extend(queue[start:start + chunk])
        start += chunk
    return out


def simulated(events: int, seed: int, offset: int, base_time_ms: int, order: str = "time") -> TrafficSet:
    customers = max(1, round(events / EVENTS_PER_CUSTOMER))
    traffic = BenchSimulator(customers, seed, offset, base_time_ms).run()
    timed: list[tuple[int | None, RawRecord]] = []
    for r in traffic.records:
        event = traffic.events.get(_event_id(r.value) or "")
        timed.append((event["occurred_at"] if event is not None else None, (r.channel, r.key, r.value)))
    return TrafficSet(
        records=delivery_order(timed, seed, order),
        unique_valid=len(traffic.person_of_event),
        customers=traffic.customers,
        duplicates=traffic.duplicates_sent,
        malformed=len(traffic.invalid),
    )


def _event_id(value: bytes, max_bytes: int = 1_048_576) -> str | None:
    try:
        record = decode(value, max_bytes)
    except DecodeError:
        return None
    event_id = record.get("event_id") if isinstance(record, dict) else None
    return event_id if isinstance(event_id, str) and event_id else None


def with_event_ids(traffic: TrafficSet, max_bytes: int = 1_048_576) -> TrafficSet:
    traffic.event_ids = [_event_id(value, max_bytes) for _channel, _key, value in traffic.records]
    return traffic


def many_customers(customers: int, events_per_customer: int, seed: int, offset: int, base_time_ms: int,
                   duplicate_rate: float = 0.05, order: str = "time", spread_days: int = 5) -> TrafficSet:
    """Many customers, few events each (the memory run: 1M events from 200k customers is 5 per customer).

    Each customer browses anonymously, logs in on the web (anonymous id + email) and in the app (device id +
    email + CRM id), orders (email + phone + CRM id), and then has service contacts, e-mail engagement or
    surveys, so the identity graph, sessions and journeys all hold state. Half JSON, half Avro."""
    rng = random.Random(seed)
    day_ms = 86_400_000
    records: list[tuple[int | None, RawRecord]] = []
    unique = 0
    duplicates = 0

    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128)))

    def emit(channel: str, record: dict[str, Any]) -> None:
        nonlocal unique, duplicates
        unique += 1
        copies = 2 if rng.random() < duplicate_rate else 1
        duplicates += copies - 1
        for _ in range(copies):
            if rng.random() < 0.5:
                value = encode_json({**record, "occurred_at": iso(record["occurred_at"])})
            else:
                value = encode_avro({"text": None, "issue_ref": None, "survey": None, **record})
            records.append((record["occurred_at"], (channel, record["event_id"].encode(), value)))

    for i in range(customers):
        n = offset + i
        email = f"customer.{n}@example.org"
        anon, device = f"anon-{uid()}", f"dev-{uid()}"
        crm = f"CRM-{1_000_000 + n}" if n % 3 else None
        t = base_time_ms + rng.randrange(0, spread_days * day_ms)  # when the customer first shows up
        plan = ["page_view", "web_login", "app_login", "purchase"]
        plan += [rng.choice(["ticket", "email_open", "survey", "page_view"]) for _ in range(events_per_customer - 4)]
        for step in plan[:events_per_customer]:
            t += rng.randint(10, 3_600) * 1000
            base = {"event_id": uid(), "occurred_at": t, "properties": {}}
            if step == "page_view":
                emit("web", {**base, "channel": "web", "type": "page_view", "identifiers": {"anonymous_id": anon},
                             "properties": {"url": f"/p/{rng.randint(1, 50)}",
                                            "user_agent": varied_user_agent(rng.choice(USER_AGENTS), n)}})
            elif step == "web_login":
                emit("web", {**base, "channel": "web", "type": "login",
                             "identifiers": {"anonymous_id": anon, "email": email}})
            elif step == "app_login":
                ids = {"device_id": device, "email": email, **({"customer_ref": crm} if crm else {})}
                emit("mobile", {**base, "channel": "mobile", "type": "login", "identifiers": ids,
                                "properties": {"app_version": "5.2.1"}})
            elif step == "purchase":
                ids = {"email": email, "phone": unique_phone(n), **({"customer_ref": crm} if crm else {})}
                emit("commerce", {**base, "channel": "commerce", "type": "purchase", "identifiers": ids,
                                  "properties": {"order_total": f"{rng.randint(5, 500)}.00", "currency": "EUR"}})
            elif step == "ticket":
                emit("support", {**base, "channel": "support", "type": "ticket_opened", "identifiers": {"email": email},
                                 "issue_ref": f"CASE-{n}-{rng.randint(0, 9)}",
                                 "text": f"{rng.choice(UNHAPPY + NEUTRAL)} (ref {n}-{t})"})
            elif step == "survey":
                emit("survey", {**base, "channel": "survey", "type": "survey_response", "identifiers": {"email": email},
                                "survey": {"kind": "csat", "score": rng.randint(1, 5)},
                                "text": f"{rng.choice(HAPPY)} (ref {n}-{t})"})
            else:
                emit("email", {**base, "channel": "email", "type": "email_open", "identifiers": {"email": email},
                               "properties": {"campaign": f"cmp-{rng.randint(1, 5)}"}})
    if order == "shuffled":
        rng.shuffle(records)
    return TrafficSet(delivery_order(records, seed, order), unique, customers, duplicates, 0)


# ---- producing ------------------------------------------------------------------------------------------
def _producer(settings: Settings, max_batch_size: int, linger_ms: int) -> Any:
    from aiokafka import AIOKafkaProducer

    from cem.kafka import kafka_client_options

    return AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=False,
                            max_batch_size=max_batch_size, linger_ms=linger_ms, **kafka_client_options(settings))


async def produce_fast(settings: Settings, records: Sequence[tuple[str, bytes | None, bytes]]) -> float:
    """Produce everything as fast as aiokafka batches it (large batches); returns records/s."""
    producer = _producer(settings, 262_144, 20)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for topic, key, value in records:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 50_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(records) / (time.perf_counter() - started)


async def produce_at_rate(settings: Settings, records: Sequence[tuple[str, bytes | None, bytes]], rate: float,
                          sent_at: list[float], on_tick: Callable[[int], None] | None = None) -> float:
    """Produce at a fixed rate (records/s), recording each record's wall-clock send time (time.time(), taken
    when the record is handed to the producer, whose linger is 5 ms). Returns the achieved rate."""
    producer = _producer(settings, 65_536, 5)
    await producer.start()
    started = time.monotonic()
    try:
        pending = []
        for i, (topic, key, value) in enumerate(records):
            due = started + i / rate
            ahead = due - time.monotonic()
            if ahead > 0.002:
                await asyncio.sleep(ahead)
            sent_at.append(time.time())
            pending.append(await producer.send(topic, value, key=key))
            if on_tick is not None and i % 1000 == 0:
                on_tick(i)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(records) / (time.monotonic() - started)


def parsed_interactions(records: Sequence[RawRecord], settings: Settings, now_ms: int) -> list[Interaction]:
    """The valid events among `records`, parsed by the worker's own ingest (every copy of a re-sent event)."""
    ingestor = Ingestor(settings)
    return [p for channel, _key, value in records
            if isinstance(p := ingestor.parse(value, channel, now_ms), Interaction)]

"""Realistic multichannel traffic with known ground truth.

Each simulated person has identifiers on several channels and events that tie them together (a web login
carries the anonymous id and the email, an app login the device id and the customer_ref, an order the email,
phone and customer_ref). The ground truth is computed here, independently of the pipeline: which events are
valid and unique, which person each belongs to, each service journey's metrics and each person's sessions.
Traffic also carries re-sent duplicates (some re-encoded), out-of-order delivery, placeholder identifiers that
must link nobody, and malformed records.

    python -m devtools.simulate [--customers N] [--seed S] [--out FILE]

publishes the traffic to CEM_KAFKA_BOOTSTRAP, or writes it to FILE for `cem publish FILE`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from cem.kafka import produce
from cem.progress import progress_bar
from cem.settings import Settings, raw_topic
from schemas.codec import encode_avro, encode_json

BASE_TIME_MS = int(datetime(2026, 11, 16, tzinfo=UTC).timestamp() * 1000)
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
DAY_MS = 24 * HOUR_MS
SESSION_GAP_MS = 30 * MINUTE_MS
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile "
    "Safari/537.36",
]
HAPPY = ["Thanks, that was quick and easy!", "Great service, the agent was really helpful.",
         "Love the new app, works perfectly.", "Issue fixed, thank you so much."]
UNHAPPY = ["This is the third time I call about this, terrible.", "Still broken. Very disappointed.",
           "Awful experience, nobody answers the chat.", "My refund is late and support is useless."]
NEUTRAL = ["I want to change my delivery address.", "Where is my order?", "How do I reset my password?"]
PLACEHOLDERS = ["null", "undefined", "anonymous", "0", "", "  ", "NULL", "guest",
                "00000000-0000-0000-0000-000000000000"]


@dataclass
class Person:
    index: int
    anonymous_id: str
    device_id: str
    email: str
    phone: str
    customer_ref: str | None
    social: str | None


@dataclass
class JourneyTruth:
    contacts: int
    channels: tuple[str, ...]
    resolved: bool
    fcr: bool
    time_to_resolution_s: float | None
    person: int


@dataclass
class Record:
    channel: str
    key: bytes | None
    value: bytes

    @property
    def topic(self) -> str:
        return raw_topic(self.channel)


@dataclass
class Traffic:
    records: list[Record] = field(default_factory=list)
    person_of_event: dict[str, int] = field(default_factory=dict)  # every unique valid event
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # event_id -> the first copy sent
    journeys: dict[str, JourneyTruth] = field(default_factory=dict)  # issue_refs are unique per person here
    sessions_per_person: dict[int, int] = field(default_factory=dict)
    invalid: list[tuple[str, bytes]] = field(default_factory=list)  # (expected reason, bytes)
    duplicates_sent: int = 0
    conflicting_duplicates_sent: int = 0

    @property
    def customers(self) -> int:
        return len(set(self.person_of_event.values()))

    def topic_records(self, settings: Settings) -> list[tuple[str, bytes | None, bytes]]:
        """The records as (topic, key, value) on the raw topics of `settings` (its topic prefix)."""
        return [(settings.raw_topic(r.channel), r.key, r.value) for r in self.records]

    def groups(self) -> set[frozenset[str]]:
        """The unique valid events of each person: what the pipeline's customers must be."""
        return groups(self.person_of_event.items())


def groups(owners: Iterable[tuple[str, Hashable]]) -> set[frozenset[str]]:
    """Event ids grouped by their owner, from (event id, owner) pairs: a person of the ground truth, or a customer
    id the pipeline assigned. Two groupings are equal when they put the same events together, whatever the ids."""
    by_owner: dict[Hashable, set[str]] = defaultdict(set)
    for event_id, owner in owners:
        by_owner[owner].add(event_id)
    return {frozenset(v) for v in by_owner.values()}


def recent_base_ms(days_ago: int = 12, now: float | None = None) -> int:
    """Midnight UTC `days_ago` days before `now` (default: the current time): simulated days starting there are in
    the past and inside the range of event times the validator accepts."""
    today = int(time.time() if now is None else now) // 86_400
    return (today - days_ago) * DAY_MS


class Simulator:
    def __init__(self, customers: int = 300, seed: int = 7, duplicate_rate: float = 0.05,
                 malformed: int = 12, base_time_ms: int = BASE_TIME_MS, days: int = 5) -> None:
        self.rng = random.Random(seed)
        self.n_customers = customers
        self.duplicate_rate = duplicate_rate
        self.n_malformed = malformed
        self.base = base_time_ms
        self.days = days
        self.traffic = Traffic()
        self._events: list[tuple[str, dict[str, Any], int]] = []  # (channel, record, person)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128)))

    def run(self) -> Traffic:
        people = [self._person(i) for i in range(self.n_customers)]
        for person in people:
            self._life(person)
        self._sessions_truth()
        self._encode_all()
        self._malformed()
        self.rng.shuffle(self.traffic.records)  # out-of-order delivery, across and within channels
        return self.traffic

    def _person(self, i: int) -> Person:
        return Person(
            index=i,
            anonymous_id=f"anon-{self._uuid()}",
            device_id=f"dev-{self._uuid()}",
            email=f"Customer.{i}@Example.org " if i % 5 == 0 else f"customer.{i}@example.org",
            phone=f"+1 (415) 555-{i % 10_000:04d}" if i % 2 else f"+44 20 7946 {i % 10_000:04d}",
            customer_ref=f"CRM-{100000 + i}" if i % 3 else None,
            social=f"twitter:@cust{i}" if i % 4 == 0 else None,
        )

    def _emit(self, person: Person, channel: str, event_type: str, at_ms: int, identifiers: dict[str, str],
              **extra: Any) -> str:
        event_id = self._uuid()
        record: dict[str, Any] = {
            "event_id": event_id,
            "channel": channel,
            "type": event_type,
            "occurred_at": at_ms,
            "identifiers": identifiers,
            "properties": extra.pop("properties", {}),
        }
        record.update({k: v for k, v in extra.items() if v is not None})
        self._events.append((channel, record, person.index))
        self.traffic.person_of_event[event_id] = person.index
        self.traffic.events[event_id] = record
        return event_id

    def _life(self, p: Person) -> None:
        rng = self.rng
        start = self.base + rng.randrange(0, self.days * 24) * HOUR_MS
        ua = rng.choice(USER_AGENTS)
        # Web visits: anonymous browsing, then a login that ties the anonymous id to the email.
        t = start
        for visit in range(rng.randint(1, 3)):
            for _ in range(rng.randint(2, 5)):
                self._emit(p, "web", "page_view", t, {"anonymous_id": p.anonymous_id},
                           properties={"url": f"/p/{rng.randint(1, 50)}", "user_agent": ua,
                                       "utm_source": rng.choice(["google", "newsletter", "direct"])})
                t += rng.randint(10, 600) * 1000
            if visit == 0:
                ids = {"anonymous_id": p.anonymous_id, "email": p.email}
                if rng.random() < 0.3:  # a placeholder must never link this person to anyone
                    ids["device_id"] = rng.choice(PLACEHOLDERS)
                self._emit(p, "web", "login", t, ids, properties={"user_agent": ua})
            t += rng.randint(2, 20) * HOUR_MS
        # Mobile app: device id, logged in with the email (and CRM id when the person has one).
        t = start + rng.randint(1, 30) * HOUR_MS
        app_ids = {"device_id": p.device_id, "email": p.email}
        if p.customer_ref:
            app_ids["customer_ref"] = p.customer_ref
        self._emit(p, "mobile", "login", t, app_ids, properties={"app_version": "5.2.1"})
        for _ in range(rng.randint(1, 4)):
            t += rng.randint(1, 40) * MINUTE_MS
            self._emit(p, "mobile", "screen_view", t, {"device_id": p.device_id},
                       properties={"screen": rng.choice(["home", "orders", "help"])})
        # Email engagement.
        for _ in range(rng.randint(0, 3)):
            t = start + rng.randint(0, self.days * 24) * HOUR_MS
            self._emit(p, "email", rng.choice(["email_open", "email_click"]), t, {"email": p.email},
                       properties={"campaign": f"cmp-{rng.randint(1, 5)}"})
        # An order ties the phone (and CRM id) to the email.
        t = start + rng.randint(2, 48) * HOUR_MS
        order_ids = {"email": p.email, "phone": p.phone}
        if p.customer_ref:
            order_ids["customer_ref"] = p.customer_ref
        total = f"{rng.randint(5, 500)}.{rng.randint(0, 99):02d}"
        self._emit(p, "commerce", "purchase", t, order_ids, properties={"order_total": total, "currency": "EUR"})
        if rng.random() < 0.3:
            store_ids = {"customer_ref": p.customer_ref} if p.customer_ref else {"phone": p.phone}
            self._emit(p, "store", "purchase", t + 3 * HOUR_MS, store_ids,
                       properties={"order_total": total, "currency": "EUR", "store": "berlin-1"})
        if p.social:
            self._emit(p, "social", "social_mention", t + HOUR_MS, {"social_handle": p.social, "email": p.email},
                       text=rng.choice(HAPPY + UNHAPPY))
        # Service issues: contacts over several channels, maybe resolved, then maybe a survey.
        for issue in range(rng.choice([0, 0, 1, 1, 2])):
            self._issue(p, f"CASE-{p.index}-{issue}", t + rng.randint(1, 24) * HOUR_MS)
        if rng.random() < 0.5:
            kind = rng.choice(["nps", "csat", "ces"])
            score = {"nps": rng.randint(0, 10), "csat": rng.randint(1, 5), "ces": rng.randint(1, 7)}[kind]
            self._emit(p, "survey", "survey_response", t + 72 * HOUR_MS, {"email": p.email},
                       survey={"kind": kind, "score": score}, text=rng.choice(HAPPY + UNHAPPY + NEUTRAL))

    def _issue(self, p: Person, issue_ref: str, t: int) -> None:
        rng = self.rng
        contacts = rng.choice([1, 1, 1, 2, 3])
        channels = []
        first = t
        for _ in range(contacts):
            channel, event_type, ids = rng.choice([
                ("call_center", "call_ended", {"phone": p.phone}),
                ("chat", "chat_message", {"email": p.email}),
                ("support", "ticket_opened", {"email": p.email}),
                ("email", "email_reply", {"email": p.email}),
            ])
            channels.append(channel)
            self._emit(p, channel, event_type, t, ids, issue_ref=issue_ref, text=rng.choice(UNHAPPY + NEUTRAL))
            t += rng.randint(10, 600) * MINUTE_MS
        resolved = rng.random() < 0.7
        ttr = None
        if resolved:
            self._emit(p, "support", "ticket_resolved", t, {"email": p.email}, issue_ref=issue_ref)
            ttr = (t - first) / 1000.0
        self.traffic.journeys[issue_ref] = JourneyTruth(
            contacts=contacts, channels=tuple(sorted(set(channels))), resolved=resolved,
            fcr=resolved and contacts == 1, time_to_resolution_s=ttr, person=p.index,
        )

    def _sessions_truth(self) -> None:
        times: dict[int, list[int]] = defaultdict(list)
        for channel, record, person in self._events:
            if channel in ("web", "mobile"):
                times[person].append(record["occurred_at"])
        for person, stamps in times.items():
            stamps.sort()
            self.traffic.sessions_per_person[person] = 1 + sum(
                1 for a, b in zip(stamps, stamps[1:], strict=False) if b - a > SESSION_GAP_MS)

    def _encode_all(self) -> None:
        rng = self.rng
        for channel, record, _person in self._events:
            key = record["event_id"].encode() if rng.random() < 0.7 else None
            self.traffic.records.append(Record(channel, key, self._encode(record)))
            if rng.random() < self.duplicate_rate:  # a client retry, sometimes re-encoded
                self.traffic.records.append(Record(channel, key, self._encode(record)))
                self.traffic.duplicates_sent += 1

    def _encode(self, record: dict[str, Any]) -> bytes:
        if self.rng.random() < 0.5:
            return encode_json({**record, "occurred_at": iso(record["occurred_at"])})
        avro = {"text": None, "issue_ref": None, "survey": None, **record}
        return encode_avro(avro)

    def _malformed(self) -> None:
        good = next(iter(self.traffic.events.values()))
        samples: list[tuple[str, str, bytes]] = [
            ("web", "malformed_json", b'{"event_id": "x1", "channel": "web",'),
            ("chat", "unknown_encoding", bytes(range(7, 40))),
            ("email", "missing_field", encode_json({k: v for k, v in good.items() if k != "event_id"})),
            ("web", "unknown_channel", encode_json({**good, "event_id": "bad-channel", "channel": "fax"})),
            ("store", "timestamp_too_old", encode_json({**good, "event_id": "bad-ts", "channel": "store",
                                                        "occurred_at": "1970-01-02T00:00:00Z"})),
            ("support", "timestamp_in_future", encode_json({**good, "event_id": "bad-future", "channel": "support",
                                                            "occurred_at": "2099-01-01T00:00:00Z"})),
            ("mobile", "no_valid_identifier", encode_json({**good, "event_id": "bad-ids", "channel": "mobile",
                                                           "identifiers": {"anonymous_id": "null"}})),
            ("survey", "invalid_survey", encode_json({**good, "event_id": "bad-survey", "channel": "survey",
                                                      "survey": {"kind": "nps", "score": 11}})),
            ("social", "malformed_avro", encode_avro({"text": None, "issue_ref": None, "survey": None,
                                                      **good, "channel": "social"})[:-3]),
            ("web", "invalid_utf8", b'{"event_id": "\xff\xfe", "channel": "web"}'),
            ("commerce", "empty_record", b""),
            ("call_center", "wrong_type", encode_json({**good, "event_id": "bad-type", "channel": "call_center",
                                                       "identifiers": ["a"]})),
        ]
        for i in range(self.n_malformed):
            channel, reason, value = samples[i % len(samples)]
            self.traffic.records.append(Record(channel, None, value))
            self.traffic.invalid.append((reason, value))


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def traffic_lines(records: Sequence[tuple[str, bytes | None, bytes]]) -> bytes:
    """A recorded traffic file: one {"topic", "key", "value"} object per line, key and value in base64, the format
    `cem publish FILE` replays."""
    return b"".join(orjson.dumps({"topic": topic, "key": _b64(key), "value": _b64(value)}) + b"\n"
                    for topic, key, value in records)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


WRITE_CHUNK = 1_000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.simulate",
                                     description="generate realistic multichannel traffic and publish it (or save it)")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="write records to this file instead of publishing")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    traffic = Simulator(customers=args.customers, seed=args.seed, base_time_ms=recent_base_ms()).run()
    records = traffic.topic_records(settings)
    if args.out is not None:
        with progress_bar(f"writing {args.out.name}", len(records)) as advance, args.out.open("wb") as out:
            for start in range(0, len(records), WRITE_CHUNK):
                chunk = records[start:start + WRITE_CHUNK]
                out.write(traffic_lines(chunk))
                advance(len(chunk))
    else:
        with progress_bar("publishing", len(records)) as acknowledged:
            asyncio.run(produce(settings, records, on_acknowledged=acknowledged))
    print(f"{len(records)} records ({traffic.duplicates_sent} re-sent duplicates, {len(traffic.invalid)} malformed) "
          f"for {traffic.customers} customers, {len(traffic.person_of_event)} unique valid events, "
          f"{len(traffic.journeys)} service journeys", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

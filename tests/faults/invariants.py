"""The invariants every fault scenario ends with, checked against ground truth computed by the simulator.

1. `count()` = `uniqExact(event_id)` = the number of unique valid events, in `cem.interactions` (the view), and
   the event ids are exactly the expected ones.
2. The hourly per-channel aggregate (`channel_hourly`, every measure) equals sums recomputed from
   `cem.interactions`, and the event counts per channel and hour equal the ground truth.
3. The customer grouping (which events belong to one customer) equals the simulator's persons; service journeys
   and the number of sessions per person equal the ground truth too (unless a scenario opts out).
4. Every invalid record is in the dead-letter topic exactly once, with its specific reason and original bytes.
   Dead letters are at-least-once on the wire: after a crash, a replayed raw record is dead-lettered again with
   the same key (`cem.source`, its topic/partition/offset). Consumers deduplicate by key (the topic may be
   compacted), and so does this check; the copies must be identical and are counted as `dl_replayed`.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from cem.domain.reasons import Reason
from cem.settings import Settings
from devtools.simulate import JourneyTruth, Traffic, groups
from devtools.topics import DeadLetter, read_topic
from sinks.clickhouse import connect

HOUR_MS = 3_600_000
WAREHOUSE_REJECTED = "warehouse_rejected"
DUPLICATE_CONFLICT = Reason.DUPLICATE_CONFLICT


@dataclass
class Expected:
    """Ground truth, independent of the pipeline: the simulator's, plus whatever a scenario adds."""

    person_of_event: dict[str, int]
    hourly: Counter[tuple[str, int]]  # (channel, hour start ms) -> unique valid events
    invalid: list[tuple[str, bytes]]  # (reason, original bytes) for every invalid record sent
    rejected: set[str] = field(default_factory=set)  # event ids the warehouse refuses (dead-lettered by the sink)
    journeys: dict[str, JourneyTruth] | None = None
    sessions_per_person: dict[int, int] | None = None
    conflicting: list[str] = field(default_factory=list)  # event id of each distinct conflicting copy sent

    @classmethod
    def of(cls, traffic: Traffic) -> Expected:
        hourly: Counter[tuple[str, int]] = Counter(
            (record["channel"], record["occurred_at"] // HOUR_MS * HOUR_MS) for record in traffic.events.values()
        )
        return cls(dict(traffic.person_of_event), hourly, list(traffic.invalid), set(),
                   dict(traffic.journeys), dict(traffic.sessions_per_person))

    def add_event(self, event_id: str, person: int, channel: str, occurred_ms: int) -> None:
        self.person_of_event[event_id] = person
        self.hourly[(channel, occurred_ms // HOUR_MS * HOUR_MS)] += 1

    def groups(self) -> set[frozenset[str]]:
        return groups(self.person_of_event.items())


HOURLY_MEASURES = (
    "sum(events)", "sum(sentiment_count)", "sum(sentiment_sum)", "sum(nps_responses)", "sum(nps_promoters)",
    "sum(nps_detractors)", "sum(csat_responses)", "sum(csat_satisfied)", "sum(ces_responses)", "sum(ces_sum)",
)
RECOMPUTED_MEASURES = (
    "count()", "sum(isNotNull(sentiment))", "sum(ifNull(sentiment, 0))", "sum(survey_kind = 'nps')",
    "sum(survey_kind = 'nps' AND ifNull(survey_score, 0) >= 9)",
    "sum(survey_kind = 'nps' AND ifNull(survey_score, 99) <= 6)", "sum(survey_kind = 'csat')",
    "sum(survey_kind = 'csat' AND ifNull(survey_score, 0) >= 4)", "sum(survey_kind = 'ces')",
    "sum(if(survey_kind = 'ces', toUInt64(ifNull(survey_score, 0)), 0))",
)


def assert_invariants(settings: Settings, expected: Expected, *, check_journeys: bool = True,
                      dead_letters: list[DeadLetter] | None = None, check_sessions: bool = True) -> dict[str, Any]:
    """Assert every invariant; returns the figures a scenario reports (rows, customers, dead letters).
    `check_sessions` false leaves out the sessions per person alone (a known gap of the split, docs/scaling.md)."""
    db = connect(settings.clickhouse_url)
    name = db.database
    try:
        unique = len(expected.person_of_event)
        # 1. Exactly once.
        counted = db.query(f"SELECT count(), uniqExact(event_id) FROM {name}.interactions")
        if counted != [(unique, unique)]:
            doubled = db.query(f"SELECT event_id, count() AS n, groupArray(version), groupArray(ingested_ms) "
                               f"FROM {name}.interaction_log GROUP BY event_id HAVING n > 1 LIMIT 5")
            logged = db.query(f"SELECT count(), uniqExact(event_id) FROM {name}.interaction_log")
            missing = sorted(set(expected.person_of_event)
                             - {str(r[0]) for r in db.query(f"SELECT event_id FROM {name}.interaction_log")})
            raise AssertionError(f"count(), uniqExact(event_id) = {counted}, expected {unique} unique valid events; "
                                 f"doubled rows e.g. {doubled}; interaction_log holds {logged}, without "
                                 f"{len(missing)} expected, e.g. {missing[:8]}")
        stored = {str(r[0]) for r in db.query(f"SELECT event_id FROM {name}.interactions")}
        missing, unexpected = set(expected.person_of_event) - stored, stored - set(expected.person_of_event)
        assert not missing and not unexpected, f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"

        # 2. The hourly aggregate equals sums recomputed from the interactions, and the ground truth.
        hourly = _by_hour_channel(db.query(
            f"SELECT toUInt64(toUnixTimestamp(hour)) * 1000 AS h, channel, {', '.join(HOURLY_MEASURES)} "
            f"FROM {name}.channel_hourly GROUP BY h, channel"))
        recomputed = _by_hour_channel(db.query(
            "SELECT toUInt64(toUnixTimestamp(toStartOfHour(occurred_at))) * 1000 AS h, channel, "
            f"{', '.join(RECOMPUTED_MEASURES)} FROM {name}.interactions GROUP BY h, channel"))
        assert hourly.keys() == recomputed.keys(), "channel_hourly has other (hour, channel) cells than interactions"
        for cell, values in recomputed.items():
            got = hourly[cell]
            assert got[:2] == values[:2] and got[3:] == values[3:], f"channel_hourly {cell}: {got} != {values}"
            assert abs(got[2] - values[2]) < 1e-6, f"channel_hourly sentiment_sum {cell}: {got[2]} != {values[2]}"
        assert {(ch, h): v[0] for (h, ch), v in hourly.items()} == dict(expected.hourly), \
            "events per channel and hour differ from the ground truth"

        # 3. Customers.
        rows = [(str(e), str(c)) for e, c in db.query(f"SELECT event_id, customer_id FROM {name}.interactions")]
        grouped = groups(rows)
        assert grouped == expected.groups(), "customer grouping: " + _grouping_differs(rows, expected, db, name)
        customers = len(grouped)
        if check_journeys and expected.journeys is not None:
            journeys = {str(r[0]): r[1:] for r in db.query(
                f"SELECT issue_ref, contacts, channels, resolved, fcr, time_to_resolution_s FROM {name}.journeys "
                "WHERE kind = 'service'")}
            assert set(journeys) == set(expected.journeys), "service journeys"
            for issue_ref, truth in expected.journeys.items():
                contacts, channels, resolved, fcr, ttr = journeys[issue_ref]
                assert (contacts, tuple(channels), bool(resolved), bool(fcr), ttr) == (
                    truth.contacts, truth.channels, truth.resolved, truth.fcr, truth.time_to_resolution_s), issue_ref
        if check_journeys and check_sessions and expected.sessions_per_person is not None:
            person_of_customer = {c: expected.person_of_event[e] for e, c in rows}
            sessions = db.query(
                f"SELECT customer_id, count() FROM {name}.journeys WHERE kind = 'session' GROUP BY customer_id")
            got = {person_of_customer[str(c)]: n for c, n in sessions}
            differ = {p: (got.get(p), n) for p, n in expected.sessions_per_person.items() if got.get(p) != n}
            assert got == expected.sessions_per_person, f"sessions (person: got, expected): {differ}"
    finally:
        db.close()

    # 4. Dead letters, deduplicated by key.
    dead = dead_letters if dead_letters is not None else read_topic(settings, settings.deadletter_topic)
    by_key: dict[bytes, list[DeadLetter]] = defaultdict(list)
    for letter in dead:
        assert letter.reason, f"a dead letter without a reason: {letter.headers}"
        assert letter.key is not None and letter.key.decode() == letter.headers.get("cem.source"), \
            "a dead letter's key is its cem.source header"
        by_key[letter.key].append(letter)
    for key, copies in by_key.items():
        assert len({(c.reason, c.value) for c in copies}) == 1, f"replayed dead letters of {key!r} differ"
    unique_letters = [copies[0] for copies in by_key.values()]
    raw_prefix = settings.topic_prefix + ".raw."
    ingest = sorted(_original(d) for d in unique_letters if d.headers["cem.source"].startswith(raw_prefix))
    assert ingest == sorted((reason, _sha256(value)) for reason, value in expected.invalid), \
        "every invalid record is dead-lettered once with its reason"
    refused = [orjson.loads(d.value)["event_id"] for d in unique_letters if d.reason == WAREHOUSE_REJECTED]
    assert sorted(refused) == sorted(expected.rejected), "every refused event is dead-lettered once"
    conflicting = [orjson.loads(d.value)["event_id"] for d in unique_letters if d.reason == DUPLICATE_CONFLICT]
    assert sorted(conflicting) == sorted(expected.conflicting), "every conflicting copy is dead-lettered once"
    return {
        "rows": unique,
        "customers": customers,
        "dead_letters": len(unique_letters),
        "dl_replayed": len(dead) - len(unique_letters),
    }


def _by_hour_channel(rows: list[tuple[Any, ...]]) -> dict[tuple[int, str], tuple[Any, ...]]:
    return {(int(r[0]), str(r[1])): tuple(float(v) if i == 2 else int(v) for i, v in enumerate(r[2:]))
            for r in rows}


def _sha256(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def _original(letter: DeadLetter) -> tuple[str, str]:
    """(reason, SHA-256 of the original record) of a dead letter; a truncated one starts with the original."""
    if letter.headers.get("cem.truncated") == "true":
        assert len(letter.value) < int(letter.headers["cem.original_bytes"])
        return letter.reason, letter.headers["cem.original_sha256"]
    return letter.reason, _sha256(letter.value)


def _grouping_differs(rows: list[tuple[str, str]], expected: Expected, db: Any, name: str) -> str:
    """How the grouping differs: persons spread over customers, customers holding several persons, and for the
    events under a merged customer their rows, their identity sets and the overrides of those."""
    customers_of_person: dict[int, set[str]] = defaultdict(set)
    persons_of_customer: dict[str, set[int]] = defaultdict(set)
    for event_id, customer in rows:
        person = expected.person_of_event[event_id]
        customers_of_person[person].add(customer)
        persons_of_customer[customer].add(person)
    spread = {p: sorted(c) for p, c in customers_of_person.items() if len(c) > 1}
    joined = {c: sorted(p) for c, p in persons_of_customer.items() if len(p) > 1}
    found = f"persons over several customers {dict(list(spread.items())[:5])}; " \
            f"customers holding several persons {dict(list(joined.items())[:5])}"
    involved = sorted({c for cs in spread.values() for c in cs} | set(joined))[:6]
    if not involved:
        return found
    listed = ", ".join(f"'{c}'" for c in involved)
    aliases = db.query(f"SELECT alias_id, current_id, version FROM {name}.id_aliases WHERE kind = 'customer' "
                       f"AND (alias_id IN ({listed}) OR current_id IN ({listed})) ORDER BY version")
    merged_away = {str(a) for a, c, _ in aliases if a != c}
    events = ", ".join(f"'{e}'" for e, c in rows if c in merged_away) or "''"
    logged = db.query(f"SELECT event_id, identity_key, origin_customer_id, version FROM {name}.interaction_log "
                      f"WHERE event_id IN ({events}) LIMIT 20")
    keys = ", ".join(f"'{r[1]}'" for r in logged) or "''"
    sets = db.query(f"SELECT identity_key, customer_id, version FROM {name}.identity_sets "
                    f"WHERE identity_key IN ({keys}) ORDER BY identity_key, version LIMIT 30")
    overrides = db.query(f"SELECT id, current_id, version FROM {name}.overrides WHERE kind = 'customer' "
                         f"AND id IN ({keys}) ORDER BY id, version LIMIT 30")
    marks = db.query(f"SELECT version FROM {name}.resolver_batches ORDER BY version")
    return (f"{found}; their alias rows {aliases[:12]}; the events under a merged customer {logged}; their "
            f"identity sets {sets}; their overrides {overrides}; the batch marks {marks}")

"""devtools.simulate.Simulator: deterministic traffic whose ground truth agrees with the pipeline's pure core."""

from __future__ import annotations

from collections import Counter, defaultdict
from functools import cache

import pytest

from cem.domain.model import Interaction, Rejection
from cem.domain.resolver import Resolver, ResolverConfig
from cem.settings import Settings
from devtools.simulate import BASE_TIME_MS, Simulator, Traffic, groups
from streams.app import Ingestor
from tests.unit.factories import DAY_MS, components

BASE = BASE_TIME_MS - 3 * DAY_MS  # any base works; not the module default, to prove it is honoured
NOW = BASE + 30 * DAY_MS
SEEDS = [1, 2, 3]
EXPECTED_MALFORMED = [
    "malformed_json", "unknown_encoding", "missing_field", "unknown_channel", "timestamp_too_old",
    "timestamp_in_future", "no_valid_identifier", "invalid_survey", "malformed_avro", "invalid_utf8",
    "empty_record", "wrong_type",
]


@cache
def traffic(seed: int) -> Traffic:
    return Simulator(customers=30, seed=seed, base_time_ms=BASE).run()


def _channel(record: object) -> str:
    return record.topic.rsplit(".", 1)[1]  # type: ignore[attr-defined]


@cache
def parsed(seed: int) -> list[tuple[bytes, Interaction | Rejection]]:
    ingestor = Ingestor(Settings())
    return [(r.value, ingestor.parse(r.value, _channel(r), NOW)) for r in traffic(seed).records]


def _snapshot(t: Traffic) -> tuple[object, ...]:
    return ([(r.topic, r.key, r.value) for r in t.records], t.person_of_event, t.journeys, t.sessions_per_person,
            t.invalid, t.duplicates_sent)


def test_deterministic_for_a_seed() -> None:
    a = Simulator(customers=30, seed=1, base_time_ms=BASE).run()
    b = Simulator(customers=30, seed=1, base_time_ms=BASE).run()
    assert _snapshot(a) == _snapshot(b)
    c = Simulator(customers=30, seed=2, base_time_ms=BASE).run()
    assert _snapshot(a) != _snapshot(c)


def test_base_time_is_honoured() -> None:
    t = traffic(1)
    times = [e["occurred_at"] for e in t.events.values()]
    assert BASE <= min(times) < BASE + DAY_MS * 6
    assert max(times) < NOW


@pytest.mark.parametrize("seed", SEEDS)
def test_malformed_records_have_exactly_the_expected_reasons(seed: int) -> None:
    t = traffic(seed)
    assert [reason for reason, _ in t.invalid] == EXPECTED_MALFORMED
    by_value = {value: result for value, result in parsed(seed)}
    for expected, value in t.invalid:
        result = by_value[value]
        assert isinstance(result, Rejection), (expected, value)
        assert result.reason == expected, (expected, result)
    rejected = Counter(r.reason for _, r in parsed(seed) if isinstance(r, Rejection))
    assert rejected == Counter(EXPECTED_MALFORMED)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_valid_record_decodes_and_validates(seed: int) -> None:
    t = traffic(seed)
    valid = [r for _, r in parsed(seed) if isinstance(r, Interaction)]
    assert len(valid) == len(t.records) - len(t.invalid) == len(t.person_of_event) + t.duplicates_sent
    assert {e.event_id for e in valid} == set(t.person_of_event)
    assert t.duplicates_sent > 0
    # Retries are natural duplicates even when re-encoded (JSON vs Avro): one fingerprint per event id.
    fingerprints: dict[str, set[str]] = defaultdict(set)
    for e in valid:
        fingerprints[e.event_id].add(e.fingerprint)
        assert e.occurred_ms == t.events[e.event_id]["occurred_at"]
        assert e.channel == t.events[e.event_id]["channel"]
    assert all(len(f) == 1 for f in fingerprints.values())
    assert t.conflicting_duplicates_sent == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_ground_truth_groups_are_the_connected_components(seed: int) -> None:
    t = traffic(seed)
    unique = {e.event_id: e for _, e in parsed(seed) if isinstance(e, Interaction)}
    expected = components((event_id, e.identifiers) for event_id, e in unique.items())
    assert t.groups() == expected
    assert t.customers == len(expected) == 30
    # Placeholders were sent and dropped: no placeholder identifier survives normalisation.
    values = {value for e in unique.values() for _, value in e.identifiers}
    assert not values & {"null", "undefined", "anonymous", "0", "", "guest", "00000000-0000-0000-0000-000000000000"}


@pytest.mark.parametrize("seed", SEEDS)
def test_resolver_reproduces_the_ground_truth(seed: int) -> None:
    t = traffic(seed)
    events = [e for _, e in parsed(seed) if isinstance(e, Interaction)]
    resolver = Resolver(ResolverConfig())
    effects = resolver.process(events, NOW)
    assert (effects.duplicates, effects.conflicts) == (t.duplicates_sent, 0)
    assert effects.refused_merges == [] and effects.unlinked == []

    customer_of_event = {row.interaction.event_id: resolver.graph.find(row.customer_id) for row in effects.interactions}
    customer_of_person = {t.person_of_event[event_id]: customer for event_id, customer in customer_of_event.items()}
    assert groups(customer_of_event.items()) == t.groups()

    for person, sessions in t.sessions_per_person.items():
        assert len(resolver.sessions.by_customer[customer_of_person[person]]) == sessions, person

    journeys = {j.issue_ref: j for refs in resolver.journeys.by_customer.values() for j in refs.values()}
    assert len(journeys) == sum(len(refs) for refs in resolver.journeys.by_customer.values())  # refs unique
    assert set(journeys) == set(t.journeys)
    for issue_ref, truth in t.journeys.items():
        journey = journeys[issue_ref]
        metrics = journey.metrics(7 * DAY_MS)
        assert (metrics.contacts, metrics.channels, metrics.resolved, metrics.fcr, metrics.time_to_resolution_s) == (
            truth.contacts, truth.channels, truth.resolved, truth.fcr, truth.time_to_resolution_s), issue_ref
        assert resolver.graph.find(journey.customer_id) == customer_of_person[truth.person]

"""The partitioned resolver's settings, topics, messages under the limit, and each stage's share of a restored
resolver (the Kafka glue itself runs in tests/integration/test_split_workers.py)."""

from __future__ import annotations

import pytest

from bench.traffic import parsed_interactions, simulated
from cem.config import resolver_config
from cem.domain.customer_stage import PartitionStep, customer_partition
from cem.domain.front import Routed, front_partition
from cem.domain.resolver import AliasCycle, Resolver
from cem.kafka import wanted_topics
from cem.service.split_service import Restored, partition_from, survivors
from cem.settings import Settings
from cem.topic_limits import internal_topics
from devtools.simulate import recent_base_ms
from schemas.split_wire import decode_routed
from streams.split import routed_messages
from tests.unit.factories import event

NOW_MS = recent_base_ms() + 30 * 86_400_000


def test_the_split_turns_the_replica_on_and_refuses_a_negative_count_or_more_than_its_versions_tell_apart() -> None:
    assert Settings(split_partitions=3).identity_replica is True
    assert Settings(split_partitions=1000).split_partitions == 1000
    assert Settings().identity_replica is False
    for refused in (-1, 1001):
        with pytest.raises(ValueError, match="CEM_SPLIT_PARTITIONS must be 0 \\(off\\) to 1000"):
            Settings(split_partitions=refused)


def test_the_split_creates_its_topics_and_checks_their_limits() -> None:
    split = Settings(split_partitions=6)
    wanted = wanted_topics(split)
    assert (wanted[split.resolve_topic], wanted[split.identity_topic], wanted[split.customers_topic]) == (6, 1, 6)
    assert {split.identity_topic, split.customers_topic} <= set(internal_topics(split))
    single = Settings()
    assert wanted_topics(single)[single.resolve_topic] == 1
    assert single.identity_topic not in wanted_topics(single)
    assert single.customers_topic not in internal_topics(single)


def _resolved(events: int) -> tuple[Settings, Resolver, list]:
    settings = Settings()
    traffic = simulated(events, seed=3, offset=0, base_time_ms=recent_base_ms())
    interactions = parsed_interactions(traffic.records, settings, NOW_MS)
    resolver = Resolver(resolver_config(settings))
    resolver.process(interactions, NOW_MS)
    return settings, resolver, interactions


def test_routed_events_are_cut_into_messages_under_the_limit() -> None:
    _, _, interactions = _resolved(400)
    routed = [Routed(event, f"c_{i}") for i, event in enumerate(interactions)]
    limit = len(b"".join(routed_messages(routed, 10**9))) // 7
    values = routed_messages(routed, limit)
    assert len(values) > 7
    assert all(len(value) <= limit for value in values)
    assert [r.event.event_id for value in values for r in decode_routed(value)] == \
        [r.event.event_id for r in routed]


def test_each_customer_partition_takes_exactly_its_customers_of_a_restored_resolver() -> None:
    _, resolver, interactions = _resolved(2_000)
    written = frozenset(e.event_id for e in interactions)
    parts = [partition_from(Restored(resolver, 42, written), index, 3) for index in range(3)]
    for part in parts:
        assert part.written_before == written
        assert part.applied == 42
        assert all(customer_partition(c, 3) == part.index for c in part.sessions.by_customer)
        assert all(customer_partition(c, 3) == part.index for c in part.journeys.by_customer)
        assert all(customer_partition(c, 3) == part.index for c in part.handed)
    assert sum(len(p.sessions.by_customer) for p in parts) == len(resolver.sessions.by_customer) > 10
    assert sum(len(p.journeys.by_customer) for p in parts) == len(resolver.journeys.by_customer) > 0
    merged = {c: resolver.graph.find(c) for c in resolver.graph.parent}
    assert merged and {c: s for p in parts for c, s in p.handed.items()} == merged


def test_every_copy_of_an_event_id_has_one_front() -> None:
    assert {front_partition("evt-1", 8) for _ in range(3)} == {front_partition("evt-1", 8)}
    assert len({front_partition(f"evt-{i}", 8) for i in range(200)}) == 8


def test_a_merged_customer_the_restored_graph_does_not_name_is_known_from_the_alias_rows() -> None:
    """A customer that owns no identifier set any more is absent from a graph restored from the sets; the owner's
    alias rows still name it, so its partition forwards what is addressed to it; an event written under it is
    known as written at every partition, so a copy of it read again is dropped wherever it arrives."""
    old, survivor = "c_old", next(f"c_s{i}" for i in range(100) if customer_partition(f"c_s{i}", 4) !=
                                  customer_partition("c_old", 4))
    restored = Restored(Resolver(resolver_config(Settings())), 7, frozenset({"e1"}),
                        survivors({old: "c_mid", "c_mid": survivor, "c_back": "c_back"}))
    assert restored.merged == {old: survivor, "c_mid": survivor}
    parts = [partition_from(restored, index, 4) for index in range(4)]
    sender = parts[customer_partition(old, 4)]
    assert sender.handed[old] == survivor
    assert all(part.written_before == {"e1"} for part in parts)
    effects, step = sender.start_batch(NOW_MS), PartitionStep()
    sender.fold(Routed(event("e1", NOW_MS, [("email", "e1@x.io")]), old, replay=True), effects, step)
    assert (effects.interactions, step.forwarded, step.replays) == ([], [], 1)
    with pytest.raises(AliasCycle):
        survivors({"a": "b", "b": "a"})

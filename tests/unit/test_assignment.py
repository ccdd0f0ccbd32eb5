"""The assignment that spares the resolver's worker: its raw-topic partitions go to the other workers, each
partition still consumed by exactly one of them, the other topics untouched."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from streams.assignment import spare_the_owner

RESOLVE = "cem.resolve"
RAW = ("cem.raw.web", "cem.raw.email", "cem.raw.chat")


def consumed(actives: dict[str, dict[str, list[int]]]) -> Counter[tuple[str, int]]:
    return Counter((topic, p) for topics in actives.values() for topic, parts in topics.items() for p in parts)


def test_with_two_workers_the_other_ingests_everything() -> None:
    actives = {"a": {RESOLVE: [0], "cem.control": [0], "cem.raw.web": [0, 2], "cem.raw.email": [1, 3]},
               "b": {"cem.raw.web": [1, 3], "cem.raw.email": [0, 2]}}
    before = consumed(actives)
    spare_the_owner(actives, RESOLVE, RAW)
    assert actives["a"] == {RESOLVE: [0], "cem.control": [0]}
    assert sorted(actives["b"]["cem.raw.web"]) == [0, 1, 2, 3]
    assert sorted(actives["b"]["cem.raw.email"]) == [0, 1, 2, 3]
    assert consumed(actives) == before


def test_with_three_workers_each_topic_of_the_owner_is_shared_out_evenly() -> None:
    actives = {"b": {"cem.raw.web": [1, 4]}, "a": {RESOLVE: [0], "cem.raw.web": [0, 3]},
               "c": {"cem.raw.web": [2, 5]}}
    spare_the_owner(actives, RESOLVE, RAW)
    assert actives["a"] == {RESOLVE: [0]}
    assert sorted(actives["b"]["cem.raw.web"]) == [0, 1, 4]
    assert sorted(actives["c"]["cem.raw.web"]) == [2, 3, 5]


def test_a_single_worker_or_no_owner_keeps_its_assignment() -> None:
    alone = {"a": {RESOLVE: [0], "cem.raw.web": [0, 1]}}
    spare_the_owner(alone, RESOLVE, RAW)
    assert alone == {"a": {RESOLVE: [0], "cem.raw.web": [0, 1]}}
    unowned = {"a": {"cem.raw.web": [0]}, "b": {"cem.raw.web": [1]}}
    spare_the_owner(unowned, RESOLVE, RAW)
    assert unowned == {"a": {"cem.raw.web": [0]}, "b": {"cem.raw.web": [1]}}


@given(members=st.integers(2, 6), partitions=st.integers(1, 12), data=st.data())
def test_every_partition_stays_consumed_once_and_the_owner_ingests_nothing(members: int, partitions: int,
                                                                          data: st.DataObject) -> None:
    names = [f"m{i}" for i in range(members)]
    actives: dict[str, dict[str, list[int]]] = {name: {} for name in names}
    for topic in RAW:
        for p in range(partitions):
            actives[data.draw(st.sampled_from(names))].setdefault(topic, []).append(p)
    owner = data.draw(st.sampled_from(names))
    actives[owner][RESOLVE] = [0]
    others = [m for m in names if m != owner]

    def spread(topic: str) -> int:
        held = [len(actives[m].get(topic, [])) for m in others]
        return max(held) - min(held)

    spread_before = {topic: spread(topic) for topic in RAW}
    before = consumed(actives)
    spare_the_owner(actives, RESOLVE, RAW)
    assert consumed(actives) == before
    assert set(actives[owner]) == {RESOLVE}
    # What the owner gave away went where each topic was thinnest: the others end no less even than they were.
    assert all(spread(topic) <= max(1, spread_before[topic]) for topic in RAW)

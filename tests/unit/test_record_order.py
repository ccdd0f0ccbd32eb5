"""A fetch's records reach the streams in the order they were written across topics, each partition's in its own
order, every record once."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from streams.record_order import WrittenOrder, written_order


@dataclass(frozen=True)
class Record:
    offset: int
    timestamp: int | None


def fetch(timestamps: dict[str, list[int]]) -> dict[str, list[Record]]:
    return {tp: [Record(offset, ts) for offset, ts in enumerate(series)] for tp, series in timestamps.items()}


def test_a_quiet_topics_records_wait_for_the_busy_topics_records_written_before_them() -> None:
    records = fetch({"web-0": [10, 11, 12, 13, 14, 15], "survey-0": [10, 20], "chat-0": [12, 14]})
    order = [(tp, record.timestamp) for tp, record in WrittenOrder().iterate(records)]
    assert order == [("web-0", 10), ("survey-0", 10), ("web-0", 11), ("web-0", 12), ("chat-0", 12), ("web-0", 13),
                     ("web-0", 14), ("chat-0", 14), ("web-0", 15), ("survey-0", 20)]


def test_a_partition_written_with_a_timestamp_going_back_keeps_its_offset_order() -> None:
    records = fetch({"a": [5, 1, 6], "b": [2, 3]})
    order = [(tp, record.offset) for tp, record in written_order(records)]
    assert order == [("b", 0), ("b", 1), ("a", 0), ("a", 1), ("a", 2)]


def test_a_record_without_a_timestamp_waits_for_nothing_once_it_is_next_in_its_partition() -> None:
    records = {"a": [Record(0, None), Record(1, 4)], "b": [Record(0, 2), Record(1, None)]}
    order = [(tp, record.offset) for tp, record in written_order(records)]
    assert order == [("a", 0), ("b", 0), ("b", 1), ("a", 1)]


series = st.lists(st.integers(0, 50), max_size=12)


@given(st.dictionaries(st.sampled_from(["web-0", "web-1", "mobile-0", "survey-0"]), series))
def test_every_record_once_each_partition_in_offset_order_and_sorted_where_each_partition_is(
        timestamps: dict[str, list[int]]) -> None:
    records = fetch(timestamps)
    order = list(written_order(records))
    assert sorted((tp, r.offset) for tp, r in order) == sorted((tp, r.offset) for tp, rs in records.items() for r in rs)
    for tp in records:
        assert [r.offset for t, r in order if t == tp] == list(range(len(records[tp])))
    if all(ts == sorted(ts) for ts in timestamps.values()):
        assert [r.timestamp for _, r in order] == sorted(ts for s in timestamps.values() for ts in s)

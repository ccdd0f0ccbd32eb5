"""The order in which one fetch's records reach the streams: the order they were written, across topics.

Faust's own scheduler takes the topics in turn, one record each. Draining a backlog of several channel topics, that
hands a quiet channel's records over as fast as a busy one's, so the quiet channel runs ahead by hours of event
time and the busy channels' events reach the resolver late: every late event makes the identity graph replay the
customers it touches, and customers first seen apart on two channels are created and then merged. Merging each
fetch's partitions by record timestamp (when the channel system wrote the record) hands a backlog over in the order
it was written, which is the order the pipeline would have seen live. Each partition's records keep their offset
order, so acknowledgements and commits are unchanged; the results never depend on the order (the resolver's
replays make them equal), only the cost does.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from typing import Any

from faust.transport.utils import DefaultSchedulingStrategy

NO_TIMESTAMP = -1  # what Kafka itself reports for a record written without one


def written_order(records: Mapping[Any, list[Any]]) -> Iterator[tuple[Any, Any]]:
    """(partition, record) for every record of a fetch, by record timestamp; ties and records written with a
    timestamp older than their partition's previous one keep the partitions' order, and each partition's records
    come in their own order whatever their timestamps."""
    keyed = (_keyed(index, tp, batch) for index, (tp, batch) in enumerate(records.items()))
    for _, _, tp, record in heapq.merge(*keyed, key=_timestamp_then_partition):
        yield tp, record


def _keyed(index: int, tp: Any, batch: list[Any]) -> Iterator[tuple[int, int, Any, Any]]:
    for record in batch:
        timestamp = record.timestamp
        # A record without a timestamp (a message format before 0.10) goes first rather than stop the merge.
        yield (NO_TIMESTAMP if timestamp is None else timestamp), index, tp, record


def _timestamp_then_partition(item: tuple[int, int, Any, Any]) -> tuple[int, int]:
    return item[0], item[1]


class WrittenOrder(DefaultSchedulingStrategy):  # type: ignore[misc]  # faust's classes are untyped
    """Faust's consumer scheduler (the `ConsumerScheduler` setting) handing records over in written order."""

    def iterate(self, records: Mapping[Any, list[Any]]) -> Iterator[tuple[Any, Any]]:
        return written_order(records)

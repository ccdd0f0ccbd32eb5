"""Reading a backlog in event time: which raw partitions to pause because they ran ahead of the others.

A worker draining a backlog from several partitions takes each a fetch at a time. A quiet channel's fetch spans
far more event time than a busy one's, so the partitions drift apart in event time, and a customer's events reach
the identity graph out of order: its late events make it replay the customers they touch. Kafka Streams aligns a
task's partitions by their next record's timestamp (`max.task.idle.ms`); this is the same idea at the fetch: a
partition whose events are more than `slack_ms` ahead of the slowest partition that still has records to read is
paused, and resumed once that one has caught up to half the slack.

Only the order changes: a paused partition is fetched again from its position when resumed, and the resolver's
answers do not depend on arrival order (docs/identity.md). Live traffic, where every partition is read up to its
end, pauses nothing. A partition stays paused at most `max_pause_seconds`, then reads freely as long again, so a
partition that stops advancing (its broker gone, records without an event time) never stops the others for long.

Pure: the caller reports what it delivered and the partitions' end offsets, and applies the decisions.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field

Partition = Hashable


@dataclass
class _Position:
    head_ms: int | None = None  # the latest event time delivered from the partition
    next_offset: int = -1  # the offset after the last record delivered (-1: none yet)
    paused_at: float | None = None
    free_until: float = 0.0  # released after the longest pause: not paused again before this


@dataclass(frozen=True)
class Decision:
    pause: frozenset[Partition] = frozenset()
    resume: frozenset[Partition] = frozenset()
    spread_ms: int = 0  # how far the partitions still to read are apart in event time


@dataclass
class EventTimeAlignment:
    slack_ms: int
    max_pause_seconds: float
    positions: dict[Partition, _Position] = field(default_factory=dict)

    def delivered(self, partition: Partition, offset: int, occurred_ms: int | None) -> None:
        """A record the worker took from `partition`; `occurred_ms` None when it had no event time (a dead letter)."""
        position = self.positions.setdefault(partition, _Position())
        position.next_offset = max(position.next_offset, offset + 1)
        if occurred_ms is not None and (position.head_ms is None or occurred_ms > position.head_ms):
            position.head_ms = occurred_ms

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Partitions this worker no longer reads (a rebalance): their pauses ended with their assignment."""
        for partition in partitions:
            self.positions.pop(partition, None)

    def paused(self) -> frozenset[Partition]:
        return frozenset(p for p, pos in self.positions.items() if pos.paused_at is not None)

    def decide(self, end_offsets: Mapping[Partition, int | None], now: float,
               read_from: Mapping[Partition, int] | None = None) -> Decision:
        """What to pause and resume, given each assigned partition's end offset (None: not known yet) and, for a
        partition nothing was delivered from yet, the offset its reading starts at (its committed position)."""
        starts = read_from or {}
        to_read = {p for p, end in end_offsets.items() if self._has_more(p, end, starts.get(p, 0))}
        heads = [self.positions[p].head_ms if p in self.positions else None for p in to_read]
        known = [h for h in heads if h is not None]
        if not known or len(known) < len(heads):
            # A partition still to read whose event time is unknown may be the oldest: hold nothing back.
            return Decision(resume=self.paused())
        floor = min(known)
        pause, resume = set(), set()
        for partition in to_read:
            position = self.positions[partition]
            assert position.head_ms is not None
            ahead = position.head_ms - floor
            if position.paused_at is None:
                if ahead > self.slack_ms and now >= position.free_until:
                    pause.add(partition)
            elif ahead <= self.slack_ms // 2:
                resume.add(partition)
            elif now - position.paused_at >= self.max_pause_seconds:
                resume.add(partition)
                position.free_until = now + self.max_pause_seconds
        resume |= {p for p in self.paused() if p not in to_read}  # read to its end, or no longer assigned
        for partition in pause:
            self.positions[partition].paused_at = now
        for partition in resume:
            if partition in self.positions:
                self.positions[partition].paused_at = None
        return Decision(frozenset(pause), frozenset(resume), max(known) - floor)

    def _has_more(self, partition: Partition, end: int | None, start: int) -> bool:
        position = self.positions.get(partition)
        next_offset = position.next_offset if position is not None and position.next_offset >= 0 else start
        return end is None or end > next_offset

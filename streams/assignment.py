"""Partition assignment that spares the resolver's worker: with two or more workers, the one holding the resolver
partition hands its raw-topic partitions to the others.

The resolver is one process's work (docs/scaling.md). On the worker that holds it, ingest competes with it for the
same interpreter; everywhere else ingest has a core to itself. Faust spreads every topic's partitions evenly, so
with two workers the resolver's worker also ingests half the traffic and the deployment waits on it while the other
worker idles. Kafka's consumer-group leader runs this assignment: Faust's own (sticky, even), then each raw-topic
partition of the resolver's worker moves to the other worker holding the fewest partitions of that topic.
A single worker keeps everything. `CEM_OWNER_INGESTS=true` keeps Faust's even spread.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, MutableMapping
from typing import Any

from faust.assignor import PartitionAssignor

Actives = Mapping[str, MutableMapping[str, list[int]]]  # member -> topic -> partitions it consumes


def spare_the_owner(actives: Actives, owner_topic: str, ingest_topics: Collection[str]) -> None:
    """Move the `ingest_topics` partitions of the one member consuming `owner_topic` to the other members: per
    topic, each to the member with the fewest partitions of that topic (then the fewest overall, then by name)."""
    owners = [member for member, topics in actives.items() if topics.get(owner_topic)]
    if len(actives) < 2 or len(owners) != 1:
        return
    owner = owners[0]
    others = sorted(member for member in actives if member != owner)
    total = {member: sum(len(actives[member].get(topic, ())) for topic in ingest_topics) for member in others}
    for topic in sorted(ingest_topics):
        for partition in sorted(actives[owner].pop(topic, [])):
            target = min(others, key=lambda m: (len(actives[m].get(topic, ())), total[m], m))
            actives[target].setdefault(topic, []).append(partition)
            total[target] += 1


def owner_sparing_assignor(owner_topic: str, ingest_topics: Collection[str]) -> type[PartitionAssignor]:
    """Faust's assignor with `spare_the_owner` applied to its result, for these topics."""
    ingest = frozenset(ingest_topics)

    class OwnerSparingAssignor(PartitionAssignor):  # type: ignore[misc]  # faust's classes are untyped
        # Faust calls this once its copartitioned assignment of every member is complete, before it derives the
        # table distributions from it: the one place to change who consumes what (cem has no Faust tables).
        def _global_table_standby_assignments(self, assignments: Any, partitions_by_topic: Any) -> Any:
            assignments = super()._global_table_standby_assignments(assignments, partitions_by_topic)
            spare_the_owner({member: a.actives for member, a in assignments.items()}, owner_topic, ingest)
            return assignments

    return OwnerSparingAssignor

"""The partitioned stages of docs/scaling.md run in one process on the bench's traffic, against the single
resolver: K fronts (cem.domain.front), the graph's owner (cem.domain.identity_owner) and M customer partitions
(cem.domain.customer_stage), fed batch by batch as ingest delivers them, with every replica `--lag` owner versions
behind (a publication delay). It checks that the split lands every unique event once, with the single resolver's
grouping and duplicate count, and reports how often its sessions and journeys equal the single resolver's; and it
times each stage in CPU, so the owner's cost per request and the share of events it serves are the product's own.

    python -m bench.split_inproc [--events N] [--fronts K] [--partitions M] [--lag V] [--order O] [--batch B]

Nothing here crosses Kafka: the hops' encoding, the ClickHouse writes and the interpreter shared with ingest are
measured by `make bench`'s pipeline phases, not here.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from bench.traffic import ORDERS, parsed_interactions, simulated
from cem.config import resolver_config
from cem.domain.customer_stage import CustomerPartition, HandOff, PartitionStep, customer_partition
from cem.domain.effects import Effects
from cem.domain.front import Front, Routed
from cem.domain.identity_owner import IdentityOwner, IdentityRequest
from cem.domain.identity_replica import IdentityChanges, IdentityReplica, identity_changes
from cem.domain.model import Interaction
from cem.domain.resolver import Resolver
from cem.settings import Settings
from cem.worker import tune_garbage_collector
from devtools.simulate import recent_base_ms

T = TypeVar("T")
BATCH_MS = 50  # the clock advances this much per ingest batch


@dataclass
class StageCpu:
    """CPU seconds per stage."""

    spent: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def timed(self, stage: str, fn: Callable[[], T]) -> T:
        started = time.process_time()
        result = fn()
        self.spent[stage] += time.process_time() - started
        return result


class Split:
    def __init__(self, settings: Settings, fronts: int, partitions: int) -> None:
        config = resolver_config(settings)
        self.fronts = [Front(IdentityReplica(), config.dedup_window_ms) for _ in range(fronts)]
        self.offsets = [0] * fronts  # the next offset of each front's partition
        self.owner = IdentityOwner(config)
        self.parts = [CustomerPartition(i, partitions, config.session_gap_ms) for i in range(partitions)]
        self.inbox: list[list[Routed | HandOff]] = [[] for _ in range(partitions)]
        self.versions: list[IdentityChanges] = []
        self.clock = StageCpu()
        self.requests = self.duplicates = self.handoffs = self.forwarded = 0
        self.rows: list[Effects] = []

    def step(self, batch: list[Interaction], now_ms: int, lag: int) -> None:
        by_front: dict[int, list[tuple[int, Interaction]]] = defaultdict(list)
        for event in batch:
            at = customer_partition(event.event_id, len(self.fronts))  # a stable hash; fronts are keyed by event id
            by_front[at].append((self.offsets[at], event))
            self.offsets[at] += 1
        requests: list[IdentityRequest] = []
        for index, events in by_front.items():
            admitted = self.clock.timed("front", partial(self.fronts[index].admit, events, now_ms))
            self.duplicates += admitted.duplicates
            requests.extend(admitted.requests)
            self.route(admitted.routed)
            self.fronts[index].committable(self.offsets[index])
        if requests:
            self.requests += len(requests)
            effects = self.clock.timed("owner", lambda: self.owner.process(requests, now_ms))
            self.versions.append(identity_changes(effects))
        visible = self.versions[:max(0, len(self.versions) - lag)]
        for front in self.fronts:
            unseen = [v for v in visible if v.version > front.replica.version]
            self.clock.timed("replica", partial(front.replica.apply_all, unseen))
            self.route(self.clock.timed("front", front.release))
        for index, part in enumerate(self.parts):
            self.partition_batch(part, index, visible, now_ms)

    def route(self, routed: Iterable[Routed]) -> None:
        for item in routed:
            self.inbox[customer_partition(item.customer_id, len(self.parts))].append(item)

    def partition_batch(self, part: CustomerPartition, index: int, visible: list[IdentityChanges],
                        now_ms: int) -> None:
        items, self.inbox[index] = self.inbox[index], []
        if not items and (not visible or visible[-1].version <= part.applied):
            return
        step = PartitionStep()

        def run() -> Effects:
            after = max((item.version for item in items if isinstance(item, HandOff)), default=0)
            effects = part.start_batch(now_ms, after)
            for changes in visible:
                part.apply(changes, effects, step)
            for item in items:
                if isinstance(item, HandOff):
                    part.receive(item, effects, step)
                else:
                    part.fold(item, effects, step)
            return effects
        self.rows.append(self.clock.timed("partition", run))
        self.handoffs += len(step.handoffs)
        self.forwarded += len(step.forwarded)
        for target, routed in step.forwarded:
            self.inbox[target].append(routed)
        for target, handoff in step.handoffs:
            self.inbox[target].append(handoff)

    def drain(self, now_ms: int) -> None:
        """Everything published reaches every replica and partition; nothing stays held or in flight."""
        while any(f.held for f in self.fronts) or any(self.inbox) or \
                any(p.applied < self.versions[-1].version for p in self.parts):
            now_ms += BATCH_MS
            self.step([], now_ms, 0)


def state_of(parts: Iterable[CustomerPartition], attribute: str) -> dict[str, Any]:
    """The partitions' sessions or journeys by customer, as one book; a customer's state lives on one partition."""
    out: dict[str, Any] = {}
    for part in parts:
        for customer, held in getattr(part, attribute).by_customer.items():
            assert customer not in out, "a customer's state lives on one partition"
            out[customer] = held
    return out


def session_state(find: Callable[[str], str], sessions: Mapping[str, Any],
                  journeys: Mapping[str, Any]) -> tuple[Counter[Any], Counter[Any]]:
    """Sessions and journeys under each customer's final id, without their ids (which event created a session
    depends on the order of the log it was folded in)."""
    found_sessions: Counter[Any] = Counter()
    for customer, held in sessions.items():
        for s in held:
            found_sessions[(find(customer), s.start_ms, s.end_ms, s.events, frozenset(s.channels))] += 1
    found_journeys: Counter[Any] = Counter()
    for customer, by_issue in journeys.items():
        for issue_ref, j in by_issue.items():
            found_journeys[(find(customer), issue_ref, frozenset(j.events))] += 1
    return found_sessions, found_journeys


def grouping(customer_of: Callable[[Interaction], str | None], events: Iterable[Interaction]) -> set[frozenset[str]]:
    groups: dict[str | None, set[str]] = defaultdict(set)
    for e in events:
        groups[customer_of(e)].add(e.event_id)
    return {frozenset(ids) for ids in groups.values()}


def run(events: int = 60_000, fronts: int = 4, partitions: int = 4, lag: int = 1, seed: int = 7,
        order: str = "time", batch: int | None = None) -> dict[str, Any]:
    settings = Settings()
    now_ms = int(time.time() * 1000)
    valid = parsed_interactions(simulated(events, seed, 0, recent_base_ms(), order).records, settings, now_ms)
    size = batch or settings.ingest_batch_max
    batches = [valid[i:i + size] for i in range(0, len(valid), size)]

    reference = Resolver(resolver_config(settings))
    started = time.process_time()
    reference_duplicates = sum(reference.process(b, now_ms + i * BATCH_MS).duplicates for i, b in enumerate(batches))
    reference_s = time.process_time() - started

    split = Split(settings, fronts, partitions)
    for i, events_of_batch in enumerate(batches):
        split.step(events_of_batch, now_ms + i * BATCH_MS, lag)
    split.drain(now_ms + len(batches) * BATCH_MS)

    unique = list({e.event_id: e for e in valid}.values())
    folded = Counter(r.interaction.event_id for effects in split.rows for r in effects.interactions)
    graph = split.owner.graph
    spent = split.clock.spent
    n = max(1, len(unique))
    share = split.requests / n
    owner_us = spent["owner"] / max(1, split.requests) * 1e6
    sessions_equal = session_state(graph.find, state_of(split.parts, "sessions"), state_of(split.parts, "journeys")) \
        == session_state(reference.graph.find, reference.sessions.by_customer, reference.journeys.by_customer)
    check = {
        "every unique event folded once": set(folded) == {e.event_id for e in unique} and max(folded.values()) == 1,
        "the single resolver's duplicate count": split.duplicates == reference_duplicates,
        "the single resolver's grouping": grouping(lambda e: graph.customer_of_set(e.identifiers), unique)
        == grouping(lambda e: reference.graph.customer_of_set(e.identifiers), unique),
    }
    return {
        "events": len(unique), "fronts": fronts, "partitions": partitions, "lag_versions": lag,
        "owner_versions": len(split.versions), "owner_requests": split.requests, "serial_share": round(share, 4),
        "single_resolver_us_per_event": round(reference_s / n * 1e6, 2),
        "front_us_per_event": round(spent["front"] / n * 1e6, 2),
        "owner_us_per_request": round(owner_us, 2),
        "partition_us_per_event": round(spent["partition"] / n * 1e6, 2),
        "replica_us_per_event_per_worker": round(spent["replica"] / fronts / n * 1e6, 2),
        "serial_ceiling_eps": round(1e6 / (share * owner_us)) if share and owner_us else None,
        "handoffs": split.handoffs, "forwarded_to_a_survivor": split.forwarded,
        "sessions_and_journeys_equal_the_single_resolvers": sessions_equal,
        "check": check,
    }


def main(argv: list[str] | None = None) -> int:
    tune_garbage_collector()  # measure what a worker pays
    parser = argparse.ArgumentParser(prog="python -m bench.split_inproc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--fronts", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--lag", type=int, default=1, help="owner versions every replica is behind")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--order", choices=ORDERS, default="time")
    parser.add_argument("--batch", type=int, default=None, help="events per ingest batch (default: the worker's "
                        "largest, CEM_INGEST_BATCH_MAX)")
    args = parser.parse_args(argv)
    result = run(args.events, args.fronts, args.partitions, args.lag, args.seed, args.order, args.batch)
    for name, value in result.items():
        print(f"{name:50} {value}")
    return 0 if all(result["check"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""How much of the resolver's work must stay serial, in process: the share of valid events that need the identity
graph's owner (cem/domain/identity_replica.py: a new identifier set, a link, a merge, a refused merge, a shared
identifier, a set seen again earlier in event time), the owner's CPU per such event, and the CPU per event of
everything that can be partitioned (deduplication, sessions, journeys, the warehouse's columns, the replica's local
lookup). From these, the serial ceiling, 1 / (share x owner time per owner event), and a projection for more
partitions (docs/scaling.md, "Measured ceiling", states the assumptions).

    python -m bench.serial_share [--events N] [--repeat R] [--worker-eps E] [--order time|shuffled|channels]

Traffic: the benchmark's simulated traffic and `many_customers` (five events per customer), parsed by the
worker's own ingest and delivered in event time with realistic lateness. CPU time (time.process_time), best of
`repeat` interleaved passes, each from an empty state.

How each part is measured. A local event changes nothing in the graph, so the graph fed only the owner's events
ends in the same state as the graph fed every event (checked): the owner's time is that pass. The partitionable
time is `Resolver.process` minus the graph fed every event, plus `effect_columns` and the replica's lookups of the
local events. The replica's upkeep is the time to apply every owner version (every worker applies all of them).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pympler import asizeof

from bench.traffic import ORDERS, TrafficSet, many_customers, parsed_interactions, simulated
from cem.config import resolver_config
from cem.domain.identity import IdentityGraph
from cem.domain.identity_replica import LOCAL, IdentityChanges, IdentityReplica, classify, identity_changes
from cem.domain.model import Interaction
from cem.domain.resolver import Effects, Resolver, ResolverConfig
from cem.domain.state_maps import MapFactory, in_memory_maps
from cem.settings import Settings
from cem.state_store import Checkpoint, StateStore
from cem.worker import tune_garbage_collector
from devtools.simulate import recent_base_ms
from schemas.identity_changes import decode_part, encode_changes
from sinks.writer import effect_columns
from streams.app import Ingestor

PARTITIONS = (8, 32, 128)


@dataclass(frozen=True)
class Share:
    traffic: str
    state: str  # where the resolver's maps are: "disk" (the worker's default) or "memory"
    state_writeback_us_per_event: float  # writing the disk state back after each batch (0 in memory)
    events: int  # valid events the graph sees (duplicates dropped)
    owner_events: int
    serial_share: float
    reasons: dict[str, int]
    local_with_identifiers_of_other_customers: int  # local all the same: the graph answers by the set
    ingest_us_per_event: float  # decode, validate, enrich: already partitioned today
    resolver_us_per_event: float  # Resolver.process as it runs today, all of it serial
    graph_us_per_event: float  # IdentityGraph.attribute over every event
    owner_us_per_owner_event: float  # IdentityGraph.attribute over the owner's events only
    partitioned_us_per_event: float  # the next three and the local lookup
    dedup_sessions_journeys_us_per_event: float  # Resolver.process less the graph
    event_columns_us_per_event: float  # effect_columns of the interaction, session and journey rows
    identity_columns_us_per_owner_event: float  # effect_columns of the identity rows: the owner's to write
    local_lookup_us_per_local_event: float
    changes_per_owner_event: float
    replica_us_per_change: float
    publication_us_per_event: float  # the owner encodes and signs each batch's version (per event of the traffic)
    replica_decode_us_per_change: float  # every replica verifies and decodes every version's parts
    replica_bytes_per_set: float  # a replica's memory per identifier set (pympler), aliases and links included
    serial_ceiling_eps: float
    serial_ceiling_with_identity_rows_eps: float  # the owner also turns its identity rows into columns
    serial_ceiling_with_publication_eps: float  # ... and encodes every version for the replicas
    check: dict[str, bool] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def serial_ceiling(share: float, owner_us: float) -> float:
    """Events per second of the whole deployment when the owner is busy all the time."""
    return 1e6 / (share * owner_us) if share > 0 and owner_us > 0 else float("inf")


def projection(s: Share, partitions: int, worker_eps: float | None = None) -> dict[str, Any]:
    """Events per second with `partitions` partitions, one core each: the least of the serial ceiling and what the
    partitions process, each core paying its share of events plus the replica upkeep of every event's changes.
    With `worker_eps` (a measured whole worker, Kafka and ClickHouse included) that rate bounds a partition."""
    # Every worker decodes and applies every change, per event of the whole deployment.
    replica_us = s.serial_share * s.changes_per_owner_event * (s.replica_us_per_change + s.replica_decode_us_per_change)
    partition_us = s.ingest_us_per_event + s.partitioned_us_per_event
    if worker_eps:
        partition_us = max(partition_us, 1e6 / worker_eps)
    partitions_eps = 1e6 / (partition_us / partitions + replica_us)
    return {"partitions": partitions, "partitions_eps": round(partitions_eps),
            "projected_eps": round(min(s.serial_ceiling_eps, partitions_eps)),
            "bound": "serial owner" if s.serial_ceiling_eps < partitions_eps else "partitions"}


def first_copies(events: list[Interaction]) -> list[Interaction]:
    """The events the graph sees: the first copy of each event id (the resolver drops the others)."""
    seen: set[str] = set()
    out = []
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            out.append(event)
    return out


def classified(config: ResolverConfig, events: list[Interaction]) -> tuple[list[str], IdentityGraph, int]:
    """Each event's classification, the graph after all of them, and how many local events carry identifiers
    that are not all held by the event's customer (unlinked over a limit, shared, or another customer's after a
    refused merge): the set's known customer answers them all the same."""
    graph = Resolver(config).graph
    out = []
    mixed = 0
    for e in events:
        known = graph.set_key.get(e.identifiers)
        reason = classify(known, (e.occurred_ms, e.event_id), graph.attribute(e.event_id, e.occurred_ms,
                                                                               e.identifiers))
        if reason == LOCAL and {graph.customer_of(i) for i in e.identifiers} != {graph.customer_of_set(e.identifiers)}:
            mixed += 1
        out.append(reason)
    return out, graph, mixed


def identity_only(effects: Effects) -> Effects:
    """A batch's identity facts without its interactions, sessions and journeys: what the owner would write."""
    return replace(effects, interactions=[], sessions={}, session_aliases=[], journeys={}, journey_aliases=[])


class Passes:
    """One traffic set's timed passes; each keeps the best CPU time it took. With a `state_dir`, the resolver and
    the graphs keep their maps in the worker's state store (RocksDB behind caches, `CEM_STATE_STORE=disk`), one
    fresh store per pass, and the resolver writes its changes back after each batch as a worker does."""

    def __init__(self, settings: Settings, traffic: TrafficSet, now_ms: int, state_dir: Path | None = None) -> None:
        self.settings, self.now_ms, self.state_dir = settings, now_ms, state_dir
        self.stores: list[StateStore] = []
        self.config = resolver_config(settings)
        self.records = [(value, channel) for channel, _key, value in traffic.records]
        self.valid = parsed_interactions(traffic.records, settings, now_ms)
        self.unique = first_copies(self.valid)
        self.reasons, self.graph, self.local_mixed = classified(self.config, self.unique)
        self.owner_only = [e for e, r in zip(self.unique, self.reasons, strict=True) if r != LOCAL]
        self.local = [e for e, r in zip(self.unique, self.reasons, strict=True) if r == LOCAL]
        size = settings.ingest_batch_max
        self.batches = [self.valid[i:i + size] for i in range(0, len(self.valid), size)]
        self.versions: list[IdentityChanges] = []
        self.messages: list[tuple[bytes, Any]] = []
        self.best: dict[str, float] = {}
        self.check: dict[str, bool] = {}

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        started = time.process_time()
        result = fn()
        self.best[name] = min(self.best.get(name, float("inf")), time.process_time() - started)
        return result

    def ingest(self) -> None:
        ingestor = Ingestor(self.settings)
        self.timed("ingest", lambda: [ingestor.parse(v, ch, self.now_ms) for v, ch in self.records])

    def store(self) -> StateStore | None:
        """A fresh state store for one pass (None: the maps are dicts)."""
        if self.state_dir is None:
            return None
        store = StateStore(Path(tempfile.mkdtemp(dir=self.state_dir)), self.settings.state_memory_mb)
        self.stores.append(store)
        return store

    @staticmethod
    def maps(store: StateStore | None) -> MapFactory:
        return store.map if store is not None else in_memory_maps

    def close(self) -> None:
        for store in self.stores:
            store.close()
        self.stores.clear()

    def resolver(self) -> None:
        store = self.store()
        resolver = Resolver(self.config, self.maps(store))
        process = columns = identity = state = 0.0
        versions = []
        for i, batch in enumerate(self.batches):
            started = time.process_time()
            effects = resolver.process(batch, self.now_ms + i * 50)
            resolved = time.process_time()
            if store is not None:
                store.flush(Checkpoint(resolver.version, "bench"))
            written_back = time.process_time()
            effect_columns(effects, self.now_ms, self.config.fcr_window_ms)
            columned = time.process_time()
            effect_columns(identity_only(effects), self.now_ms, self.config.fcr_window_ms)
            identity += time.process_time() - columned
            columns += columned - written_back
            state += written_back - resolved
            process += resolved - started
            versions.append(identity_changes(effects))
        self.best["process"] = min(self.best.get("process", float("inf")), process)
        self.best["state"] = min(self.best.get("state", float("inf")), state)
        self.best["columns"] = min(self.best.get("columns", float("inf")), columns)
        self.best["identity_columns"] = min(self.best.get("identity_columns", float("inf")), identity)
        self.versions = versions

    def graph_pass(self, name: str, events: list[Interaction]) -> IdentityGraph:
        store = self.store()
        graph = Resolver(self.config, self.maps(store)).graph

        def fold() -> None:
            for e in events:
                graph.attribute(e.event_id, e.occurred_ms, e.identifiers)
        self.timed(name, fold)
        return graph

    def publication(self) -> None:
        """The owner's encoding of every version, and every replica's decoding of it."""
        key, limit = self.settings.signing_key, self.settings.message_max_bytes
        self.messages = self.timed("publish", lambda: [m for v in self.versions for m in encode_changes(key, v, limit)])
        self.timed("decode", lambda: [decode_part(key, value, headers) for value, headers in self.messages])

    def replica(self) -> IdentityReplica:
        replica = IdentityReplica()
        self.timed("replica_apply", lambda: replica.apply_all(self.versions))
        return replica

    def lookups(self, replica: IdentityReplica) -> list[str | None]:
        return self.timed("local_lookup", lambda: [replica.resolve_locally(e.identifiers, (e.occurred_ms, e.event_id))
                                                   for e in self.local])

    def round(self) -> None:
        self.ingest()
        self.resolver()
        self.publication()
        self.graph_pass("graph_all", self.unique)
        owner_graph = self.graph_pass("graph_owner", self.owner_only)
        answers = self.lookups(self.replica())
        self.check["owner_only_graph_equals_full_graph"] = dict(owner_graph.set_owner) == dict(self.graph.set_owner)
        self.check["replica_answers_every_local_event_as_the_graph"] = answers == [
            self.graph.customer_of_set(e.identifiers) for e in self.local]
        self.close()


def measure_traffic(name: str, traffic: TrafficSet, repeat: int, state: str = "disk") -> Share:
    with tempfile.TemporaryDirectory(prefix="cem-serial-share-") as state_dir:
        passes = Passes(Settings(), traffic, int(time.time() * 1000), Path(state_dir) if state == "disk" else None)
        for _ in range(repeat):
            passes.round()
    replica = passes.replica()
    b = passes.best
    n, owners, locals_ = (max(1, len(x)) for x in (passes.unique, passes.owner_only, passes.local))
    changes = sum(v.size for v in passes.versions)
    share = len(passes.owner_only) / n
    owner_us = b["graph_owner"] / owners * 1e6
    rows_us = b["identity_columns"] / owners * 1e6
    resolver_rest = b["process"] - b["graph_all"]
    event_columns = max(0.0, b["columns"] - b["identity_columns"])

    def per_event(seconds: float) -> float:
        return round(seconds / n * 1e6, 2)
    return Share(
        traffic=name, state=state, state_writeback_us_per_event=per_event(b["state"]), events=len(passes.unique),
        owner_events=len(passes.owner_only), serial_share=round(share, 4),
        reasons=dict(Counter(passes.reasons).most_common()),
        local_with_identifiers_of_other_customers=passes.local_mixed,
        ingest_us_per_event=per_event(b["ingest"]), resolver_us_per_event=per_event(b["process"]),
        graph_us_per_event=per_event(b["graph_all"]), owner_us_per_owner_event=round(owner_us, 2),
        partitioned_us_per_event=per_event(resolver_rest + event_columns + b["local_lookup"]),
        dedup_sessions_journeys_us_per_event=per_event(resolver_rest),
        event_columns_us_per_event=per_event(event_columns), identity_columns_us_per_owner_event=round(rows_us, 2),
        local_lookup_us_per_local_event=round(b["local_lookup"] / locals_ * 1e6, 2),
        changes_per_owner_event=round(changes / owners, 2),
        replica_us_per_change=round(b["replica_apply"] / max(1, changes) * 1e6, 3),
        publication_us_per_event=per_event(b["publish"]),
        replica_decode_us_per_change=round(b["decode"] / max(1, changes) * 1e6, 3),
        replica_bytes_per_set=round(asizeof.asizeof(replica) / max(1, len(replica.sets))),
        serial_ceiling_eps=round(serial_ceiling(share, owner_us)),
        serial_ceiling_with_identity_rows_eps=round(serial_ceiling(share, owner_us + rows_us)),
        serial_ceiling_with_publication_eps=round(1e6 / (share * (owner_us + rows_us) + b["publish"] / n * 1e6)),
        check=dict(passes.check))


def measure(events: int = 20_000, seed: int = 7, repeat: int = 3, worker_eps: float | None = None,
            order: str = "time", state: str = "disk") -> dict[str, Any]:
    """Both traffic sets; the headline figures are the simulated traffic's (the one the pipeline phases run)."""
    base = recent_base_ms()
    shares = [measure_traffic("simulated", simulated(events, seed, 0, base, order), repeat, state),
              measure_traffic("many_customers", many_customers(max(1, events // 5), 5, seed, 0, base, order=order),
                              repeat, state)]
    head = shares[0]
    return {"serial_share": head.serial_share, "serial_ceiling_eps": head.serial_ceiling_eps,
            "owner_us_per_owner_event": head.owner_us_per_owner_event,
            "partitioned_us_per_event": head.partitioned_us_per_event, "worker_eps": worker_eps,
            "projection": {s.traffic: [projection(s, p, worker_eps) for p in PARTITIONS] for s in shares},
            "traffic": [s.as_dict() for s in shares],
            "check": {"ok": all(all(s.check.values()) for s in shares),
                      **{f"{s.traffic}: {name}": ok for s in shares for name, ok in s.check.items()}}}


def main(argv: list[str] | None = None) -> int:
    tune_garbage_collector()  # measure what a worker pays
    parser = argparse.ArgumentParser(prog="python -m bench.serial_share", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--order", choices=ORDERS, default="time", help="delivery order (bench/traffic.py): event "
                        "time with realistic lateness, or the simulator's shuffle of its whole span (a backfill)")
    parser.add_argument("--worker-eps", type=float, default=None,
                        help="a measured one-worker rate (make bench phase 2) to bound each partition's rate")
    parser.add_argument("--state", choices=("disk", "memory"), default="disk",
                        help="the resolver's maps in the worker's state store (its default) or in dicts")
    args = parser.parse_args(argv)
    result = measure(args.events, args.seed, args.repeat, args.worker_eps, args.order, args.state)
    for share in result["traffic"]:
        print(f"{share['traffic']}:")
        for name, value in share.items():
            print(f"  {name:34} {value}")
    for traffic, rows in result["projection"].items():
        for row in rows:
            print(f"projection {traffic:15} {row}")
    print(f"serial_share={result['serial_share']:.4f} serial_ceiling_eps={result['serial_ceiling_eps']:.0f} "
          f"checks={'OK' if result['check']['ok'] else 'FAILED'}")
    return 0 if result["check"]["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

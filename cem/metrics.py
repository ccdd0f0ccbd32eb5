"""Prometheus metrics. Counters end in _total, durations are seconds; no identifier ever becomes a label."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_IN = Counter("cem_events_in_total", "Raw records consumed, per channel topic", ["channel"], registry=REGISTRY)
DEADLETTERED = Counter(
    "cem_deadletter_total", "Records sent to cem.deadletter, per machine-readable reason", ["reason"],
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "cem_duplicates_dropped_total", "Events dropped because their event_id was already processed", registry=REGISTRY
)
CONFLICTS = Counter(
    "cem_duplicate_conflicts_total",
    "Duplicates whose payload differed from the first copy (the first copy wins)",
    registry=REGISTRY,
)
EVENTS_RESOLVED = Counter(
    "cem_events_resolved_total", "Valid events that reached the resolver, duplicates included", registry=REGISTRY
)
MERGES = Counter("cem_identities_merged_total", "Customer merges", registry=REGISTRY)
REFUSED_MERGES = Counter(
    "cem_identity_merges_refused_total", "Merges refused by a guard, per reason", ["reason"], registry=REGISTRY
)
UNLINKED = Counter(
    "cem_identifiers_unlinked_total", "Identifiers not linked because a per-type limit was reached", ["id_type"],
    registry=REGISTRY,
)
SHARED_IDENTIFIERS = Counter(
    "cem_identifiers_shared_total",
    "Identifiers marked shared: seen with more values of another type than one customer may hold, they link nobody",
    ["id_type"], registry=REGISTRY,
)
ROWS_WRITTEN = Counter("cem_rows_written_total", "Rows inserted into ClickHouse, per table", ["table"],
                       registry=REGISTRY)
SINK_BATCH_SECONDS = Histogram(
    "cem_sink_batch_duration_seconds",
    "Time to write one batch to ClickHouse, all tables, retries excluded",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
SINK_FAILURES = Counter("cem_sink_failures_total", "Failed ClickHouse insert attempts (retried)", registry=REGISTRY)
INSERTS_FOUND_LANDED = Counter(
    "cem_sink_inserts_found_landed_total",
    "Failed inserts whose rows were found in the warehouse when the write resumed (the reply was lost): not sent "
    "again", ["table"], registry=REGISTRY)
SINK_UP = Gauge("cem_sink_up", "1 when the last ClickHouse write succeeded, 0 while retrying", registry=REGISTRY)
SINK_PENDING_EVENTS = Gauge(
    "cem_sink_pending_events", "Events processed but not yet written (offsets not committed)", registry=REGISTRY
)
CONSUMER_LAG = Gauge(
    "cem_consumer_lag_messages", "High watermark minus committed offset", ["topic", "partition"], registry=REGISTRY
)
STATE_RESTORE_SECONDS = Gauge(
    "cem_state_restore_seconds",
    "Time the resolver's state last took to be ready: resumed from the local store, or rebuilt from ClickHouse",
    registry=REGISTRY,
)
STATE_RESUMED = Counter(
    "cem_state_resumed_total", "Resolver starts that resumed from the state store on disk instead of rebuilding",
    registry=REGISTRY,
)
ERASURES = Counter("cem_erasures_total", "GDPR erasure requests applied (cem forget)", registry=REGISTRY)
RECOMPUTES = Counter(
    "cem_identity_recomputes_total",
    "Late events that made the resolver replay the customers they touch in event-time order",
    registry=REGISTRY,
)
STAGE_FAILURES = Counter(
    "cem_stage_failures_total",
    "Failed attempts of a stage's batch (retried until done; nothing is acknowledged meanwhile), per stage and error",
    ["stage", "error"], registry=REGISTRY,
)
ALERT_REVISIONS = Counter(
    "cem_alert_revisions_total",
    "Alert revisions written to ClickHouse (docs/alerts.md), per rule and state: open (raised) or withdrawn",
    ["rule", "state"], registry=REGISTRY,
)
ALERTS_PUBLISHED = Counter(
    "cem_alerts_published_total", "Alert revisions published to the alerts topic, per rule and state",
    ["rule", "state"], registry=REGISTRY,
)
ALERT_PUBLISH_LAG = Gauge(
    "cem_alert_publish_lag_seconds",
    "Age of the oldest alert revision written to ClickHouse and not yet on the alerts topic; 0 when none waits",
    registry=REGISTRY,
)
IDENTITY_EVENTS = Counter(
    "cem_identity_events_total",
    "Unique events the resolver attributed, by outcome: local (the graph did not change; a replica of its answers "
    "could attribute them) or the reason the graph's owner was needed (docs/scaling.md)",
    ["outcome"], registry=REGISTRY,
)
IDENTITY_GRAPH_SECONDS = Counter(
    "cem_identity_graph_seconds_total",
    "Time the identity graph spent on the unique events the resolver attributed, by need: owner (events that "
    "changed the graph: the serial work a split deployment keeps on one process) or local (events a replica of the "
    "graph's answers could attribute)",
    ["need"], registry=REGISTRY,
)
RESOLVER_CPU_SECONDS = Counter(
    "cem_resolver_cpu_seconds_total",
    "CPU time of the resolver's batches, by step: resolve (deduplication, identity, sessions, journeys, alert "
    "rules), columns (rows to ClickHouse columns), insert (sending them), state (the disk store's write-back). "
    "Only the worker that owns the resolver topic counts; its rate is the share of a core the serial stage uses",
    ["step"], registry=REGISTRY,
)
IDENTITY_VERSIONS_PUBLISHED = Counter(
    "cem_identity_versions_published_total",
    "Identity versions the graph's owner published to the identity changes topic, catch-up versions included",
    registry=REGISTRY,
)
IDENTITY_OWNER_LAG = Gauge(
    "cem_identity_owner_lag_messages",
    "Messages waiting for the graph's owner, exported by the worker that owns it: the lag of the resolver topic, or "
    "with the split resolver (CEM_SPLIT_PARTITIONS) that of the owner's requests topic",
    ["partition"], registry=REGISTRY,
)
FRONT_HELD = Gauge(
    "cem_split_front_held_events",
    "Events this worker's fronts hold until the owner's answer reaches its identity replica (CEM_SPLIT_PARTITIONS)",
    registry=REGISTRY,
)


def _replica_gauge(name: str, documentation: str) -> Gauge:
    """The replica's gauges are labelled with the topic it reads: a worker without a replica exports none."""
    return Gauge(name, documentation, ["topic"], registry=REGISTRY)


REPLICA_VERSION = _replica_gauge(
    "cem_identity_replica_version",
    "The newest owner version this worker's identity replica applied (microseconds of the owner's clock)")
REPLICA_LAG = _replica_gauge(
    "cem_identity_replica_lag_messages",
    "Messages on the identity changes topic that this worker's replica has not applied yet")
REPLICA_STALE = _replica_gauge(
    "cem_identity_replica_stale_seconds",
    "Seconds since this worker's identity replica last held everything published; 0 while it does")
REPLICA_READY = _replica_gauge(
    "cem_identity_replica_ready",
    "1 once this worker's identity replica has loaded the warehouse's identity sets and read the changes topic to "
    "its end")
FRONT_ANSWERS = Counter(
    "cem_identity_front_answers_total",
    "Valid events this worker's ingest asked its identity replica about, while it was ready, by answer: local (a "
    "front of the split would forward the event at once) or owner (it would wait for the graph's owner)",
    ["answer"], registry=REGISTRY,
)
REPLICA_SKIPPED = Counter(
    "cem_identity_replica_skipped_total",
    "Messages of the identity changes topic the replica refused (not signed by cem, or malformed), per reason",
    ["reason"], registry=REGISTRY,
)

_lag_exported: set[tuple[str, str]] = set()


def export_consumer_lag(lags: Mapping[tuple[str, int], int]) -> None:
    """Set the lag of the partitions this worker holds, {(topic, partition): lag}, and drop every other partition's:
    one that moved to another worker must not go on reporting here the lag it had (it would count twice, and a
    stale backlog never drains)."""
    held = set()
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(topic, str(partition)).set(max(0, lag))
        held.add((topic, str(partition)))
    for gone in _lag_exported - held:
        CONSUMER_LAG.remove(*gone)
    _lag_exported.clear()
    _lag_exported.update(held)


_owner_lag_exported: set[str] = set()


def export_owner_lag(lags: Mapping[int, int]) -> None:
    """The identity owner's lag on the resolver partitions this worker holds; a partition that moved away stops
    being reported here, as for `export_consumer_lag`."""
    held = set()
    for partition, lag in lags.items():
        IDENTITY_OWNER_LAG.labels(str(partition)).set(max(0, lag))
        held.add(str(partition))
    for gone in _owner_lag_exported - held:
        IDENTITY_OWNER_LAG.remove(gone)
    _owner_lag_exported.clear()
    _owner_lag_exported.update(held)


class CollectMetrics:
    """`cem collect`'s own metrics (its /metrics), in a registry of their own: the collector is another process
    than the worker, and each collector app (several in one test process) counts for itself."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("cem_collect_requests_total", "SDK requests answered, per HTTP status and code",
                                ["status", "code"], registry=self.registry)
        self.events = Counter("cem_collect_events_total", "SDK messages written to the raw topics, per channel",
                              ["channel"], registry=self.registry)
        self.dead_letters = Counter("cem_collect_deadletter_total",
                                    "SDK messages the collector dead-lettered, per reason", ["reason"],
                                    registry=self.registry)
        self.seconds = Histogram("cem_collect_request_duration_seconds",
                                 "From a request to its 200, Kafka's acknowledgement included",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                 registry=self.registry)
        self.kafka_up = Gauge("cem_collect_kafka_up", "1 while the collector's producer is connected to Kafka",
                              registry=self.registry)

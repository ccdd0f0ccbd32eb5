"""The one settings object. Every knob is a `CEM_*` environment variable; nothing else reads os.environ."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from cem.domain.effects import OWN_VERSIONS
from cem.domain.keyed import key_bytes

CHANNELS: tuple[str, ...] = (
    "web",
    "mobile",
    "email",
    "call_center",
    "chat",
    "social",
    "store",
    "commerce",
    "support",
    "survey",
)

# Local state (Faust's data dir, the embedded warehouse, the demo's files) lives in one place whatever the current
# directory: a command run from another folder finds the same warehouse.
DEFAULT_STATE_DIR = str(Path.home() / ".local" / "share" / "cem")


@dataclass(frozen=True)
class Settings:
    # Connections
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    # Empty: the embedded engine in <state_dir>/warehouse. May hold a password.
    clickhouse_url: str = field(default="", repr=False)
    # Empty: one server. A cluster name of the servers' remote_servers: replicated tables, created ON CLUSTER,
    # behind Distributed tables of today's names (docs/deploy.md, "Cluster mode").
    clickhouse_cluster: str = ""
    web_port: int = 6066
    web_host: str = "127.0.0.1"  # /metrics and /status carry no secrets, but expose them deliberately
    secret_key: str = field(default="", repr=False)  # signs internal messages; empty: a development key
    # A Confluent-API schema registry (e.g. http://host:8081, may hold a password): empty leaves Confluent framing off
    schema_registry_url: str = field(default="", repr=False)
    schema_registry_timeout_seconds: float = 5.0
    # Worker identity and state
    app_id: str = "cem"
    topic_prefix: str = "cem"  # topics are <prefix>.raw.<channel>, .deadletter, .resolve and .schemas
    state_dir: str = DEFAULT_STATE_DIR
    # The resolver's state: on disk under <state_dir>/resolver-state, with this much memory for its caches and
    # RocksDB's (docs/architecture.md, "The state store"); "memory" keeps it all in memory, as tests may.
    state_store: str = "disk"
    state_memory_mb: int = 256
    topic_partitions: int = 4
    # Of the topics workers create (theirs and Faust's): 3 on a cluster of 3 or more brokers (docs/deploy.md)
    topic_replication_factor: int = 1
    # Processing
    dedup_window_days: float = 7.0
    session_gap_minutes: float = 30.0
    fcr_window_days: float = 7.0
    max_future_skew_hours: float = 24.0
    min_event_time: str = "2000-01-01T00:00:00Z"
    phone_default_region: str = "US"
    # Identity graph (docs/identity.md). Extra identifier types are appended to the priority order, weakest last.
    identifier_types_extra: str = ""  # e.g. "loyalty_card,store_account"
    identifier_limits: str = ""  # overrides, e.g. "device_id=20,email=3"; defaults in cem/domain/identity.py
    blocked_values_extra: str = ""  # comma-separated values that must never link, on top of the defaults
    blocked_patterns_extra: str = ""  # regexes separated by ";;", on top of the defaults
    erasure_max_customers: int = 3  # cem forget refuses, unless --force, an identifier carried by more customers
    erasure_purge_raw_topics: bool = False  # after an erasure, also delete consumed records from the raw topics
    # Types naming a device or browser, not a person: they make a person's identifier shared only past a threshold.
    weak_identifier_types: str = "device_id,anonymous_id"
    shared_weak_threshold: int = 200
    max_record_bytes: int = 900_000
    max_text_chars: int = 20_000
    max_identifiers: int = 50
    max_properties: int = 200
    # The largest message the worker writes (resolver batches, dead letters, control); must fit the producer's
    # request limit and the topics' max.message.bytes (checked at start-up)
    message_max_bytes: int = 900_000
    producer_max_request_bytes: int = 1_000_000
    # Read-only queries (`cem sql`, `cem identity explain`): stopped past these bounds
    sql_timeout_seconds: int = 60
    sql_max_result_rows: int = 100_000
    # `cem squash`: overrides whose latest move is older than this are applied to interaction rows and deleted
    squash_min_age_minutes: int = 60
    # Batching: ingest batches are sent as one message to the resolver; sink flushes when either bound is hit
    ingest_batch_max: int = 2_000
    ingest_batch_seconds: float = 0.05
    sink_batch_max: int = 50_000
    sink_flush_seconds: float = 0.25  # p99 0.88 s at half load (docs/performance.md); ~4 inserts/s per table
    sink_retry_max_seconds: float = 10.0
    # The most one fetch brings of each partition. Kafka's usual 1 MiB left the worker waiting on fetches once
    # Faust's hand-over of records got cheaper (docs/performance.md, "Faust's hand-over of each record").
    consumer_fetch_bytes: int = 4 * 1024 * 1024
    # Kafka consumer group liveness (short in tests)
    session_timeout_seconds: float = 30.0
    heartbeat_interval_seconds: float = 3.0
    log_level: str = "WARNING"
    shutdown_grace_seconds: float = 10.0  # a stop waits this long for the batch in flight, then exits uncommitted
    # A worker whose event loop has not turned for this long exits (code 70) so its partitions move; 0 disables.
    # Below Faust's broker_rebalance_timeout (60 s): a stuck worker leaves before the group would drop it.
    watchdog_seconds: float = 30.0
    # `cem doctor`: the consumer lag (messages, per topic) and dead letters in the last hour above which it fails
    doctor_max_lag: int = 10_000
    doctor_max_deadletters_per_hour: int = 100
    # `cem collect`, the HTTP collector of tracking SDKs (docs/collector.md)
    collect_host: str = "127.0.0.1"
    collect_port: int = 8088
    collect_write_keys: str = field(default="", repr=False)  # "key=channel,key2", a channel per key optional
    collect_max_event_bytes: int = 32_768
    collect_max_batch_bytes: int = 500_000
    collect_max_inflight_requests: int = 64  # past it (or the bytes below) an SDK is answered 429
    collect_max_inflight_bytes: int = 16_000_000
    collect_retry_after_seconds: int = 1
    collect_kafka_timeout_seconds: float = 5.0  # past it a request is answered 503, and Kafka counts as down
    collect_clock_skew_tolerance_seconds: float = 5.0
    # Alerts (docs/alerts.md): the rule file (empty: the built-in cem/alert_rules.toml), the watermark's idleness
    # (processing time) and allowed lateness (event time), how often SLA deadlines are checked with no traffic, and
    # the format of cem.alerts (json or avro)
    alert_rules: str = ""
    alert_idle_seconds: float = 60.0
    alert_lateness_seconds: float = 0.0
    alert_tick_seconds: float = 5.0
    alert_format: str = "json"
    # The alert publisher's producer is idempotent; off only for a broker without idempotent producers (the demo's
    # Tansu): a retry may then write a revision twice, which consumers skip (docs/alerts.md, "Exactly once")
    alert_idempotent_producer: bool = True
    # The identity replica (docs/scaling.md): the resolver publishes each version of the identity graph's answers
    # to <prefix>.identity_changes, and every worker keeps a read replica of them, with freshness metrics. Off by
    # default: a single-resolver deployment does not read it.
    identity_replica: bool = False
    identity_changes_retention_hours: float = 24.0
    # With CEM_STATE_STORE=disk the replica lives in its own store under CEM_STATE_DIR, its caches within this budget
    identity_replica_memory_mb: int = 64
    # With two or more workers, the one holding the resolver partition takes no raw-topic partitions (the others
    # ingest for it, streams/assignment.py); true keeps Faust's even spread of every topic.
    owner_ingests: bool = False
    # The partitioned resolver (docs/scaling.md, "The split on Kafka"): 0 runs the single resolver; N > 0 gives
    # <prefix>.resolve N front partitions keyed by event id and <prefix>.customers N customer partitions, with the
    # identity graph's owner alone on <prefix>.identity. It needs the identity replica, and turns it on.
    split_partitions: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.split_partitions <= OWN_VERSIONS:
            # a writer of customer partitions versions its batches in the last digits of its lowest partition
            raise ValueError(f"CEM_SPLIT_PARTITIONS must be 0 (off) to {OWN_VERSIONS}, not {self.split_partitions}")
        if self.split_partitions:
            object.__setattr__(self, "identity_replica", True)
        if self.state_store not in ("disk", "memory"):
            raise ValueError(f"CEM_STATE_STORE must be disk or memory, not {self.state_store!r}")
        if self.consumer_fetch_bytes < 65_536:
            raise ValueError(f"CEM_CONSUMER_FETCH_BYTES must be at least 65536, not {self.consumer_fetch_bytes}")
        if self.state_memory_mb < 32:
            raise ValueError(f"CEM_STATE_MEMORY_MB must be at least 32, not {self.state_memory_mb}")
        if self.identity_replica_memory_mb < 16:
            raise ValueError("CEM_IDENTITY_REPLICA_MEMORY_MB must be at least 16, not "
                             f"{self.identity_replica_memory_mb}")
        if not self.clickhouse_url:
            object.__setattr__(self, "clickhouse_url", f"chdb://{Path(self.state_dir).absolute()}/warehouse")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = "CEM_" + f.name.upper()
            if key in env:
                values[f.name] = _coerce(hints[f.name], env[key], key)
        values.update(overrides)
        return cls(**values)

    def as_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        return {"CEM_" + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    @property
    def raw_topics(self) -> list[str]:
        return [self.raw_topic(c) for c in CHANNELS]

    def raw_topic(self, channel: str) -> str:
        return f"{self.topic_prefix}.raw.{channel}"

    @property
    def deadletter_topic(self) -> str:
        return f"{self.topic_prefix}.deadletter"

    @property
    def resolve_topic(self) -> str:
        return f"{self.topic_prefix}.resolve"

    @property
    def control_topic(self) -> str:
        return f"{self.topic_prefix}.control"

    @property
    def alerts_topic(self) -> str:
        return f"{self.topic_prefix}.alerts"

    @property
    def alert_actions_topic(self) -> str:
        """ack/resolve of alerts (`cem alerts ack|resolve`), applied idempotently by the worker."""
        return f"{self.topic_prefix}.alert_actions"

    @property
    def signing_key(self) -> bytes:
        """The key of internal-message signatures and keyed hashes; a public development key when unset."""
        return key_bytes(self.secret_key)

    @property
    def identity_changes_topic(self) -> str:
        """The identity graph owner's versions, read whole by every worker's replica (CEM_IDENTITY_REPLICA)."""
        return f"{self.topic_prefix}.identity_changes"

    @property
    def identity_topic(self) -> str:
        """Fronts' requests to the identity graph's owner (CEM_SPLIT_PARTITIONS): one partition, one owner."""
        return f"{self.topic_prefix}.identity"

    @property
    def customers_topic(self) -> str:
        """Routed events and merge hand-offs, one partition per customer partition (CEM_SPLIT_PARTITIONS)."""
        return f"{self.topic_prefix}.customers"

    @property
    def schemas_topic(self) -> str:
        """Writer schemas registered at run time (`cem schemas register`), compacted."""
        return f"{self.topic_prefix}.schemas"


def raw_topic(channel: str) -> str:
    """The default topic of a channel (prefix `cem`)."""
    return f"cem.raw.{channel}"


def _coerce(kind: Any, text: str, key: str) -> Any:
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is bool:
            return text.strip().lower() in {"1", "true", "yes", "on"}
        return text
    except ValueError as exc:
        raise ValueError(f"{key}={text!r} is not a valid {kind.__name__}") from exc

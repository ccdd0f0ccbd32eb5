"""The partitioned resolver's warehouse side (docs/scaling.md, "The split on Kafka"): each stage's state rebuilt
from the warehouse, and each stage's rows written.

Every stage starts from one snapshot of the warehouse, restored as the single resolver restores it, and keeps its
share: the graph's owner the identity graph; a customer partition the sessions and journeys of the customers that
hash to it and the merged customers it hands on, and knows every recent event written, so that it drops their
copies read again; a front the dedup window. So a stage restored
after others wrote holds exactly what their rows say, as a restarted single resolver does. Sessions and journeys
are filed under the customer they were last written under, not its survivor: the rows of a merged customer are
the partition's until the survivor's partition writes them again (cem.domain.customer_stage, "Restarts").

A stage's rows are written as the single resolver's are (sinks.writer): table by table in one order, a failed
insert retried after checking whether it landed, every call returning only once all is written. Only the owner
writes the batch mark (`resolver_batches`): a replica starts from the owner's last complete version. A customer
partition's batch writes its interaction rows first and its own mark (`partition_batches`) last: the partition
restored after a batch cut short writes again what it holds of the sessions and journeys its rows name.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from cem import metrics
from cem.domain.customer_stage import CustomerPartition, customer_partition
from cem.domain.effects import Effects
from cem.domain.front import Front
from cem.domain.identity_owner import IdentityOwner
from cem.domain.identity_replica import IdentityChanges, IdentityReplica
from cem.domain.resolver import Resolver, follow_aliases, stale_override_owners
from cem.domain.state_maps import in_memory_maps
from cem.service.connection import WarehouseClient
from cem.service.resolver_service import WRITE_ORDER
from cem.settings import Settings
from sinks.errors import describe_error
from sinks.identity_reads import identity_changes_between
from sinks.snapshot import load_split_snapshot
from sinks.writer import (
    PARTITION_MARK,
    PARTITION_TABLES,
    PARTITION_WRITE_ORDER,
    abandoned_columns,
    effect_columns,
    partition_mark_columns,
    row_count,
)

MARK = "resolver_batches"
log = logging.getLogger("cem.worker")


@dataclass
class Restored:
    """The warehouse's state, as the single resolver restores it: each stage takes its share."""

    resolver: Resolver
    last_version: int  # the owner's last complete version (its batch mark)
    # the event id of every recent interaction row: a copy of one read again is dropped at whichever customer
    # partition it reaches (CustomerPartition.written_before)
    written: frozenset[str]
    merged: dict[str, str] = field(default_factory=dict)  # every merged customer -> its survivor now
    owner_version: int = 0  # the owner's next version goes above it: its mark, or the batch cut short above it
    # (session ids, journey ids) the customer partitions' rows name at versions with no mark: a partition restored
    # writes what it holds of them again (CustomerPartition.unmarked)
    unmarked: tuple[set[str], set[str]] = field(default_factory=lambda: (set(), set()))


@dataclass
class _Pending:
    """A stage's rows being written: the tables landed, and the one whose insert failed (it may have landed)."""

    version: int
    tables: dict[str, dict[str, list[Any]]]
    order: tuple[str, ...] = WRITE_ORDER
    landed: set[str] = field(default_factory=set)
    uncertain: str = ""


class SplitWarehouse(WarehouseClient):
    """One stage's connection: its restore and its writes, retried until done (one instance per stage: each has
    its own connection, so the stages of one worker never wait on each other's inserts)."""

    def __init__(self, settings: Settings, stage: str, **connection: Any) -> None:
        super().__init__(settings, **connection)  # cem.service.connection.WarehouseClient's keywords
        self.stage = stage
        self.pending: _Pending | None = None
        self.stale_overrides: dict[str, str] = {}  # sinks.writer.override_rows

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ---- restore ------------------------------------------------------------------------------------------
    def restored(self) -> Restored:
        """The single resolver's state as the warehouse holds it now; for the customer stage, also what the
        partitions' batches cut short named (`Restored.unmarked`)."""
        with self.lock:
            return self.retry.run(self._restored)

    def _restored(self) -> Restored:
        warehouse = self._ensure_warehouse()
        started = time.perf_counter()
        since_ms = self.now_ms() - self.config.dedup_window_ms
        snapshot, written = load_split_snapshot(warehouse, since_ms, owner=self.stage == "owner")
        if snapshot.cut is not None:  # before any row of the batch that does their work again
            self._abandon(warehouse, snapshot.cut)
        resolver = Resolver(self.config, in_memory_maps)
        resolver.restore(snapshot, as_written=True)  # a customer partition hands merged customers on itself
        # Only the owner writes customer overrides: its next batch overrides the stale ones.
        self.stale_overrides = stale_override_owners(snapshot, resolver.graph) if self.stage == "owner" else {}
        # Versioned from the recent interaction rows, a restored partition could write a session again at the
        # version of an older row of it (its own hand-over's, another worker's behind a slower clock): argMax
        # has no tie-break. Its versions go above every row of the partitions' tables.
        resolver.version = max(resolver.version, warehouse.newest_version_above(resolver.version, PARTITION_TABLES))
        merged = survivors(warehouse.customer_aliases(written))
        events_written = frozenset(row.event_id for row in snapshot.recent)
        metrics.STATE_RESTORE_SECONDS.set(time.perf_counter() - started)
        owner_version = max(written.through, snapshot.cut[1] if snapshot.cut else 0)
        unmarked = warehouse.unmarked_partition_ids(since_ms * 1000) if self.stage == "customers" else (set(), set())
        if any(unmarked):
            log.warning("customers: rows with no batch mark (a batch cut short, or one being written) name %d "
                        "sessions and %d journeys: the partitions restored write what they hold of them again",
                        len(unmarked[0]), len(unmarked[1]))
        return Restored(resolver, written.through, events_written, merged, owner_version, unmarked)

    def _abandon(self, warehouse: Any, cut: tuple[int, int]) -> None:
        """Records an owner batch cut short: every later restore leaves its versions out."""
        log.warning("%s: the warehouse holds rows of an owner batch cut short (versions %d to %d): restored "
                    "without them, the batch is done again", self.stage, cut[0] + 1, cut[1])
        warehouse.insert("abandoned_batches", abandoned_columns(cut, self.now_ms()))
        metrics.ROWS_WRITTEN.labels("abandoned_batches").inc()

    def identity_written_after(self, version: int) -> IdentityChanges:
        """The identity answers written above `version`: the owner's catch-up for the replicas after a takeover."""
        with self.lock:
            return self.retry.run(lambda: identity_changes_between(self._ensure_warehouse(), version, None))

    # ---- writes -------------------------------------------------------------------------------------------
    def write(self, effects: Effects) -> int:
        """Writes a stage's rows (the owner's with the batch mark, the customer stage's with its own); returns the
        interaction rows written."""
        tables = effect_columns(effects, self.now_ms(), self.config.fcr_window_ms, self.stale_overrides)
        self.stale_overrides = {}  # overridden by this batch's rows, kept for its retries
        order: tuple[str, ...] = WRITE_ORDER
        if self.stage != "owner":
            tables.pop(MARK)
        if self.stage == "customers" and tables:
            tables[PARTITION_MARK] = partition_mark_columns(effects, self.now_ms())
            order = PARTITION_WRITE_ORDER
        write = _Pending(effects.version, tables, order)
        with self.lock:
            self.retry.run(lambda: self._write(write))
        return len(effects.interactions)

    def _write(self, write: _Pending) -> None:
        warehouse = self._ensure_warehouse()
        for table in write.order:
            columns = write.tables.get(table)
            if columns is None or table in write.landed:
                continue
            if table == write.uncertain and warehouse.holds_version(table, write.version):
                metrics.INSERTS_FOUND_LANDED.labels(table).inc()
                write.landed.add(table)
                continue
            write.uncertain = table
            warehouse.insert(table, columns)
            metrics.ROWS_WRITTEN.labels(table).inc(row_count(columns))
            write.landed.add(table)

    def _failed(self, exc: Exception) -> None:
        metrics.SINK_FAILURES.inc()
        metrics.STAGE_FAILURES.labels(self.stage, type(exc).__name__).inc()
        log.warning("%s: ClickHouse step failed, retrying: %s", self.stage, describe_error(exc))
        self.close()


def survivors(aliases: dict[str, str]) -> dict[str, str]:
    """Each merged customer's survivor now, chains followed; a customer live again is not merged."""
    merged = {}
    for alias_id in aliases:
        survivor = follow_aliases(aliases, alias_id)
        if survivor != alias_id:
            merged[alias_id] = survivor
    return merged


# ---- each stage's share of a restored resolver --------------------------------------------------------------
def owner_from(restored: Restored) -> IdentityOwner:
    owner = IdentityOwner(restored.resolver.config)
    owner.graph = restored.resolver.graph
    owner.version = restored.owner_version
    return owner


def front_from(restored: Restored, replica: IdentityReplica) -> Front:
    """A front with the warehouse's dedup window (every id: a front only ever sees its partitions' ids)."""
    front = Front(replica, restored.resolver.config.dedup_window_ms)
    front.dedup = restored.resolver.dedup
    return front


def partition_from(restored: Restored, index: int, partitions: int) -> CustomerPartition:
    """Customer partition `index` as the warehouse holds it: the sessions and journeys of the customers that hash
    to it, its merged customers with their survivors, and the recent events written anywhere; the owner's version
    its rows reflect is applied. A merged customer's sessions and journeys still here are handed on by the partition's
    first step (CustomerPartition.hand_on_restored)."""
    resolver = restored.resolver
    part = CustomerPartition(index, partitions, resolver.config.session_gap_ms,
                             window_ms=resolver.config.dedup_window_ms)

    def here(customer_id: str) -> bool:
        return customer_partition(customer_id, partitions) == index

    for customer_id, sessions in resolver.sessions.by_customer.items():
        if here(customer_id):
            part.sessions.by_customer[customer_id] = sessions
    for customer_id, journeys in resolver.journeys.by_customer.items():
        if here(customer_id):
            part.journeys.by_customer[customer_id] = journeys
    graph = resolver.graph
    for merged_id in list(graph.parent):
        if here(merged_id):
            part.handed[merged_id] = graph.find(merged_id)
    for merged_id, survivor in restored.merged.items():
        if here(merged_id):
            part.handed[merged_id] = survivor
    part.written_before = restored.written
    part.applied = restored.last_version
    part.version = resolver.version
    part.unmarked = restored.unmarked
    return part

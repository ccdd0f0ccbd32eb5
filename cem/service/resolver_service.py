"""The resolver service: the resolver and the warehouse it writes to and is rebuilt from.

`process_and_write` resolves a batch and writes its effects; `apply_control` applies an erasure. Both block (the
resolve stage runs them in a worker thread) and both return only once done, retrying meanwhile (cem.service.retry):
the caller acknowledges Kafka only after they returned.

A failed insert is resumed, not re-sent: the batch's tables are written in order (sinks.writer), the ones before
the failure are done, and the failed one is looked up first (an insert is all or none, and its reply can be lost
after the rows were written) and written only if it holds no row of the batch's version; then the rest. The
resolver's state already reflects the batch, so it is kept. When the resolver itself failed (its state may be half
updated), or the partition moved, the resolver is rebuilt from the warehouse and the batch processed again,
exactly as after a crash: rows that landed are recognised as duplicates and only the missing ones are written
(docs/architecture.md, "State and exactly-once").

The counters are those of cem.metrics, a leaf module of Prometheus collectors with no Faust in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cem import metrics
from cem.config import alert_engine, alert_rules
from cem.domain.alerts import AlertEngine, AlertRow, batch_facts
from cem.domain.alerts.rules import SlaBreach
from cem.domain.effects import Effects, ResolvedInteraction
from cem.domain.erasure import ErasureRequest, InvalidRequest
from cem.domain.identity_replica import IdentityChanges
from cem.domain.model import Interaction
from cem.domain.resolver import Resolver, stale_override_owners
from cem.domain.state_maps import MapFactory, in_memory_maps
from cem.service.connection import WarehouseClient
from cem.service.rejected_rows import Columns, isolate_rejected_rows, repair_effects
from cem.settings import Settings
from cem.state_store import Checkpoint, StateStore, WriteBack
from sinks.alert_store import action_columns, alert_columns, alert_rows_after, load_alert_snapshot
from sinks.erasure import ErasureOutcome, erase, erasure_key
from sinks.errors import describe_error, error_code, is_rejection
from sinks.identity_reads import identity_changes_between, replica_start
from sinks.snapshot import load_snapshot
from sinks.warehouse import Warehouse
from sinks.writer import EARLY_TABLES, TABLE_ORDER, abandoned_columns, effect_columns, row_count

log = logging.getLogger("cem.worker")
# A batch's alert revisions and SLA timers land before its interaction rows: a replayed batch finds them written.
WRITE_ORDER = (*EARLY_TABLES, *TABLE_ORDER[-2:])  # interaction rows, then the mark


@dataclass(frozen=True)
class BatchResult:
    """What one resolver batch became: its effects, the interaction rows written, and the events the warehouse
    rejected (with its reason), for the dead-letter topic."""

    effects: Effects
    written: int
    rejected: list[tuple[Interaction, str]] = field(default_factory=list)
    alerts: list[AlertRow] = field(default_factory=list)  # revisions written by this batch, for cem.alerts


@dataclass
class PendingWrite:
    """A batch whose effects are computed and partly written: `landed` tables hold its rows; `uncertain` is the
    table whose insert failed (it may have landed all the same)."""

    events: list[Interaction]
    effects: Effects
    tables: dict[str, Columns]
    landed: set[str] = field(default_factory=set)
    uncertain: str = ""
    alerts: list[AlertRow] = field(default_factory=list)


class ResolverFault(Exception):
    """The resolver itself failed on a batch: its state may be half-updated, so it is rebuilt before a retry."""


class ResolverService(WarehouseClient):
    """`open_warehouse` gives a migrated read-write connection (by default to CEM_CLICKHOUSE_URL); a failed attempt
    closes it and the next attempt opens another. `stopping` set: retries give their batch up (`Stopping`).
    `on_stuck` is called when `rebalance_pending()` has stayed true for a while on a step that keeps failing; in a
    worker it exits the process."""

    def __init__(self, settings: Settings, **connection: Any) -> None:
        super().__init__(settings, **connection)  # cem.service.connection.WarehouseClient's keywords
        self.resolver: Resolver | None = None
        self.pending: PendingWrite | None = None
        self.stale_overrides: dict[str, str] = {}  # sinks.writer.override_rows
        self.rules = alert_rules(settings)  # a bad rule file stops the worker here, before it consumes anything
        self.alerts: AlertEngine | None = None
        self.store: StateStore | None = None
        self.write_back: WriteBack | None = None
        if settings.state_store == "disk":
            self.store = StateStore(Path(settings.state_dir) / "resolver-state", settings.state_memory_mb)
            self.write_back = WriteBack(self.store, lambda: _cpu("state"))
        # The store is resumed from once, when the process starts: after that, a resolver dropped (a failure, the
        # partition gone) may have left it ahead of the warehouse, so it is rebuilt.
        self.may_resume = True
        self.warehouse_name = hashlib.sha256(settings.clickhouse_url.encode()).hexdigest()[:16]

    def shutdown(self) -> None:
        """At the end of the process: the connection, and the state store's files."""
        self.close()
        if self.write_back is not None:
            self.write_back.close()
        if self.store is not None:
            self.store.close()
            self.store = None

    def invalidate(self) -> None:
        """Another worker may write while we do not own the resolver partition: rebuild before the next batch."""
        self.resolver = None
        self.alerts = None
        self.pending = None

    def process_and_write(self, events: list[Interaction]) -> BatchResult:
        """Returns once every row of the batch is written, or rejected by the warehouse (those events are
        returned for the dead-letter topic)."""
        with self.lock:
            result = self.retry.run(lambda: self._process_and_write(events))
        metrics.SINK_UP.set(1)
        metrics.SINK_PENDING_EVENTS.set(0)
        _count(result.effects, len(events))
        return result

    def apply_control(self, message: dict[str, Any]) -> ErasureOutcome | None:
        """Today the one control is "forget" (GDPR erasure); retried until it is applied."""
        if message.get("control") != "forget":
            log.warning("ignoring unknown control message %r", message.get("control"))
            return None
        try:
            request = ErasureRequest.from_message(message)
        except InvalidRequest as exc:
            log.warning("ignoring an erasure request: %s", exc)
            return None
        key = erasure_key(self.settings)
        # After a failure the graph may already be forgotten: the retry rebuilds it from the warehouse first.
        with self.lock:
            return self.retry.run(lambda: self._erase(request, key))

    # ---- one attempt ---------------------------------------------------------------------------------
    def _process_and_write(self, events: list[Interaction]) -> BatchResult:
        if self.pending is not None:
            if self.pending.events is events:
                return self._write(self.pending)
            self.invalidate()  # another batch: the state reflects one whose write was given up
        self._written_back()  # the last batch's write-back, before this batch changes the state
        resolver = self._ensure_resolver()
        engine = self._ensure_alerts()
        now_ms = self._now_ms()
        try:
            with _cpu("resolve"):
                effects = resolver.process(events, now_ms)
                alerts = engine.evaluate(batch_facts(effects, self._priority_property()), now_ms)
        except Exception as exc:
            raise ResolverFault(describe_error(exc)) from exc
        metrics.SINK_PENDING_EVENTS.set(len(events))
        with _cpu("columns"):
            tables = effect_columns(effects, now_ms, self.config.fcr_window_ms, self.stale_overrides)
            tables.update(alert_columns(alerts, effects.version))
        self.stale_overrides = {}  # overridden by this batch's rows, kept for its retries
        return self._write(PendingWrite(events, effects, tables, alerts=alerts.alerts))

    def _erase(self, request: ErasureRequest, key: bytes) -> ErasureOutcome:
        self._written_back()
        resolver = self._ensure_resolver()
        warehouse = self._ensure_warehouse()
        outcome = erase(resolver, warehouse, request, key, self._now_ms(),
                        max_customers=self.settings.erasure_max_customers, fcr_window_ms=self.config.fcr_window_ms)
        # An erasure changes the state as a batch does: its mark tells every worker's files that they are behind,
        # and these files get no checkpoint (they are not the state a batch ended with).
        self._insert(warehouse, "resolver_batches", {"version": [resolver.version], "interactions": [0],
                                                     "duplicates": [0], "written_ms": [self._now_ms()]})
        if self.store is not None:
            self.store.flush(None)
        self.alerts = None  # its open alerts and timers are read again, anonymised
        metrics.ERASURES.inc()
        return outcome

    def _write(self, write: PendingWrite) -> BatchResult:
        warehouse = self._ensure_warehouse()
        started = time.perf_counter()
        rejected: list[tuple[Interaction, str]] = []
        version = write.effects.version
        for table in WRITE_ORDER:
            columns = write.tables.get(table)
            if columns is None or table in write.landed:
                continue
            if table == write.uncertain and warehouse.holds_version(table, version):
                metrics.INSERTS_FOUND_LANDED.labels(table).inc()
                write.landed.add(table)
                continue
            self.pending, write.uncertain = write, table
            try:
                self._insert(warehouse, table, columns)
            except Exception as exc:
                if table != "interaction_log" or not is_rejection(exc):
                    raise
                self.pending = None  # set aside by rebuilding from the warehouse (which waits for the write-back)
                rejected = self._set_rejected_aside(warehouse, write.effects, columns, exc)
            write.landed.add(table)
        self.pending = None
        if not rejected:  # setting rows aside rebuilt the state from the warehouse: no checkpoint of this batch
            self._write_back_after_inserts(version)
        metrics.SINK_BATCH_SECONDS.observe(time.perf_counter() - started)
        for row in write.alerts:
            metrics.ALERT_REVISIONS.labels(row.rule, row.state).inc()
        return BatchResult(write.effects, len(write.effects.interactions) - len(rejected), rejected, write.alerts)

    def _set_rejected_aside(self, warehouse: Warehouse, effects: Effects, columns: Columns,
                            error: Exception) -> list[tuple[Interaction, str]]:
        """The warehouse rejected the batch's interaction rows: write the accepted ones, then rebuild the resolver
        from the warehouse (which holds no row of the rejected events) and write again the journeys and sessions
        those events had touched, so that neither the resolver's state nor any view counts them."""
        found = isolate_rejected_rows(lambda part: self._insert(warehouse, "interaction_log", part), columns, error)
        log.warning("ClickHouse refused %d of %d interaction rows (code %s); they go to the dead-letter topic "
                    "as warehouse_rejected", len(found), row_count(columns), error_code(error))
        rows = [effects.interactions[i] for i, _ in found]
        self._rewrite_touched(rows, effects.version)
        return [(row.interaction, detail) for row, (_, detail) in zip(rows, found, strict=True)]

    def _rewrite_touched(self, rejected: list[ResolvedInteraction], after_version: int) -> None:
        self.invalidate()
        resolver = self._ensure_resolver()
        now_ms = self._now_ms()
        repair = repair_effects(resolver, rejected, after_version, now_ms)
        tables = effect_columns(repair, now_ms, self.config.fcr_window_ms)
        for table in ("session_log", "journey_log", "resolver_batches"):  # with its mark: a restore reads it
            if table in tables:
                self._insert(self._ensure_warehouse(), table, tables[table])

    # ---- state and connection ------------------------------------------------------------------------
    def _write_back_after_inserts(self, version: int) -> None:
        """The state's write-back, in its own thread once the rows are in (beside them, each insert's reply waited
        for the interpreter lock it held); the next batch waits for it. A worker that dies before it is done finds
        its files behind the warehouse at its next start, and rebuilds (`_resumed`)."""
        if self.write_back is not None:
            self.write_back.start(Checkpoint(version, self.warehouse_name))

    def _written_back(self) -> None:
        """Waits for the write-back in flight (every other use of the store comes after it); raises what it raised."""
        if self.write_back is not None:
            self.write_back.wait()

    def _insert(self, warehouse: Warehouse, table: str, columns: Columns) -> None:
        with _cpu("insert"):
            warehouse.insert(table, columns)
        metrics.ROWS_WRITTEN.labels(table).inc(row_count(columns))

    def _ensure_resolver(self) -> Resolver:
        if self.resolver is None:
            started = time.perf_counter()
            warehouse = self._ensure_warehouse()
            self.resolver = self._resumed(warehouse) or self._rebuilt(warehouse)
            metrics.STATE_RESTORE_SECONDS.set(time.perf_counter() - started)
        return self.resolver

    def _resumed(self, warehouse: Warehouse) -> Resolver | None:
        """The state on disk, when it ends with the last batch the warehouse holds in full."""
        may_resume, self.may_resume = self.may_resume, False
        if self.store is None or not may_resume:
            return None
        checkpoint = self.store.checkpoint()
        if checkpoint is None or checkpoint.warehouse != self.warehouse_name:
            return None
        last = warehouse.last_batch_version()
        if checkpoint.version != last:
            log.info("state on disk ends at version %d, the warehouse at %d: rebuilding", checkpoint.version, last)
            return None
        if warehouse.newest_version_above(last, (*EARLY_TABLES, "interaction_log")):
            log.info("the warehouse holds rows of a batch after its last mark: rebuilding")
            return None
        resolver = self._new_resolver()
        resolver.version = checkpoint.version
        metrics.STATE_RESUMED.inc()
        return resolver

    def _rebuilt(self, warehouse: Warehouse) -> Resolver:
        with contextlib.suppress(Exception):  # whatever it wrote is wiped now
            self._written_back()
        if self.store is not None:
            self.store.wipe()
        resolver = self._new_resolver()
        trim = self.store.trim if self.store is not None else (lambda: None)
        snapshot = load_snapshot(warehouse, self._now_ms() - self.config.dedup_window_ms, written_in_full=True)
        if snapshot.cut is not None:  # before any row of the batch that does their work again
            after, until = snapshot.cut
            log.warning("the warehouse holds rows of a batch cut short (versions %d to %d): restored without them, "
                        "the batch is done again", after + 1, until)
            self._insert(warehouse, "abandoned_batches", abandoned_columns(snapshot.cut, self._now_ms()))
        resolver.restore(snapshot, trim)
        self.stale_overrides = stale_override_owners(snapshot, resolver.graph)
        if self.store is not None:
            self.store.trim()
        return resolver

    def _new_resolver(self) -> Resolver:
        # The thread's own clock times the graph's part of each event: waiting for the GIL is not its cost.
        return Resolver(self.config, self._maps(), timer=time.thread_time)

    def _maps(self) -> MapFactory:
        return self.store.map if self.store is not None else in_memory_maps

    def _ensure_alerts(self) -> AlertEngine:
        """The alert engine, rebuilt from the warehouse with the resolver (both reflect the same rows)."""
        if self.alerts is None:
            engine = alert_engine(self.settings, self.rules)
            engine.restore(load_alert_snapshot(self._ensure_warehouse(), engine.retention_ms,
                                               engine.events.text_window_ms), self._now_ms())
            self.alerts = engine
        return self.alerts

    def alerts_due(self) -> bool:
        """Whether an alert tick (an empty batch) would raise or clear anything now. Without an engine yet (a
        start with no traffic), the tick builds it; otherwise an empty batch is written only when it matters, so
        a warehouse outage holds back real batches, not ticks."""
        return self.alerts is None or self.alerts.has_due(self._now_ms())

    def _priority_property(self) -> str:
        return next((rule.priority_property for rule in self.rules.of(SlaBreach)), "priority")

    # ---- alerts out and operators' actions -------------------------------------------------------------
    def unpublished_alerts(self, revision: int, alert_id: str) -> list[AlertRow]:
        """The outbox after the last revision published (the tail of cem.alerts), in publishing order."""
        with self.lock:
            return self.retry.run(lambda: alert_rows_after(self._ensure_warehouse(), revision, alert_id))

    def identity_start(self) -> IdentityChanges:
        """The identity answers a worker's replica starts from (sinks.identity_reads.replica_start)."""
        with self.lock:
            return self.retry.run(lambda: replica_start(self._ensure_warehouse()))

    def identity_written_after(self, version: int) -> IdentityChanges:
        """The identity answers written at versions above `version`: the owner's catch-up after a takeover."""
        with self.lock:
            return self.retry.run(lambda: identity_changes_between(self._ensure_warehouse(), version, None))

    def record_alert_actions(self, actions: list[dict[str, Any]]) -> None:
        """ack/resolve actions: idempotent (one action id is one row, whatever the replays)."""
        if not actions:
            return
        with self.lock:
            self.retry.run(lambda: self._insert(self._ensure_warehouse(), "alert_actions",
                                                action_columns(actions, self._now_ms() * 1000)))

    def _failed(self, exc: Exception) -> None:
        """One failed attempt: count it and drop the connection. The state goes too (it may be stale), unless a
        write is to be resumed: the state reflects that batch already."""
        try:
            self._written_back()
        except Exception as failed:  # the files may lack what it held: rebuilt, never written on top of
            log.warning("the state store's write-back failed: %s", describe_error(failed))
            self.invalidate()
        if self.pending is None or isinstance(exc, ResolverFault):
            self.invalidate()
        metrics.SINK_FAILURES.inc()
        metrics.SINK_UP.set(0)
        if isinstance(exc, ResolverFault):
            log.warning("resolver failed, retrying: %s", exc)
        else:
            log.warning("ClickHouse write failed, retrying: %s", describe_error(exc))
        self.close()

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _count(effects: Effects, n_events: int) -> None:
    metrics.EVENTS_RESOLVED.inc(n_events)
    metrics.DUPLICATES.inc(effects.duplicates)
    metrics.CONFLICTS.inc(effects.conflicts)
    metrics.MERGES.inc(len(effects.merges))
    metrics.RECOMPUTES.inc(effects.recomputes)
    for refusal in effects.refused_merges:
        metrics.REFUSED_MERGES.labels(refusal.reason).inc()
    for ident, _reason in effects.unlinked:
        metrics.UNLINKED.labels(ident[0]).inc()
    for found in effects.shared:
        metrics.SHARED_IDENTIFIERS.labels(found.id_type).inc()
    for outcome, count in effects.identity_outcomes.items():
        metrics.IDENTITY_EVENTS.labels(outcome).inc(count)
    for need, seconds in effects.graph_seconds.items():
        metrics.IDENTITY_GRAPH_SECONDS.labels(need).inc(seconds)


@contextlib.contextmanager
def _cpu(step: str) -> Iterator[None]:
    """Counts the CPU time this thread spends in the block (a thread's own clock: time waiting for the GIL or for
    ClickHouse is not counted)."""
    started = time.thread_time()
    try:
        yield
    finally:
        metrics.RESOLVER_CPU_SECONDS.labels(step).inc(time.thread_time() - started)

"""An in-memory warehouse for tests: the `Warehouse` interface over Python lists, with faults on demand.

`FakeWarehouseServer` holds the tables (the columns the migrations create) and the faults; `connect()` gives a
connection to it, as `sinks.clickhouse.connect` gives one to a server, so a service that drops a failed
connection and opens another finds the same rows. It answers the typed reads of `WarehouseReader` as the SQL of
sinks.snapshot does (tests/contract holds both to the same answers). It runs no SQL: erasure, views and `cem
sql` need a real engine.

An insert is all or nothing, like ClickHouse's: a refused or failed insert stores nothing. The faults:
- `faults.fail(times, table)`: inserts raise before storing (an outage: retried);
- `faults.lose_reply(times, table)`: inserts store their rows, then raise (the reply was lost after the commit);
- `refuse_rows(predicate, table, code)`: an insert with a row the predicate matches is refused with that
  ClickHouse error code (a data rejection by default: THROW_IF_VALUE_IS_NON_ZERO, as a throwIf guard column).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cem.domain.alerts import AlertRow, AlertSnapshot, TimerRow
from cem.domain.resolver import RecentRow
from cem.domain.shared import SharedIdentifier
from sinks.clickhouse import migration_tables
from sinks.warehouse import IdentitySetRow, JourneyRow, WrittenInFull
from sinks.writer import EARLY_TABLES, PARTITION_NAMES

Row = dict[str, Any]
THROW_IF_NON_ZERO = 395
NO_SUCH_COLUMN_IN_TABLE = 16
UNKNOWN_TABLE = 60
TYPE_MISMATCH = 53


class FakeServerError(Exception):
    """An error of the fake server, with a ClickHouse error code as clickhouse-driver's ServerException has."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"Code: {code}. DB::Exception: {message}")
        self.code = code


@dataclass
class _Fault:
    kind: str  # "fail": before storing; "lose_reply": after
    table: str | None  # None: any table
    remaining: int


@dataclass
class InsertFaults:
    """Insert faults to come, shared by every connection to one server (and usable around a real warehouse)."""

    pending: list[_Fault] = field(default_factory=list)
    fired: list[tuple[str, str]] = field(default_factory=list)  # (kind, table), in order

    def fail(self, times: int = 1, table: str | None = None) -> None:
        self.pending.append(_Fault("fail", table, times))

    def lose_reply(self, times: int = 1, table: str | None = "interaction_log") -> None:
        self.pending.append(_Fault("lose_reply", table, times))

    def before_insert(self, table: str) -> None:
        if self._fire("fail", table):
            raise ConnectionResetError(104, "fake warehouse: connection reset by peer")

    def after_insert(self, table: str) -> None:
        if self._fire("lose_reply", table):
            raise EOFError("Unexpected EOF while reading bytes")

    def _fire(self, kind: str, table: str) -> bool:
        for fault in self.pending:
            if fault.kind == kind and fault.remaining > 0 and fault.table in (None, table):
                fault.remaining -= 1
                self.fired.append((kind, table))
                return True
        return False


@dataclass
class _Refusal:
    table: str
    predicate: Callable[[Row], bool]
    code: int


class FakeWarehouseServer:
    def __init__(self, database: str = "cem") -> None:
        self.database = database
        self.schema = migration_tables()
        self.tables: dict[str, list[Row]] = {name: [] for name in self.schema}
        self.faults = InsertFaults()
        self.refusals: list[_Refusal] = []
        self.connections = 0

    def connect(self) -> FakeWarehouse:
        self.connections += 1
        return FakeWarehouse(self)

    def refuse_rows(self, predicate: Callable[[Row], bool], table: str = "interaction_log",
                    code: int = THROW_IF_NON_ZERO) -> None:
        self.refusals.append(_Refusal(table, predicate, code))

    def rows(self, table: str) -> list[Row]:
        return list(self.tables[table])

    def insert(self, table: str, columns: dict[str, list[Any]]) -> None:
        rows = self._rows(table, columns)
        self.faults.before_insert(table)
        for refusal in self.refusals:
            if refusal.table == table and any(refusal.predicate(row) for row in rows):
                raise FakeServerError(refusal.code, f"a row of this insert into {table} is refused")
        self.tables[table].extend(rows)
        self.faults.after_insert(table)

    def _rows(self, table: str, columns: dict[str, list[Any]]) -> list[Row]:
        schema = self.schema.get(table)
        if schema is None:
            raise FakeServerError(UNKNOWN_TABLE, f"Table {self.database}.{table} doesn't exist")
        unknown = set(columns) - set(schema)
        if unknown:
            raise FakeServerError(NO_SUCH_COLUMN_IN_TABLE, f"No such column {sorted(unknown)[0]} in table {table}")
        if len({len(values) for values in columns.values()}) > 1:
            raise ValueError(f"columns of unequal lengths for {table}")
        names = list(columns)
        rows = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
        for name in names:
            if not schema[name].startswith("Nullable(") and any(row[name] is None for row in rows):
                raise FakeServerError(TYPE_MISMATCH, f"NULL in the non-Nullable column {table}.{name}")
        return rows


class FakeWarehouse:
    """A connection to a FakeWarehouseServer."""

    def __init__(self, server: FakeWarehouseServer) -> None:
        self.server = server
        self.database = server.database
        self.closed = False

    def insert(self, table: str, columns: dict[str, list[Any]]) -> None:
        self._open().insert(table, columns)

    def command(self, sql: str) -> None:
        raise NotImplementedError("the fake warehouse runs no SQL")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError("the fake warehouse runs no SQL; it answers the reads of WarehouseReader")

    def query_with_columns(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        raise NotImplementedError("the fake warehouse runs no SQL; it answers the reads of WarehouseReader")

    def close(self) -> None:
        self.closed = True

    # ---- WarehouseReader, as sinks.snapshot.ClickHouseReads answers it ----------------------------------
    def identity_sets(self, written: WrittenInFull | None = None) -> list[IdentitySetRow]:
        """GROUP BY identity_key: any(id_types), any(id_values), the least (first_ms, first_event_id)."""
        first: dict[str, Row] = {}
        earliest: dict[str, Row] = {}
        for row in _written(self._table("identity_sets"), written):
            key = row["identity_key"]
            first.setdefault(key, row)
            if key not in earliest or ((row["first_ms"], row["first_event_id"])
                                       < (earliest[key]["first_ms"], earliest[key]["first_event_id"])):
                earliest[key] = row
        return [IdentitySetRow(key, tuple(zip(map(str, row["id_types"]), map(str, row["id_values"]), strict=True)),
                               int(earliest[key]["first_ms"]), str(earliest[key]["first_event_id"]))
                for key, row in first.items()]

    def shared_identifiers(self, written: WrittenInFull | None = None) -> list[SharedIdentifier]:
        """GROUP BY id_type, value: argMin(…, version), the row of the lowest version."""
        earliest: dict[tuple[str, str], Row] = {}
        for row in _written(self._table("shared_identifiers"), written):
            key = (str(row["id_type"]), str(row["value"]))
            if key not in earliest or row["version"] < earliest[key]["version"]:
                earliest[key] = row
        return [SharedIdentifier(id_type, value, str(row["event_id"]), int(row["occurred_ms"]), str(row["reason"]),
                                 int(row["distinct_count"]))
                for (id_type, value), row in earliest.items()]

    def session_aliases(self, written: WrittenInFull | None = None) -> list[tuple[str, str]]:
        latest = _latest(_written(self._table("id_aliases"), written), "alias_id",
                         lambda row: row["kind"] == "session")
        return [(alias_id, str(row["current_id"])) for alias_id, row in latest.items()]

    def customer_aliases(self, written: WrittenInFull | None = None) -> dict[str, str]:
        latest = _latest(_written(self._table("id_aliases"), written), "alias_id",
                         lambda row: row["kind"] == "customer")
        return {alias_id: str(row["current_id"]) for alias_id, row in latest.items()}

    def last_batch_version(self) -> int:
        return max((int(row["version"]) for row in self._table("resolver_batches")), default=0)

    def abandoned_batches(self) -> list[tuple[int, int]]:
        return [(int(row["after_version"]), int(row["until_version"])) for row in self._table("abandoned_batches")]

    def stale_customer_overrides(self, written: WrittenInFull) -> list[str]:
        latest = _latest(self._table("overrides"), "id", lambda row: row["kind"] == "customer")
        return [key for key, row in latest.items() if not written.admits(int(row["version"]))]

    def newest_version_above(self, version: int, tables: tuple[str, ...] = EARLY_TABLES) -> int:
        return max((int(row["version"]) for table in tables for row in self._table(table)
                    if row["version"] > version), default=0)

    def holds_version(self, table: str, version: int) -> bool:
        return any(row["version"] == version for row in self._table(table))

    def unmarked_partition_ids(self, since_version: int) -> tuple[set[str], set[str]]:
        marked = {row["version"] for row in self._table("partition_batches")}
        found: tuple[set[str], set[str]] = (set(), set())
        for names, table, row_kind, columns in PARTITION_NAMES:
            for row in self._table(table):
                if row["version"] < since_version or row["version"] in marked or (row_kind and row["kind"] != row_kind):
                    continue
                found[0 if names == "session" else 1].update(
                    str(row[column]) for column in columns if row[column] not in ("", "-"))
        return found

    def session_owners(self, since_version: int, written: WrittenInFull | None = None) -> dict[str, str]:
        latest = _latest(_written(self._table("session_log"), written), "session_id",
                         lambda row: row["customer_id"] != "" and row["version"] >= since_version)
        return {session_id: str(row["customer_id"]) for session_id, row in latest.items()}

    def service_journeys(self, written: WrittenInFull | None = None) -> list[JourneyRow]:
        latest = _latest(_written(self._table("journey_log"), written), "journey_id",
                         lambda row: row["kind"] == "service")
        return [JourneyRow(journey_id, str(row["merged_into"]), str(row["customer_id"]))
                for journey_id, row in latest.items()]

    def recent_interactions(self, since_ingested_ms: int) -> list[RecentRow]:
        rows = [row for row in self._table("interaction_log")
                if row["ingested_ms"] >= since_ingested_ms or row["issue_ref"] != ""]
        rows.sort(key=lambda row: (row["ingested_ms"], row["version"]))
        return [RecentRow(str(r["event_id"]), str(r["fingerprint"]), int(r["ingested_ms"]), int(r["version"]),
                          int(r["occurred_ms"]), str(r["channel"]), str(r["type"]), str(r["origin_customer_id"]),
                          str(r["origin_session_id"]), str(r["issue_ref"]), str(r["identity_key"]),
                          str(r["journey_id"]))
                for r in rows]

    # ---- the alert reads of sinks.alert_store (clocks, alerts and timers; trend counts and texts need SQL) ----
    def alert_snapshot(self, retention_ms: int) -> AlertSnapshot:
        clocks: dict[str, tuple[int, int]] = {}
        for row in self._table("interaction_log"):
            event_ms, seen_ms = clocks.get(row["channel"], (0, 0))
            clocks[row["channel"]] = (max(event_ms, row["occurred_ms"]), max(seen_ms, row["ingested_ms"]))
        latest = max((event_ms for event_ms, _ in clocks.values()), default=0)
        alerts = [a for a in self._latest_alerts() if a.event_ms >= latest - retention_ms]
        timers: dict[tuple[str, str], Row] = {}
        for row in self._table("alert_timers"):
            key = (row["rule"], row["journey_id"])
            if key not in timers or row["version"] > timers[key]["version"]:
                timers[key] = row
        return AlertSnapshot(
            alerts=alerts, channel_clocks=[(c, e, s) for c, (e, s) in clocks.items()],
            timers=[TimerRow(*(r[name] for name in TIMER_FIELDS))
                    for r in timers.values() if not r["cleared"]])

    def alert_rows_after(self, revision: int, alert_id: str) -> list[AlertRow]:
        rows = {(r["revision"], r["alert_id"]): r for r in self._table("alert_log")
                if (r["revision"], r["alert_id"]) > (revision, alert_id)}
        return [_alert(rows[key]) for key in sorted(rows)]

    def _latest_alerts(self) -> list[AlertRow]:
        latest: dict[str, Row] = {}
        for row in self._table("alert_log"):
            if row["alert_id"] not in latest or row["revision"] > latest[row["alert_id"]]["revision"]:
                latest[row["alert_id"]] = row
        return [_alert(row) for row in latest.values()]

    def _table(self, name: str) -> list[Row]:
        return self._open().tables[name]

    def _open(self) -> FakeWarehouseServer:
        if self.closed:
            raise RuntimeError("this fake warehouse connection is closed")
        return self.server


TIMER_FIELDS = ("rule", "journey_id", "customer_id", "issue_ref", "channel", "priority", "first_ms", "deadline_ms")


def _alert(row: Row) -> AlertRow:
    return AlertRow(**{name: row[name] for name in AlertRow.__slots__ if name != "evidence"},  # type: ignore[attr-defined]
                    evidence=tuple(row["evidence"]))


def _written(rows: list[Row], written: WrittenInFull | None) -> list[Row]:
    return rows if written is None else [row for row in rows if written.admits(int(row["version"]))]


def _latest(rows: list[Row], key: str, where: Callable[[Row], bool]) -> dict[str, Row]:
    """argMax(…, version) per key: the row of the highest version (the first written among equals)."""
    latest: dict[str, Row] = {}
    for row in rows:
        if where(row):
            known = latest.get(row[key])
            if known is None or row["version"] > known["version"]:
                latest[row[key]] = row
    return latest

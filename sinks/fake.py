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

from cem.domain.resolver import RecentRow
from cem.domain.shared import SharedIdentifier
from sinks.clickhouse import migration_tables
from sinks.warehouse import IdentitySetRow, JourneyRow

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
    def identity_sets(self) -> list[IdentitySetRow]:
        """GROUP BY identity_key: any(id_types), any(id_values), min(first_ms), argMin(first_event_id, ...)."""
        first: dict[str, Row] = {}
        earliest: dict[str, Row] = {}
        for row in self._table("identity_sets"):
            key = row["identity_key"]
            first.setdefault(key, row)
            if key not in earliest or row["first_ms"] < earliest[key]["first_ms"]:
                earliest[key] = row
        return [IdentitySetRow(key, tuple(zip(map(str, row["id_types"]), map(str, row["id_values"]), strict=True)),
                               int(earliest[key]["first_ms"]), str(earliest[key]["first_event_id"]))
                for key, row in first.items()]

    def shared_identifiers(self) -> list[SharedIdentifier]:
        """GROUP BY id_type, value: argMin(…, version), the row of the lowest version."""
        earliest: dict[tuple[str, str], Row] = {}
        for row in self._table("shared_identifiers"):
            key = (str(row["id_type"]), str(row["value"]))
            if key not in earliest or row["version"] < earliest[key]["version"]:
                earliest[key] = row
        return [SharedIdentifier(id_type, value, str(row["event_id"]), int(row["occurred_ms"]), str(row["reason"]),
                                 int(row["distinct_count"]))
                for (id_type, value), row in earliest.items()]

    def session_aliases(self) -> list[tuple[str, str]]:
        latest = _latest(self._table("id_aliases"), "alias_id", lambda row: row["kind"] == "session")
        return [(alias_id, str(row["current_id"])) for alias_id, row in latest.items()]

    def last_batch_version(self) -> int:
        return max((int(row["version"]) for row in self._table("resolver_batches")), default=0)

    def holds_version(self, table: str, version: int) -> bool:
        return any(row["version"] == version for row in self._table(table))

    def session_owners(self, since_version: int) -> dict[str, str]:
        latest = _latest(self._table("session_log"), "session_id",
                         lambda row: row["customer_id"] != "" and row["version"] >= since_version)
        return {session_id: str(row["customer_id"]) for session_id, row in latest.items()}

    def service_journeys(self) -> list[JourneyRow]:
        latest = _latest(self._table("journey_log"), "journey_id", lambda row: row["kind"] == "service")
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

    def _table(self, name: str) -> list[Row]:
        return self._open().tables[name]

    def _open(self) -> FakeWarehouseServer:
        if self.closed:
            raise RuntimeError("this fake warehouse connection is closed")
        return self.server


def _latest(rows: list[Row], key: str, where: Callable[[Row], bool]) -> dict[str, Row]:
    """argMax(…, version) per key: the row of the highest version (the first written among equals)."""
    latest: dict[str, Row] = {}
    for row in rows:
        if where(row):
            known = latest.get(row[key])
            if known is None or row["version"] > known["version"]:
                latest[row[key]] = row
    return latest

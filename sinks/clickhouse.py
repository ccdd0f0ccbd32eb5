"""ClickHouse adapter: connections (server or embedded chdb), migrations, the batch writer and the snapshot
the resolver is rebuilt from.

Exactly once, as analysts see it: the writer inserts a batch's identity facts and journeys first and its
interaction rows last. The resolver's state is rebuilt from these tables after any restart, so an event whose
interaction row is present is a duplicate on replay, and one whose row is missing is processed again. Each row
is either wholly present or absent, so no FINAL, OPTIMIZE or insert-deduplication token is needed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

import orjson

from cem.domain.journeys import JourneyMetrics
from cem.domain.model import identity_key
from cem.domain.resolver import Effects, RecentRow, Snapshot
from cem.domain.shared import SharedIdentifier
from sinks.read_only import (
    READONLY,
    TIMEOUT_EXCEEDED,
    QueryLimits,
    QueryTimeout,
    chdb_timed_out,
    explain_unsupported,
    run_bounded,
)
from sinks.sql_guard import ReadOnlyViolation as ReadOnlyViolation  # the exception callers catch
from sinks.sql_guard import ReadStatement, check_read_only

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class WarehouseError(Exception):
    pass


class Warehouse(Protocol):
    database: str

    def command(self, sql: str) -> None: ...

    def query(self, sql: str) -> list[tuple[Any, ...]]: ...

    def query_with_columns(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows. On a read-only connection: at most max_result_rows + 1 rows."""
        ...

    def insert(self, table: str, columns: dict[str, list[Any]]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class WarehouseUrl:
    scheme: str
    host: str = "127.0.0.1"
    port: int = 9000
    user: str = "default"
    password: str = ""
    database: str = "cem"
    path: str = ""

    def __repr__(self) -> str:  # never print the password
        return f"WarehouseUrl({self.redacted()})"

    def redacted(self) -> str:
        if self.scheme == "chdb":
            return f"chdb://{self.path}?database={self.database}"
        return f"clickhouse://{self.user}:***@{self.host}:{self.port}/{self.database}"


def parse_url(url: str) -> WarehouseUrl:
    parsed = urlparse(url)
    if parsed.scheme == "chdb":
        database = parse_qs(parsed.query).get("database", ["cem"])[0]
        return WarehouseUrl("chdb", path=unquote(parsed.netloc + parsed.path), database=database)
    if parsed.scheme in ("clickhouse", "tcp"):
        return WarehouseUrl(
            "clickhouse",
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 9000,
            user=unquote(parsed.username or "default"),
            password=unquote(parsed.password or ""),
            database=(parsed.path.lstrip("/") or "cem"),
        )
    raise WarehouseError(f"CEM_CLICKHOUSE_URL must start with clickhouse:// or chdb://, got {parsed.scheme!r}")


def connect(url: str, read_only: bool = False, limits: QueryLimits | None = None) -> Warehouse:
    """A read-only connection guards every statement (sinks.sql_guard), runs it with readonly=1 and within
    `limits` (defaults: QueryLimits())."""
    target = parse_url(url)
    if target.scheme == "chdb":
        return ChdbWarehouse(target, read_only, limits)
    return ServerWarehouse(target, read_only, limits)


class ServerWarehouse:
    """A ClickHouse server over the native protocol (clickhouse-driver), columnar inserts."""

    def __init__(self, target: WarehouseUrl, read_only: bool = False, limits: QueryLimits | None = None) -> None:
        from clickhouse_driver import Client

        self.database = target.database
        self.read_only = read_only
        self.limits = limits or QueryLimits()
        # readonly goes last: once it is set, the server refuses to change any other setting.
        self._query_settings: dict[str, Any] = {**self.limits.engine_settings(), "readonly": 1} if read_only else {}
        self._client = Client(
            host=target.host, port=target.port, user=target.user, password=target.password,
            connect_timeout=5, send_receive_timeout=max(60, self.limits.timeout_seconds + 30),
        )

    def command(self, sql: str) -> None:
        if self.read_only:
            self._bounded(check_read_only(sql))
            return
        self._client.execute(sql)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self.query_with_columns(sql)[1]

    def query_with_columns(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        if self.read_only:
            return self._bounded(check_read_only(sql))
        rows, columns = self._client.execute(sql, with_column_types=True)
        return [name for name, _ in columns], list(rows)

    def insert(self, table: str, columns: dict[str, list[Any]]) -> None:
        names = ", ".join(columns)
        self._client.execute(
            f"INSERT INTO {self.database}.{table} ({names}) VALUES", list(columns.values()), columnar=True
        )

    def close(self) -> None:
        self._client.disconnect()

    def _bounded(self, statement: ReadStatement) -> tuple[list[str], list[tuple[Any, ...]]]:
        from clickhouse_driver.errors import ServerException

        if statement.kind == "explain" and (why := explain_unsupported(self._client)):
            raise WarehouseError(why)
        try:
            return run_bounded(self._client, statement.sql, self._query_settings, self.limits)
        except ServerException as exc:
            if exc.code == TIMEOUT_EXCEEDED:
                raise QueryTimeout(self.limits.timeout_seconds) from exc
            if exc.code == READONLY and "Cannot modify" in str(exc) and self._query_settings:
                # A user whose profile sets readonly=1 may not change settings (18.16 ignores them silently, newer
                # servers refuse): its profile's limits apply on the server, and the client's bounds still hold.
                self._query_settings = {}
                return run_bounded(self._client, statement.sql, self._query_settings, self.limits)
            raise


class ChdbWarehouse:
    """The embedded engine (chdb) over a data directory. One process per directory."""

    def __init__(self, target: WarehouseUrl, read_only: bool = False, limits: QueryLimits | None = None) -> None:
        from chdb import session

        Path(target.path).mkdir(parents=True, exist_ok=True)
        self.database = target.database
        self.read_only = read_only
        self.limits = limits or QueryLimits()
        self._session = session.Session(target.path)
        if read_only:
            for statement in self.limits.session_statements():
                self._session.query(statement)

    def command(self, sql: str) -> None:
        if self.read_only:
            self.query_with_columns(sql)
            return
        self._session.query(sql)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self.query_with_columns(sql)[1]

    def query_with_columns(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        text = check_read_only(sql).sql if self.read_only else sql.rstrip().rstrip(";")
        try:
            raw = self._session.query(text, "JSONCompact").bytes()
        except Exception as exc:
            # A query that failed half-way leaves its partial output in the session's buffer, and chdb hands it to
            # the next query: a throwaway query takes it.
            self._session.query("SELECT 1", "Null")
            if chdb_timed_out(exc):
                raise QueryTimeout(self.limits.timeout_seconds) from exc
            raise
        if not raw:
            return [], []
        document = orjson.loads(raw)
        rows = [tuple(row) for row in document["data"]]
        if self.read_only:
            rows = rows[:self.limits.max_result_rows + 1]
        return [column["name"] for column in document["meta"]], rows

    def insert(self, table: str, columns: dict[str, list[Any]]) -> None:
        names = list(columns)
        rows = zip(*columns.values(), strict=True)
        lines = b"\n".join(orjson.dumps(dict(zip(names, row, strict=True))) for row in rows)
        self._session.query(f"INSERT INTO {self.database}.{table} FORMAT JSONEachRow\n" + lines.decode())

    def close(self) -> None:
        self._session.close()


# ---- migrations ---------------------------------------------------------------------------------------
def migrate(warehouse: Warehouse) -> list[str]:
    """Apply every migration not yet recorded in {db}.schema_migrations. Returns the names applied."""
    db = warehouse.database
    warehouse.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    warehouse.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (name String, applied_ms UInt64) "
        "ENGINE = MergeTree() ORDER BY name"
    )
    done = {row[0] for row in warehouse.query(f"SELECT name FROM {db}.schema_migrations")}
    applied = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.stem in done:
            continue
        for statement in split_statements(path.read_text()):
            warehouse.command(statement.format(db=db))
        warehouse.insert("schema_migrations", {"name": [path.stem], "applied_ms": [int(time.time() * 1000)]})
        applied.append(path.stem)
    return applied


def split_statements(script: str) -> list[str]:
    without_comments = "\n".join(line for line in script.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in without_comments.split(";") if s.strip()]


# ---- writing ------------------------------------------------------------------------------------------
# The order matters: interaction rows go last (see the module docstring).
TABLE_ORDER = ("customer_log", "identity_links", "customer_merges", "refused_merge_log", "shared_identifiers",
               "id_aliases", "identity_sets", "journey_log", "interaction_log")


def effect_columns(effects: Effects, now_ms: int, fcr_window_ms: int) -> dict[str, dict[str, list[Any]]]:
    """Columnar rows for every table a batch touches, in TABLE_ORDER."""
    v = effects.version
    tables: dict[str, dict[str, list[Any]]] = {}
    if effects.customers:
        tables["customer_log"] = {
            "customer_id": [c.customer_id for c in effects.customers],
            "first_event_id": [c.first_seen[1] for c in effects.customers],
            "first_seen_ms": [c.first_seen[0] for c in effects.customers],
            "version": [v] * len(effects.customers),
        }
    if effects.links:
        # A recompute can re-link an identifier linked earlier in the same batch: keep the last, as for aliases.
        links = list({(link.id_type, link.value): link for link in effects.links}.values())
        tables["identity_links"] = _columns(
            links, ("id_type", "value", "customer_id", "event_id", "occurred_ms", "rule"), v
        )
    if effects.merges:
        cols = _columns(effects.merges, ("from_id", "into_id", "event_id", "occurred_ms", "rule"), v)
        cols["seq"] = list(range(len(effects.merges)))
        tables["customer_merges"] = cols
    if effects.refused:
        tables["refused_merge_log"] = _columns(
            effects.refused, ("customer_id", "other_customer_id", "event_id", "occurred_ms", "reason"), v
        )
    if effects.shared:
        cols = _columns(effects.shared, ("id_type", "value", "event_id", "occurred_ms"), v)
        cols.update(marked_ms=[now_ms] * len(effects.shared), reason=[s.reason for s in effects.shared],
                    distinct_count=[s.distinct_count for s in effects.shared])
        tables["shared_identifiers"] = cols
    # One batch shares one version, so only the last alias of an id may be written (argMax has no tie-break).
    latest = {("customer", a): b for a, b in effects.customer_aliases.items()}
    latest.update({("session", s.from_id): s.into_id for s in effects.session_aliases})
    aliases = [(kind, alias_id, current) for (kind, alias_id), current in latest.items()]
    if aliases:
        tables["id_aliases"] = {
            "kind": [a[0] for a in aliases],
            "alias_id": [a[1] for a in aliases],
            "current_id": [a[2] for a in aliases],
            "version": [v] * len(aliases),
        }
    if effects.identity_sets:
        items = list(effects.identity_sets.items())
        tables["identity_sets"] = {
            "identity_key": [identity_key(ids) for ids, _ in items],
            "id_types": [[t for t, _ in ids] for ids, _ in items],
            "id_values": [[v for _, v in ids] for ids, _ in items],
            "first_ms": [first[0] for _, (_, first) in items],
            "first_event_id": [first[1] for _, (_, first) in items],
            "customer_id": [owner for _, (owner, _) in items],
            "version": [v] * len(items),
        }
    journey_rows = [
        _session_row(s.session_id, s.customer_id, s.start_ms, s.end_ms, s.events, s.channels, "")
        for s in effects.sessions.values()
    ]
    journey_rows += [_session_row(a.from_id, "", 0, 0, 0, set(), a.into_id)
                     for a in {a.from_id: a for a in effects.session_aliases}.values()]
    journey_rows += [
        _service_row(j.journey_id, j.customer_id, j.issue_ref, j.metrics(fcr_window_ms))
        for j in effects.journeys.values()
    ]
    journey_rows += [_service_alias_row(a.from_id, a.issue_ref, a.into_id)
                     for a in {a.from_id: a for a in effects.journey_aliases}.values()]
    if journey_rows:
        tables["journey_log"] = _rows_to_columns(JOURNEY_COLUMNS, journey_rows, v)
    if effects.interactions:
        tables["interaction_log"] = _interaction_columns(effects, now_ms)
    return tables


JOURNEY_COLUMNS = ("journey_id", "kind", "customer_id", "issue_ref", "started_ms", "ended_ms", "events", "contacts",
                   "channels", "resolved", "resolved_ms", "fcr", "time_to_resolution_s", "merged_into")


def _session_row(
    session_id: str, customer_id: str, start: int, end: int, events: int, channels: set[str], merged_into: str
) -> tuple[Any, ...]:
    return (session_id, "session", customer_id, "", start, end, events, events, sorted(channels), 0, 0, 0, None,
            merged_into)


def _service_row(journey_id: str, customer_id: str, issue_ref: str, m: JourneyMetrics) -> tuple[Any, ...]:
    return (journey_id, "service", customer_id, issue_ref, m.started_ms, m.ended_ms, m.contacts, m.contacts,
            list(m.channels), int(m.resolved), m.resolved_ms or 0, int(m.fcr), m.time_to_resolution_s, "")


def _service_alias_row(journey_id: str, issue_ref: str, merged_into: str) -> tuple[Any, ...]:
    return (journey_id, "service", "", issue_ref, 0, 0, 0, 0, [], 0, 0, 0, None, merged_into)


def _interaction_columns(effects: Effects, now_ms: int) -> dict[str, list[Any]]:
    rows = effects.interactions
    events = [r.interaction for r in rows]
    return {
        "event_id": [e.event_id for e in events],
        "channel": [e.channel for e in events],
        "type": [e.type for e in events],
        "occurred_ms": [e.occurred_ms for e in events],
        "identity_key": [identity_key(e.identifiers) for e in events],
        "origin_customer_id": [r.customer_id for r in rows],
        "origin_session_id": [r.session_id for r in rows],
        "journey_id": [r.journey_id for r in rows],
        "issue_ref": [e.issue_ref or "" for e in events],
        "sentiment": [e.sentiment for e in events],
        "survey_kind": [e.survey_kind or "" for e in events],
        "survey_score": [e.survey_score for e in events],
        "text": [e.text or "" for e in events],
        "device": [e.device for e in events],
        "os": [e.os for e in events],
        "browser": [e.browser for e in events],
        "property_keys": [list(e.properties) for e in events],
        "property_values": [list(e.properties.values()) for e in events],
        "fingerprint": [e.fingerprint for e in events],
        "ingested_ms": [now_ms] * len(rows),
        "version": [effects.version] * len(rows),
    }


def _columns(items: Sequence[Any], names: tuple[str, ...], version: int) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {name: [getattr(item, name) for item in items] for name in names}
    cols["version"] = [version] * len(items)
    return cols


def _rows_to_columns(names: tuple[str, ...], rows: list[tuple[Any, ...]], version: int) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {name: list(values) for name, values in zip(names, zip(*rows, strict=True),
                                                                            strict=True)}
    cols["version"] = [version] * len(rows)
    return cols


# ---- reading the resolver's state back ---------------------------------------------------------------
def load_snapshot(warehouse: Warehouse, since_ingested_ms: int) -> Snapshot:
    db = warehouse.database
    snapshot = Snapshot()
    for key, types, values, first_ms, first_event in warehouse.query(
        f"SELECT identity_key, any(id_types), any(id_values), min(first_ms), argMin(first_event_id, first_ms) "
        f"FROM {db}.identity_sets GROUP BY identity_key"
    ):
        identifiers = tuple(zip((str(t) for t in types), (str(v) for v in values), strict=True))
        snapshot.identity_sets[str(key)] = (identifiers, (int(first_ms), str(first_event)))
    snapshot.shared = [
        SharedIdentifier(str(t), str(v), str(e), int(ms), str(reason), int(n)) for t, v, e, ms, reason, n in
        warehouse.query(
            "SELECT id_type, value, argMin(event_id, version), argMin(occurred_ms, version), argMin(reason, version), "
            f"argMin(distinct_count, version) FROM {db}.shared_identifiers GROUP BY id_type, value")
    ]
    snapshot.session_aliases = [
        (str(a), str(b)) for a, b in warehouse.query(
            f"SELECT alias_id, argMax(current_id, version) FROM {db}.id_aliases WHERE kind = 'session' "
            "GROUP BY alias_id")
    ]
    # Service journeys: the absorbed ones (merged_into set) and the customer each live one was last written with.
    for journey_id, merged_into, owner in warehouse.query(
        f"SELECT journey_id, argMax(merged_into, version), argMax(customer_id, version) FROM {db}.journey_log "
        "WHERE kind = 'service' GROUP BY journey_id"
    ):
        if merged_into:
            snapshot.journey_aliases.append((str(journey_id), str(merged_into)))
        else:
            snapshot.journey_owners[str(journey_id)] = str(owner)
    snapshot.recent = [
        RecentRow(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), str(r[5]), str(r[6]), str(r[7]),
                  str(r[8]), str(r[9]), str(r[10]), str(r[11]))
        for r in warehouse.query(
            "SELECT event_id, fingerprint, ingested_ms, version, occurred_ms, channel, type, origin_customer_id, "
            f"origin_session_id, issue_ref, identity_key, journey_id FROM {db}.interaction_log "
            f"WHERE ingested_ms >= {int(since_ingested_ms)} OR issue_ref != '' ORDER BY ingested_ms, version")
    ]
    return snapshot


# ---- quoting ------------------------------------------------------------------------------------------
def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

"""ClickHouse adapter: connections (a server, or the embedded chdb), URLs and migrations.

The batch writer is sinks.writer, the reads the resolver is rebuilt from sinks.snapshot, and the error codes that
tell refused data from an unwell server sinks.errors. The interface all of it implements is sinks.warehouse.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import orjson

from sinks.cluster_ddl import check_cluster_name, cluster_statements
from sinks.read_only import (
    READONLY,
    TIMEOUT_EXCEEDED,
    QueryLimits,
    QueryTimeout,
    chdb_timed_out,
    explain_unsupported,
    run_bounded,
)
from sinks.snapshot import ClickHouseReads
from sinks.sql_guard import ReadOnlyViolation as ReadOnlyViolation  # the exception callers catch
from sinks.sql_guard import ReadStatement, check_read_only
from sinks.warehouse import Warehouse, WarehouseError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


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


# The DDL and queries name the database unquoted: a name that needs quoting would fail in every statement.
_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_url(url: str) -> WarehouseUrl:
    parsed = urlparse(url)
    if parsed.scheme == "chdb":
        database = parse_qs(parsed.query).get("database", ["cem"])[0]
        target = WarehouseUrl("chdb", path=unquote(parsed.netloc + parsed.path), database=database)
    elif parsed.scheme in ("clickhouse", "tcp"):
        target = WarehouseUrl(
            "clickhouse",
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 9000,
            user=unquote(parsed.username or "default"),
            password=unquote(parsed.password or ""),
            database=(parsed.path.lstrip("/") or "cem"),
        )
    else:
        raise WarehouseError(f"CEM_CLICKHOUSE_URL must start with clickhouse:// or chdb://, got {parsed.scheme!r}")
    if not _DATABASE_NAME.fullmatch(target.database):
        raise WarehouseError(f"CEM_CLICKHOUSE_URL names the database {target.database!r}: use letters, digits and "
                             "underscores, not starting with a digit")
    return target


def connect(url: str, read_only: bool = False, limits: QueryLimits | None = None, cluster: str = "") -> Warehouse:
    """A read-only connection guards every statement (sinks.sql_guard), runs it with readonly=1 and within
    `limits` (defaults: QueryLimits()). `cluster` (CEM_CLICKHOUSE_CLUSTER): DDL is rewritten for that cluster
    (sinks.cluster_ddl); reads need no cluster, they go through the Distributed tables as they are."""
    target = parse_url(url)
    if target.scheme == "chdb":
        if cluster:
            raise WarehouseError("CEM_CLICKHOUSE_CLUSTER needs a ClickHouse server (clickhouse://), not chdb")
        return ChdbWarehouse(target, read_only, limits)
    return ServerWarehouse(target, read_only, limits, cluster)


class ServerWarehouse(ClickHouseReads):
    """A ClickHouse server over the native protocol (clickhouse-driver), columnar inserts."""

    def __init__(self, target: WarehouseUrl, read_only: bool = False, limits: QueryLimits | None = None,
                 cluster: str = "") -> None:
        from sinks.native_connection import client_checking_by_poll

        self.database = target.database
        self.cluster = check_cluster_name(cluster) if cluster else ""
        self.read_only = read_only
        self.limits = limits or QueryLimits()
        # readonly goes last: once it is set, the server refuses to change any other setting.
        self._query_settings: dict[str, Any] = {**self.limits.engine_settings(), "readonly": 1} if read_only else {}
        self._client = client_checking_by_poll(
            host=target.host, port=target.port, user=target.user, password=target.password,
            connect_timeout=5, send_receive_timeout=max(60, self.limits.timeout_seconds + 30),
            # An insert into a Distributed table returns once its shard has the rows, not when they are queued:
            # the exactly-once bookkeeping reads back what an insert that returned wrote.
            settings={"insert_distributed_sync": 1} if self.cluster else None,
        )

    def command(self, sql: str) -> None:
        if self.read_only:
            self._bounded(check_read_only(sql))
            return
        if not self.cluster:
            self._client.execute(sql)
            return
        for statement in cluster_statements(sql, self.cluster):
            pending = without_existing_columns(self, statement)  # a column change that failed half way runs again
            if pending:
                self._client.execute(pending)

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


class ChdbWarehouse(ClickHouseReads):
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


def open_migrated(url: str, cluster: str = "") -> Warehouse:
    """A read-write connection with every migration applied: what the resolver service writes through."""
    warehouse = connect(url, cluster=cluster)
    try:
        migrate(warehouse)
    except BaseException:
        with contextlib.suppress(Exception):
            warehouse.close()
        raise
    return warehouse


# ---- migrations ---------------------------------------------------------------------------------------
# One migration run at a time in a process. The stages of a worker open their connections at once, and a run that
# read the list of applied migrations before another run applied more would apply an older one again after them:
# 0007 and 0008 both create the `interactions` view, so 0007 run last leaves it without 0008's columns for good.
_MIGRATING = threading.Lock()


def migrate(warehouse: Warehouse) -> list[str]:
    """Apply every migration not yet recorded in {db}.schema_migrations. Returns the names applied. Runs in one
    process are serialised; runs in several processes at once are not (`cem migrate` runs once before the workers:
    the README's commands, deploy/)."""
    with _MIGRATING:
        return _migrate(warehouse)


def _migrate(warehouse: Warehouse) -> list[str]:
    db = warehouse.database
    # Only when missing: on a cluster every DDL waits for every replica, and a worker must start while one is down.
    if not warehouse.query(f"SELECT count() FROM system.tables WHERE database = {sql_string(db)} "
                           "AND name = 'schema_migrations'")[0][0]:
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
            pending = without_existing_columns(warehouse, statement.format(db=db))
            if pending:
                warehouse.command(pending)
        warehouse.insert("schema_migrations", {"name": [path.stem], "applied_ms": [int(time.time() * 1000)]})
        applied.append(path.stem)
    return applied


def split_statements(script: str) -> list[str]:
    without_comments = "\n".join(line for line in script.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in without_comments.split(";") if s.strip()]


_ALTER_ADD = re.compile(r"ALTER TABLE ([\w{}]+)\.(\w+)\s+(ADD COLUMN .*)", re.S)
_ADD_CLAUSE = re.compile(r"ADD COLUMN (\w+)\s+(.*)", re.S)


def _add_clauses(clauses: str) -> list[tuple[str, str]]:
    """(column, type) of each `ADD COLUMN name type` of an ALTER, in order."""
    found = []
    for clause in re.split(r",\s*(?=ADD COLUMN )", clauses.strip()):
        match = _ADD_CLAUSE.match(clause.strip())
        if match:
            found.append((match.group(1), match.group(2).strip()))
    return found


def without_existing_columns(warehouse: Warehouse, statement: str) -> str | None:
    """`statement` without the ADD COLUMN clauses whose column exists (None when none is left): ClickHouse 18.16
    has no ADD COLUMN IF NOT EXISTS, and a migration that failed after its ALTER must be able to run again."""
    found = _ALTER_ADD.match(statement)
    if not found:
        return statement
    database, table = found.group(1), found.group(2)
    existing = {row[0] for row in warehouse.query(
        f"SELECT name FROM system.columns WHERE database = {sql_string(database)} AND table = {sql_string(table)}")}
    missing = [f"ADD COLUMN {name} {kind}" for name, kind in _add_clauses(found.group(3)) if name not in existing]
    return f"ALTER TABLE {database}.{table} " + ", ".join(missing) if missing else None


_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+) \((.*)\) ENGINE", re.S)


def migration_tables() -> dict[str, dict[str, str]]:
    """The tables the migrations create: table -> column -> its type (with any DEFAULT)."""
    tables: dict[str, dict[str, str]] = {}
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        for statement in split_statements(path.read_text()):
            found = _CREATE_TABLE.match(statement)
            if found:
                lines = [line.strip().rstrip(",") for line in found.group(2).splitlines() if line.strip()]
                tables[found.group(1)] = dict(line.split(None, 1) for line in lines)
            added = _ALTER_ADD.match(statement)
            if added:
                tables[added.group(2)].update(_add_clauses(added.group(3)))
    return tables


# ---- quoting ------------------------------------------------------------------------------------------
def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

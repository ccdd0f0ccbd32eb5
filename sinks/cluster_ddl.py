"""Cluster mode (CEM_CLICKHOUSE_CLUSTER): the single-server DDL of the migrations, rewritten for a cluster.

Every `CREATE TABLE ... ENGINE = <X>MergeTree(...)` becomes two tables, both created `ON CLUSTER`:
- `<name>_local`, `Replicated<X>MergeTree('/clickhouse/tables/{shard}/<db>/<name>_local', '{replica}', ...)`:
  the data, replicated through ZooKeeper ({shard} and {replica} are each server's macros);
- `<name>`, `Distributed(<cluster>, <db>, <name>_local)` with the same columns: what the worker inserts into
  and what the views read, so the views and every query keep today's table names.
The Distributed tables have no sharding key on purpose: ClickHouse refuses to insert into one with several
shards, and a batch split across shards would not be all-or-none (docs/deploy.md, "Cluster mode").

Views, `DROP TABLE` and `CREATE DATABASE` get `ON CLUSTER`; mutations (`ALTER ... UPDATE/DELETE`) go to the
replicated local tables `ON CLUSTER`; other `ALTER`s change the replicated table (without `ON CLUSTER`: ZooKeeper
replicates it) and create the Distributed table again; `INSERT` and `SELECT` pass unchanged
(they go through the Distributed tables). Any other DDL is refused rather than left unreplicated.
"""

from __future__ import annotations

import re

LOCAL_SUFFIX = "_local"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_CLUSTER_NAME = re.compile(rf"^{_NAME}$")

_CREATE_DATABASE = re.compile(rf"^CREATE\s+DATABASE\s+(IF\s+NOT\s+EXISTS\s+)?({_NAME})\s*$", re.I)
_CREATE_TABLE = re.compile(
    rf"^CREATE\s+TABLE\s+(?P<if>IF\s+NOT\s+EXISTS\s+)?(?P<db>{_NAME})\.(?P<name>{_NAME})\s*"
    rf"(?P<columns>\(.*\))\s*ENGINE\s*=\s*(?P<kind>{_NAME})(?P<tail>.*)$",
    re.I | re.S,
)
_CREATE_VIEW = re.compile(
    rf"^(?P<head>CREATE\s+(?:MATERIALIZED\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?{_NAME}\.{_NAME})(?P<rest>\s.*)$",
    re.I | re.S,
)
_DROP_TABLE = re.compile(rf"^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<db>{_NAME})\.(?P<name>{_NAME})\s*$", re.I)
_ALTER = re.compile(rf"^ALTER\s+TABLE\s+(?P<db>{_NAME})\.(?P<name>{_NAME})\s+(?P<rest>.*)$", re.I | re.S)
_MUTATION = re.compile(r"^(UPDATE|DELETE)\b", re.I)
_PASS_THROUGH = re.compile(r"^(INSERT|SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS)\b", re.I)


class ClusterDdlError(ValueError):
    """A statement cluster mode cannot rewrite: it would create or change something on one server only."""


def check_cluster_name(cluster: str) -> str:
    if not _CLUSTER_NAME.match(cluster):
        raise ClusterDdlError(f"CEM_CLICKHOUSE_CLUSTER must be a plain identifier, got {cluster!r}")
    return cluster


def cluster_statements(sql: str, cluster: str) -> list[str]:
    """The statements that do on every server of `cluster` what `sql` does on a single server."""
    check_cluster_name(cluster)
    statement = sql.strip().rstrip(";").strip()
    on = f"ON CLUSTER {cluster}"
    if found := _CREATE_DATABASE.match(statement):
        return [f"{statement} {on}"]
    if found := _CREATE_TABLE.match(statement):
        return _replicated_table(found, cluster)
    if found := _CREATE_VIEW.match(statement):
        return [f"{found['head']} {on}{found['rest']}"]
    if found := _DROP_TABLE.match(statement):
        # The name may be a view (nothing local) or a table (its replicated data too): IF EXISTS covers both.
        db, name = found["db"], found["name"]
        return [f"DROP TABLE IF EXISTS {db}.{name} {on}", f"DROP TABLE IF EXISTS {db}.{name}{LOCAL_SUFFIX} {on}"]
    if found := _ALTER.match(statement):
        db, name, rest = found["db"], found["name"], found["rest"]
        if _MUTATION.match(rest):
            # rows live in the local tables; ZooKeeper hands the mutation to every replica
            return [f"ALTER TABLE {db}.{name}{LOCAL_SUFFIX} {on} {rest}"]
        # A column change of a replicated table is replicated through ZooKeeper: sent ON CLUSTER too, the second
        # replica would find the column there already and fail. ClickHouse 18.16 refuses an ALTER ON CLUSTER of a
        # table that is not replicated on a replicated shard, so each server's Distributed table (it holds no
        # rows: inserts are synchronous) is created again with the local table's new columns.
        local = f"{db}.{name}{LOCAL_SUFFIX}"
        return [f"ALTER TABLE {local} {rest}", f"DROP TABLE IF EXISTS {db}.{name} {on}",
                f"CREATE TABLE {db}.{name} {on} AS {local} ENGINE = Distributed({cluster}, {db}, {name}{LOCAL_SUFFIX})"]
    if _PASS_THROUGH.match(statement):
        return [statement]
    raise ClusterDdlError(f"cluster mode cannot rewrite this statement: {statement[:80]!r}")


def _replicated_table(found: re.Match[str], cluster: str) -> list[str]:
    db, name, columns, kind = found["db"], found["name"], found["columns"], found["kind"]
    if_not_exists = "IF NOT EXISTS " if found["if"] else ""
    local = f"{name}{LOCAL_SUFFIX}"
    on = f"ON CLUSTER {cluster}"
    if not kind.lower().endswith("mergetree") or kind.lower().startswith("replicated"):
        # Not a MergeTree (Log, Memory, ...): nothing to replicate, but every server gets it.
        return [f"CREATE TABLE {if_not_exists}{db}.{name} {on} {columns} ENGINE = {kind}{found['tail']}"]
    engine_args, rest = _engine_arguments(found["tail"])
    args = [f"'/clickhouse/tables/{{shard}}/{db}/{local}'", "'{replica}'"]
    if engine_args:
        args.append(engine_args)
    return [
        f"CREATE TABLE {if_not_exists}{db}.{local} {on} {columns} "
        f"ENGINE = Replicated{kind}({', '.join(args)}){rest}",
        f"CREATE TABLE {if_not_exists}{db}.{name} {on} {columns} ENGINE = Distributed({cluster}, {db}, {local})",
    ]


def _engine_arguments(tail: str) -> tuple[str, str]:
    """`(version) ORDER BY id` -> ("version", " ORDER BY id"); parentheses inside the arguments may nest."""
    stripped = tail.lstrip()
    if not stripped.startswith("("):
        return "", tail
    depth = 0
    for index, char in enumerate(stripped):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return stripped[1:index].strip(), stripped[index + 1:]
    raise ClusterDdlError(f"unbalanced engine arguments: {tail[:80]!r}")

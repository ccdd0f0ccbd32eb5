"""Cluster mode's DDL rewrite (sinks.cluster_ddl): every migration statement, and the statement shapes a future
migration may use. The real cluster runs it in tests/faults/test_clickhouse_cluster.py."""

from __future__ import annotations

import re

import pytest

from cem.settings import Settings
from sinks.clickhouse import MIGRATIONS_DIR, migration_tables, split_statements
from sinks.cluster_ddl import ClusterDdlError, cluster_statements

CLUSTER = "cem_cluster"


def migration_statements(db: str = "cem") -> list[str]:
    return [statement.format(db=db) for path in sorted(MIGRATIONS_DIR.glob("*.sql"))
            for statement in split_statements(path.read_text())]


def test_every_migration_statement_is_rewritten_and_runs_on_the_whole_cluster() -> None:
    for statement in migration_statements():
        for rewritten in cluster_statements(statement, CLUSTER):
            replicated_column_change = re.match(r"ALTER TABLE \S+_local (ADD|DROP|MODIFY) ", rewritten)
            if not rewritten.startswith("INSERT") and not replicated_column_change:
                assert f" ON CLUSTER {CLUSTER}" in rewritten, rewritten


def test_no_table_of_the_migrations_stays_unreplicated() -> None:
    engines = [re.search(r"ENGINE = (\w+)", rewritten).group(1)  # type: ignore[union-attr]
               for statement in migration_statements()
               for rewritten in cluster_statements(statement, CLUSTER) if " ENGINE = " in rewritten]
    assert engines, "the migrations create tables"
    assert {engine for engine in engines if "MergeTree" in engine and not engine.startswith("Replicated")} == set()


def test_each_table_becomes_a_replicated_local_table_and_a_distributed_table_of_its_name() -> None:
    tables = migration_tables()
    created: dict[str, str] = {}
    for statement in migration_statements("analytics"):
        for rewritten in cluster_statements(statement, CLUSTER):
            found = re.match(r"CREATE TABLE IF NOT EXISTS analytics\.(\w+) ON CLUSTER \w+ \(.*\) ENGINE = (\w+)",
                             rewritten, re.S)
            if found:
                created[found.group(1)] = found.group(2)
    for table in tables:
        assert created[table] == "Distributed"
        assert created[f"{table}_local"].startswith("Replicated")


def test_the_local_and_distributed_tables_have_the_columns_of_the_original() -> None:
    statement = next(s for s in migration_statements() if "cem.identity_sets (" in s)
    columns = statement[statement.index("("):statement.rindex(") ENGINE") + 1]
    local, distributed = cluster_statements(statement, CLUSTER)
    assert columns in local and columns in distributed


@pytest.mark.parametrize(("engine", "replicated"), [
    ("ReplacingMergeTree(version) ORDER BY id",
     "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db1/t_local', '{replica}', version) ORDER BY id"),
    ("MergeTree() PARTITION BY toYYYYMM(at) ORDER BY (a, at)",
     "ReplicatedMergeTree('/clickhouse/tables/{shard}/db1/t_local', '{replica}') PARTITION BY toYYYYMM(at) "
     "ORDER BY (a, at)"),
    ("MergeTree ORDER BY id",
     "ReplicatedMergeTree('/clickhouse/tables/{shard}/db1/t_local', '{replica}') ORDER BY id"),
    ("SummingMergeTree((events, total)) ORDER BY hour",
     "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/db1/t_local', '{replica}', (events, total)) "
     "ORDER BY hour"),
    ("MergeTree(day, (a, day), 8192)",
     "ReplicatedMergeTree('/clickhouse/tables/{shard}/db1/t_local', '{replica}', day, (a, day), 8192)"),
    ("CollapsingMergeTree(sign) ORDER BY id SETTINGS index_granularity = 1024",
     "ReplicatedCollapsingMergeTree('/clickhouse/tables/{shard}/db1/t_local', '{replica}', sign) ORDER BY id "
     "SETTINGS index_granularity = 1024"),
])
def test_engine_arguments_follow_the_zookeeper_path_and_the_replica(engine: str, replicated: str) -> None:
    local, distributed = cluster_statements(
        f"CREATE TABLE IF NOT EXISTS db1.t (\n    id String,\n    at DateTime\n) ENGINE = {engine}", "c1")
    assert local.endswith(f"ENGINE = {replicated}")
    assert local.startswith("CREATE TABLE IF NOT EXISTS db1.t_local ON CLUSTER c1 (")
    assert distributed.startswith("CREATE TABLE IF NOT EXISTS db1.t ON CLUSTER c1 (")
    assert distributed.endswith("ENGINE = Distributed(c1, db1, t_local)")


def test_a_table_without_if_not_exists_and_in_lower_case_is_rewritten_too() -> None:
    local, distributed = cluster_statements("create table db1.t (id String) engine = ReplacingMergeTree(v) "
                                            "order by id;", "c1")
    assert local.startswith("CREATE TABLE db1.t_local ON CLUSTER c1 (id String)")
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db1/t_local', '{replica}', v)" in local
    assert distributed == "CREATE TABLE db1.t ON CLUSTER c1 (id String) ENGINE = Distributed(c1, db1, t_local)"


def test_a_table_of_another_engine_is_created_on_every_server_unchanged() -> None:
    assert cluster_statements("CREATE TABLE IF NOT EXISTS db1.t (id String) ENGINE = Log", "c1") == [
        "CREATE TABLE IF NOT EXISTS db1.t ON CLUSTER c1 (id String) ENGINE = Log"]


@pytest.mark.parametrize("head", ["CREATE VIEW IF NOT EXISTS db1.v", "CREATE VIEW db1.v",
                                  "CREATE MATERIALIZED VIEW IF NOT EXISTS db1.v"])
def test_views_get_on_cluster_after_their_name(head: str) -> None:
    rest = " TO db1.target AS\nSELECT a FROM db1.t" if "MATERIALIZED" in head else " AS\nSELECT a FROM db1.t"
    assert cluster_statements(head + rest, "c1") == [f"{head} ON CLUSTER c1{rest}"]


@pytest.mark.parametrize("statement", ["DROP TABLE IF EXISTS db1.x", "DROP TABLE db1.x"])
def test_a_drop_takes_the_name_and_its_local_table_if_any(statement: str) -> None:
    assert cluster_statements(statement, "c1") == ["DROP TABLE IF EXISTS db1.x ON CLUSTER c1",
                                                   "DROP TABLE IF EXISTS db1.x_local ON CLUSTER c1"]


@pytest.mark.parametrize("mutation", ["UPDATE text = '' WHERE event_id IN ('a')", "DELETE WHERE customer_id = 'c'",
                                      "delete where 1"])
def test_mutations_go_to_the_replicated_local_table_only(mutation: str) -> None:
    assert cluster_statements(f"ALTER TABLE db1.interaction_log {mutation}", "c1") == [
        f"ALTER TABLE db1.interaction_log_local ON CLUSTER c1 {mutation}"]


def test_a_schema_alter_changes_the_local_table_then_the_distributed_one() -> None:
    """The replicated table's change is replicated by ZooKeeper (ON CLUSTER too, the second replica would find the
    column there already); each server's Distributed table is created again from it (18.16 refuses an ALTER ON
    CLUSTER of a table that is not replicated on a replicated shard)."""
    assert cluster_statements("ALTER TABLE db1.t ADD COLUMN note String DEFAULT ''", "c1") == [
        "ALTER TABLE db1.t_local ADD COLUMN note String DEFAULT ''",
        "DROP TABLE IF EXISTS db1.t ON CLUSTER c1",
        "CREATE TABLE db1.t ON CLUSTER c1 AS db1.t_local ENGINE = Distributed(c1, db1, t_local)"]


@pytest.mark.parametrize("statement", [
    "INSERT INTO db1.t (a) SELECT a FROM db1.u", "SELECT count() FROM db1.t", "insert into db1.t values"])
def test_inserts_and_selects_pass_unchanged_through_the_distributed_tables(statement: str) -> None:
    assert cluster_statements(statement, "c1") == [statement]


def test_the_erasure_mutations_all_go_to_local_tables() -> None:
    from sinks.erasure import erasure_statements

    statements = erasure_statements("cem", ["c1"], ["e1"], ["e1"], ["e2"])
    for statement in statements:
        [rewritten] = cluster_statements(statement, CLUSTER)
        assert re.match(r"ALTER TABLE cem\.\w+_local ON CLUSTER cem_cluster (UPDATE|DELETE) ", rewritten)


@pytest.mark.parametrize("statement", ["RENAME TABLE db1.a TO db1.b", "TRUNCATE TABLE db1.a", "OPTIMIZE TABLE db1.a",
                                       "CREATE TABLE db1.a AS db1.b", "ATTACH TABLE db1.a"])
def test_ddl_it_cannot_rewrite_is_refused_rather_than_run_on_one_server(statement: str) -> None:
    with pytest.raises(ClusterDdlError):
        cluster_statements(statement, "c1")


@pytest.mark.parametrize("name", ["", "a-b", "c1; DROP", "1abc", "x y"])
def test_a_cluster_name_that_is_not_an_identifier_is_refused(name: str) -> None:
    with pytest.raises(ClusterDdlError):
        cluster_statements("SELECT 1", name)


def test_the_setting_is_read_from_the_environment_and_empty_by_default() -> None:
    assert Settings().clickhouse_cluster == ""
    assert Settings.from_env({"CEM_CLICKHOUSE_CLUSTER": "cem_cluster"}).clickhouse_cluster == "cem_cluster"


class RecordingWarehouse:
    """Just what `migrate` calls, recorded; `migrated`: whether schema_migrations exists, every migration in it."""

    database = "cem"

    def __init__(self, migrated: bool) -> None:
        self.migrated = migrated
        self.commands: list[str] = []
        self.inserted: list[str] = []

    def command(self, sql: str) -> None:
        self.commands.append(sql)

    def query(self, sql: str) -> list[tuple[object, ...]]:
        if "system.tables" in sql:
            return [(int(self.migrated),)]
        return [(path.stem,) for path in MIGRATIONS_DIR.glob("*.sql")] if self.migrated else []

    def insert(self, table: str, columns: dict[str, list[object]]) -> None:
        self.inserted.append(table)


def test_a_current_schema_runs_no_ddl_so_a_worker_starts_while_a_replica_is_down() -> None:
    from sinks.clickhouse import migrate

    warehouse = RecordingWarehouse(migrated=True)
    assert migrate(warehouse) == []  # type: ignore[arg-type]
    assert warehouse.commands == [] and warehouse.inserted == []


def test_a_new_database_gets_the_database_and_the_migrations_table_first() -> None:
    from sinks.clickhouse import migrate

    warehouse = RecordingWarehouse(migrated=False)
    applied = migrate(warehouse)  # type: ignore[arg-type]
    assert applied == sorted(path.stem for path in MIGRATIONS_DIR.glob("*.sql"))
    assert warehouse.commands[0] == "CREATE DATABASE IF NOT EXISTS cem"
    assert warehouse.commands[1].startswith("CREATE TABLE IF NOT EXISTS cem.schema_migrations")
    assert warehouse.inserted == ["schema_migrations"] * len(applied)

"""cem.settings.Settings (env parsing, round trip) and the pure parts of sinks.clickhouse: URL parsing and
redaction, the read-only guard, statement splitting. The columnar rows of a batch: tests/unit/test_writer.py."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cem.settings import Settings
from sinks import clickhouse
from sinks.clickhouse import (
    MIGRATIONS_DIR,
    ReadOnlyViolation,
    WarehouseUrl,
    parse_url,
    split_statements,
)
from sinks.sql_guard import check_read_only
from sinks.warehouse import WarehouseError

# ---- Settings ---------------------------------------------------------------------------------------------


def test_from_env_parses_types() -> None:
    env = {
        "CEM_WEB_PORT": "7000",
        "CEM_DEDUP_WINDOW_DAYS": "1.5",
        "CEM_SESSION_GAP_MINUTES": "45",
        "CEM_KAFKA_BOOTSTRAP": "kafka-1:9092,kafka-2:9092",
        "CEM_MAX_RECORD_BYTES": " 2048 ",
        "CEM_PHONE_DEFAULT_REGION": "GB",
        "OTHER_VAR": "ignored",
        "CEM_NOT_A_SETTING": "ignored",
    }
    settings = Settings.from_env(env)
    assert settings.web_port == 7000 and type(settings.web_port) is int
    assert settings.dedup_window_days == 1.5
    assert settings.session_gap_minutes == 45.0 and type(settings.session_gap_minutes) is float
    assert settings.kafka_bootstrap == "kafka-1:9092,kafka-2:9092"
    assert settings.max_record_bytes == 2048
    assert settings.phone_default_region == "GB"
    assert settings.app_id == Settings().app_id  # untouched defaults


def test_from_env_empty_is_defaults_and_overrides_win() -> None:
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"CEM_WEB_PORT": "7000"}, web_port=7100).web_port == 7100


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEM_WEB_PORT", "7001")
    monkeypatch.setenv("CEM_LOG_LEVEL", "DEBUG")
    settings = Settings.from_env()
    assert (settings.web_port, settings.log_level) == (7001, "DEBUG")


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        ("CEM_WEB_PORT", "80a", "int"),
        ("CEM_WEB_PORT", "", "int"),
        ("CEM_TOPIC_PARTITIONS", "4.0", "int"),
        ("CEM_MAX_RECORD_BYTES", "1MB", "int"),
        ("CEM_DEDUP_WINDOW_DAYS", "seven", "float"),
    ],
)
def test_from_env_rejects_bad_numbers_with_a_clear_message(key: str, value: str, kind: str) -> None:
    with pytest.raises(ValueError) as info:
        Settings.from_env({key: value})
    assert str(info.value) == f"{key}={value!r} is not a valid {kind}"


def test_as_env_round_trip() -> None:
    custom = Settings(web_port=1234, session_gap_minutes=12.5, dedup_window_days=0.25, log_level="INFO",
                      clickhouse_url="clickhouse://u:p@h:9000/db", kafka_sasl_password="pw", max_identifiers=7)
    env = custom.as_env()
    assert all(k.startswith("CEM_") and isinstance(v, str) for k, v in env.items())
    assert len(env) == len(dataclasses.fields(Settings))
    assert env["CEM_WEB_PORT"] == "1234"
    assert Settings.from_env(env) == custom
    assert Settings.from_env(Settings().as_env()) == Settings()


def test_settings_are_frozen_and_hide_the_kafka_password() -> None:
    settings = Settings(kafka_sasl_password="hunter2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.web_port = 1  # type: ignore[misc]
    assert "hunter2" not in repr(settings)


def test_settings_repr_hides_the_clickhouse_password() -> None:
    assert "s3cret" not in repr(Settings(clickhouse_url="clickhouse://cem:s3cret@db:9000/cem"))


# ---- URLs ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("clickhouse://alice:s%40cret@db.example.com:9440/analytics",
         WarehouseUrl("clickhouse", "db.example.com", 9440, "alice", "s@cret", "analytics")),
        ("clickhouse://localhost", WarehouseUrl("clickhouse", "localhost", 9000, "default", "", "cem")),
        ("clickhouse://bob@10.0.0.5/", WarehouseUrl("clickhouse", "10.0.0.5", 9000, "bob", "", "cem")),
        ("tcp://u:p@h:1/d", WarehouseUrl("clickhouse", "h", 1, "u", "p", "d")),
        ("chdb:///var/lib/cem?database=x", WarehouseUrl("chdb", path="/var/lib/cem", database="x")),
        ("chdb://.cem/warehouse", WarehouseUrl("chdb", path=".cem/warehouse", database="cem")),
    ],
)
def test_parse_url(url: str, expected: WarehouseUrl) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["http://h:8123", "postgres://u:topsecret@h/db", "/just/a/path", ""])
def test_parse_url_rejects_other_schemes(url: str) -> None:
    with pytest.raises(WarehouseError) as info:
        parse_url(url)
    assert "topsecret" not in str(info.value)
    assert "clickhouse://" in str(info.value)


@pytest.mark.parametrize("url", ["clickhouse://h:9000/takeover-split4", "clickhouse://h/1db", "chdb:///d?database=a.b",
                                 "clickhouse://h/x%20y"])
def test_parse_url_refuses_a_database_name_the_statements_cannot_carry(url: str) -> None:
    with pytest.raises(WarehouseError, match="letters, digits and underscores"):
        parse_url(url)


def test_warehouse_url_never_prints_the_password() -> None:
    target = parse_url("clickhouse://alice:Pa55word@db:9440/analytics")
    assert target.password == "Pa55word"
    for text in (repr(target), str(target), f"{target}", repr([target]), target.redacted()):
        assert "Pa55word" not in text
    assert repr(target) == "WarehouseUrl(clickhouse://alice:***@db:9440/analytics)"
    assert repr(parse_url("chdb:///data?database=x")) == "WarehouseUrl(chdb:///data?database=x)"


# ---- read-only guard ---------------------------------------------------------------------------------
ALLOWED = [
    "SELECT 1",
    "  select * from cem.interactions",
    "\n\tSELECT 1",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "SHOW TABLES FROM cem",
    "DESCRIBE TABLE cem.journeys",
    "DESC cem.journeys",
    "EXISTS TABLE cem.journeys",
    "EXPLAIN SELECT 1",
    "(SELECT 1) UNION ALL (SELECT 2)",
    "( ( SELECT 1 ) )",
]
REFUSED = [
    "INSERT INTO cem.t VALUES (1)",
    "insert into cem.t select 1",
    "DROP TABLE cem.t",
    "ALTER TABLE cem.t DELETE WHERE 1",
    "CREATE TABLE cem.x (a UInt8) ENGINE = Memory",
    "TRUNCATE TABLE cem.t",
    "SYSTEM STOP MERGES",
    "OPTIMIZE TABLE cem.t FINAL",
    "RENAME TABLE cem.a TO cem.b",
    "KILL QUERY WHERE 1",
    "SET readonly = 0",
    "GRANT ALL ON *.* TO default",
    "DETACH TABLE cem.t",
    "selected",
    "select_all()",
    "",
    "-- a comment first\nDROP TABLE cem.t",
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_guard_allows_reads(sql: str) -> None:
    assert check_read_only(sql).sql == sql.strip()


@pytest.mark.parametrize("sql", REFUSED)
def test_guard_refuses_everything_else(sql: str) -> None:
    with pytest.raises(ReadOnlyViolation):
        check_read_only(sql)
    writer = _chdb(read_only=False)
    writer.command(sql)  # a read-write connection does not check
    assert writer._session.sent == [sql]


@pytest.mark.parametrize(
    "sql",
    ["SELECT 1; DROP TABLE cem.interaction_log", "SELECT 1;\nINSERT INTO cem.t VALUES (1)",
     "WITH 1 AS x SELECT x; TRUNCATE TABLE cem.customer_log"],
)
def test_guard_refuses_a_write_after_a_read(sql: str) -> None:
    with pytest.raises(ReadOnlyViolation):
        check_read_only(sql)


class _FakeResult:
    def bytes(self) -> bytes:
        return b""


class _FakeSession:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def query(self, sql: str, fmt: str = "CSV") -> _FakeResult:
        self.sent.append(sql)
        return _FakeResult()


def _chdb(read_only: bool) -> Any:
    """A ChdbWarehouse around a fake session: what SQL would reach the engine (no chdb involved)."""
    warehouse = clickhouse.ChdbWarehouse.__new__(clickhouse.ChdbWarehouse)
    warehouse.database = "cem"
    warehouse.read_only = read_only
    warehouse.limits = clickhouse.QueryLimits()
    warehouse._session = _FakeSession()
    return warehouse


def test_read_only_chdb_guard_sends_only_reads() -> None:
    # (The engine-side readonly=1 of a real session is exercised in tests/integration/test_demo_smoke.py.)
    warehouse = _chdb(read_only=True)
    assert warehouse.query("SELECT 1;  ") == []
    assert warehouse._session.sent == ["SELECT 1"]
    with pytest.raises(ReadOnlyViolation):
        warehouse.command("DROP TABLE cem.t")
    with pytest.raises(ReadOnlyViolation):
        warehouse.query("INSERT INTO cem.t VALUES (1)")
    assert len(warehouse._session.sent) == 1
    writer = _chdb(read_only=False)
    writer.query("SELECT 1")
    assert writer._session.sent == ["SELECT 1"]


@pytest.mark.parametrize("sql", [
    "SELECT 1; DROP TABLE cem.t; SELECT name FROM system.settings",
    "SELECT 1;\nDROP TABLE cem.t",
    "DROP TABLE cem.t; SELECT 1",
    "SELECT 1 /* ; */ ; TRUNCATE TABLE cem.t",
])
def test_read_only_chdb_never_sends_a_write(sql: str) -> None:
    warehouse = _chdb(read_only=True)
    with pytest.raises(ReadOnlyViolation):
        warehouse.query(sql)
    assert warehouse._session.sent == []  # refused before anything reached the engine


# ---- migrations ------------------------------------------------------------------------------------------
def test_split_statements() -> None:
    script = "-- header\nCREATE TABLE a (x UInt8);\n\n  -- note\nCREATE VIEW b AS\nSELECT 1;\n;\n"
    assert split_statements(script) == ["CREATE TABLE a (x UInt8)", "CREATE VIEW b AS\nSELECT 1"]
    assert split_statements("") == []
    assert split_statements("-- only a comment\n") == []


def test_migrations_split_into_formattable_statements() -> None:
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        statements = split_statements(path.read_text())
        assert statements, path
        for statement in statements:
            assert "{db}" in statement
            statement.format(db="cem")  # no stray braces

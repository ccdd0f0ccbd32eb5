"""The read-only statement guard (sinks.sql_guard): every bypass of the table in sql_guard_cases is refused
before it reaches an engine, every read in it passes, and what is sent is the statement that was checked."""

from __future__ import annotations

import re

import pytest

from sinks.clickhouse import ReadOnlyViolation as WarehouseReadOnlyViolation
from sinks.sql_guard import ReadOnlyViolation, check_read_only
from tests.unit.sql_guard_cases import ALLOWED, REFUSED

OUT = "/tmp/cem-guard-never-written.csv"
DB = "cem"


def fill(template: str) -> str:
    return template.format(out=OUT, db=DB)


@pytest.mark.parametrize("template", REFUSED)
def test_refused(template: str) -> None:
    with pytest.raises(ReadOnlyViolation) as refused:
        check_read_only(fill(template))
    assert str(refused.value).startswith("this connection is read-only: ")


@pytest.mark.parametrize(("template", "_on_server"), ALLOWED)
def test_allowed(template: str, _on_server: bool) -> None:
    statement = check_read_only(fill(template))
    outside_strings = re.sub(r"'(?:[^'\\]|\\.|'')*'", "''", statement.sql)  # ';' in a literal is data
    assert statement.sql.strip() and ";" not in outside_strings


def test_callers_keep_catching_the_warehouse_exception() -> None:
    assert WarehouseReadOnlyViolation is ReadOnlyViolation


@pytest.mark.parametrize(("sql", "sent"), [
    ("-- a leading comment\nSELECT 1", "SELECT 1"),
    ("SELECT 1 ;  -- bye", "SELECT 1"),
    ("SELECT 1;", "SELECT 1"),
    ("SELECT /* a */ x /* b */ FROM t -- c", "SELECT x FROM t"),
    ("SELECT x.1, t.a, count(), f(1)(x), a::UInt8 FROM t", "SELECT x.1, t.a, count(), f(1)(x), a::UInt8 FROM t"),
    ("SELECT 'a\\'b', 'c''d', `e``f`, \"g\\\"h\", $$i$$ FROM t",
     "SELECT 'a\\'b', 'c''d', `e``f`, \"g\\\"h\", $$i$$ FROM t"),
    ("SELECT ';', '--', '/*' AS x", "SELECT ';', '--', '/*' AS x"),
    ("SELECT 1 /* nested /* comment */ still */ + 2", "SELECT 1 + 2"),
    ("SHOW TABLES -- x\nFROM cem", "SHOW TABLES FROM cem"),
    ("EXPLAIN /* why */ SELECT 1", "EXPLAIN SELECT 1"),
    ("SELECT\n  a\nFROM t", "SELECT a FROM t"),
])
def test_sent_sql_is_the_checked_tokens_without_comments(sql: str, sent: str) -> None:
    assert check_read_only(sql).sql == sent


@pytest.mark.parametrize(("sql", "kind"), [
    ("SELECT 1", "select"), ("WITH 1 AS x SELECT x", "select"), ("(SELECT 1)", "select"),
    ("SHOW TABLES", "show"), ("DESCRIBE t", "describe"), ("desc t", "describe"), ("EXISTS t", "exists"),
    ("EXPLAIN SELECT 1", "explain"), ("explain ast select 1", "explain"),
])
def test_kind(sql: str, kind: str) -> None:
    assert check_read_only(sql).kind == kind


@pytest.mark.parametrize(("sql", "reason"), [
    ("SELECT 1 INTO/**/OUTFILE 'x'", "INTO OUTFILE"),
    ("SELECT * FROM file('x')", "file()"),
    ("SELECT * FROM t, tomorrow('x')", "table function tomorrow()"),
    ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
    ("SELECT 1 FORMAT CSV", "--format"),
    ("SELECT 1; SELECT 2", "one statement"),
    ("DROP TABLE t", "only SELECT"),
    ("SELECT 'x", "cannot read"),
    ("SELECT a FROM t LIMIT 2 BY a LIMIT 10", "cannot parse"),
    ("SELECT * FROM ｆｉｌｅ('x')", "non-ASCII"),
])
def test_refusals_say_why(sql: str, reason: str) -> None:
    with pytest.raises(ReadOnlyViolation, match=None) as refused:
        check_read_only(sql)
    assert reason in str(refused.value)

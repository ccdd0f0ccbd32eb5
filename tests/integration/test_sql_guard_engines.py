"""The read-only guard and limits in front of both real engines: the embedded chdb (its own client, so INTO
OUTFILE would write a file) and the ClickHouse 18.16 server, through its read-write and its read-only user.

- every bypass of tests/unit/sql_guard_cases.py is refused and writes no file; every read in it passes;
- a query running past CEM_SQL_TIMEOUT_SECONDS fails with a timeout, and leaves nothing running on the server,
  also when the client is killed mid-query;
- a result past CEM_SQL_MAX_RESULT_ROWS is cut, with a note;
- random splices of quotes, escapes, comment markers and odd spaces around INTO OUTFILE never get a file
  written by chdb when the guard lets them through;
- `cem identity explain` works for identifiers holding `;`, `url(`, quotes and comment markers.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cem.cli import main
from devtools.harness import wait_until
from sinks.clickhouse import QueryLimits, QueryTimeout, ReadOnlyViolation, connect, migrate
from sinks.sql_guard import check_read_only
from tests.unit.sql_guard_cases import ALLOWED, REFUSED

pytestmark = pytest.mark.integration
IDENTIFIERS = ["a;b@x.com", "url(x)@x.com", "o'brien@x.com", "x--y@x.com", "a/*b@x.com", "c\\d@x.com"]


@dataclass
class Engine:
    name: str
    url: str  # the read-only connections' URL
    database: str
    server: bool


def with_database(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + f"/{database}"


def prepare(url: str) -> None:
    """Migrated tables, a table `target` holding 7, and one customer per identifier of IDENTIFIERS."""
    admin = connect(url)
    migrate(admin)
    admin.command(f"CREATE TABLE IF NOT EXISTS {admin.database}.target (x UInt8) ENGINE = MergeTree ORDER BY x")
    admin.insert("target", {"x": [7]})
    count = len(IDENTIFIERS)
    admin.insert("identity_links", {
        "id_type": ["email"] * count, "value": IDENTIFIERS, "customer_id": [f"c-{i}" for i in range(count)],
        "event_id": [f"e-{i}" for i in range(count)], "occurred_ms": [1_700_000_000_000] * count,
        "rule": ["seed"] * count, "version": [1] * count})
    admin.close()


@pytest.fixture(scope="module")
def engines(clickhouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Engine]]:
    database = f"guard_{uuid.uuid4().hex[:6]}"
    chdb_url = f"chdb://{tmp_path_factory.mktemp('guard-chdb')}/warehouse?database={database}"
    server_url = with_database(clickhouse.url, database)
    for url in (chdb_url, server_url):
        prepare(url)
    yield [Engine("chdb", chdb_url, database, server=False),
           Engine("server-default", server_url, database, server=True),
           Engine("server-readonly", with_database(clickhouse.readonly_url, database), database, server=True)]


def test_every_bypass_is_refused_and_writes_nothing(engines: list[Engine], tmp_path: Path) -> None:
    for engine in engines:
        warehouse = connect(engine.url, read_only=True)
        outfiles = []
        for i, template in enumerate(REFUSED):
            outfile = tmp_path / f"{engine.name}-{i}.csv"
            outfiles.append(outfile)
            with pytest.raises(ReadOnlyViolation):
                warehouse.query(template.format(out=outfile, db=engine.database))
        assert warehouse.query(f"SELECT sum(x), count() FROM {engine.database}.target") == [(7, 1)]
        warehouse.close()
        assert not [path for path in outfiles if path.exists()]
    admin = connect(engines[0].url)  # every write was refused: the table is untouched, no table was added
    assert admin.query(f"SELECT sum(x), count() FROM {engines[0].database}.target") == [(7, 1)]
    assert "other" not in {row[0] for row in admin.query(f"SHOW TABLES FROM {engines[0].database}")}
    admin.close()


def test_every_read_passes(engines: list[Engine], tmp_path: Path) -> None:
    for engine in engines:
        warehouse = connect(engine.url, read_only=True)
        for template, on_server in ALLOWED:
            sql = template.format(out=tmp_path / "never.csv", db=engine.database)
            if on_server or not engine.server:
                names, _rows = warehouse.query_with_columns(sql)
                assert names, (engine.name, sql)
            else:  # 18.16 refuses table functions in readonly mode and has no EXPLAIN: the engine says so
                with pytest.raises(Exception) as failed:
                    warehouse.query(sql)
                assert not isinstance(failed.value, ReadOnlyViolation), (engine.name, sql)
        warehouse.close()
        assert not (tmp_path / "never.csv").exists()


def test_a_long_query_is_stopped_by_the_timeout(engines: list[Engine], clickhouse) -> None:
    for engine in engines:
        warehouse = connect(engine.url, read_only=True, limits=QueryLimits(timeout_seconds=1))
        with pytest.raises(QueryTimeout):
            warehouse.query("SELECT count() FROM system.numbers")
        assert warehouse.query("SELECT 5 AS five") == [(5,)]  # the connection still serves the next query
        warehouse.close()
    admin = clickhouse.client()
    assert admin.execute("SELECT count() FROM system.processes WHERE query LIKE '%FROM system.numbers%' "
                         "AND query NOT LIKE '%system.processes%'") == [(0,)]
    admin.disconnect()


def cem(url: str, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cem.cli", *args], text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "CEM_CLICKHOUSE_URL": url, **env})


def test_a_killed_client_leaves_no_query_running(engines: list[Engine], clickhouse) -> None:
    marker = f"guard_{uuid.uuid4().hex[:8]}"
    process = cem(engines[1].url, "sql", f"SELECT count() AS {marker} FROM system.numbers",
                  CEM_SQL_TIMEOUT_SECONDS="3")
    admin = clickhouse.client()

    def running() -> int:
        rows = admin.execute(f"SELECT count() FROM system.processes WHERE query LIKE '%{marker}%' "
                             "AND query NOT LIKE '%system.processes%'")
        return int(rows[0][0])

    wait_until(lambda: running() == 1, 30, "the query never started")
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    wait_until(lambda: running() == 0, 30, "the server kept running the query of a dead client")
    admin.disconnect()


def test_cli_prints_columns_and_cuts_big_results(engines: list[Engine]) -> None:
    for engine in engines:
        done = cem(engine.url, "sql", "SELECT number AS n FROM system.numbers LIMIT 100000", "--format", "csv",
                   CEM_SQL_MAX_RESULT_ROWS="10")
        out, err = done.communicate(timeout=60)
        assert done.returncode == 0, err
        assert out.splitlines() == ["n"] + [str(i) for i in range(10)]
        assert "only the first 10 rows" in err
        done = cem(engine.url, "sql", f"SELECT * FROM {engine.database}.nowhere")
        out, err = done.communicate(timeout=60)
        assert done.returncode == 1 and not out
        assert err.startswith("error: Code: 60. DB::Exception: ") and "nowhere" in err, err
        assert "Stack trace" not in err


@pytest.mark.parametrize("value", IDENTIFIERS)
def test_identity_explain_reads_identifiers_with_sql_characters(engines: list[Engine], value: str,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for engine in engines:
        monkeypatch.setenv("CEM_CLICKHOUSE_URL", engine.url)
        assert main(["identity", "explain", "email", value]) == 0
        out = capsys.readouterr().out
        assert f"email {value} belongs to customer c-{IDENTIFIERS.index(value)}" in out


SPLICES = [" ", "INTO", "OUTFILE", "'", "\\", "\\'", "''", "$$", "$a$", "--", "\n", "/*", "*/", "#", "#!", "# ",
           "`", '"', ";", "(", ")", "x", "\u200b", "\u00a0", "\x1f", "\x01", "SETTINGS", "FORMAT", "CSV", ",", "AS",
           "--\n", "'a'", "\\\\", "\t", "{", "}", "1", "SELECT", "FROM", "system.one", "UNION ALL", "$", "@", "?", ":"]
STARTS = ["SELECT 1", "SELECT 1 AS x", "SHOW TABLES", "DESCRIBE TABLE system.one", "EXPLAIN SELECT 1",
          "EXISTS TABLE system.one", "WITH 1 AS y SELECT y", "(SELECT 1)"]


def spliced(rng: random.Random, outfile: Path) -> str:
    parts = [rng.choice(SPLICES) for _ in range(rng.randint(2, 9))]
    for position, part in zip(sorted(rng.sample(range(len(parts) + 3), 3)), ["INTO", "OUTFILE", f"'{outfile}'"],
                              strict=True):
        parts.insert(position, part)
    return rng.choice(STARTS) + " " + "".join(part + rng.choice([" ", "", "\n"]) for part in parts)


def test_random_splices_around_into_outfile_never_write_on_chdb(tmp_path: Path) -> None:
    """The engine is the oracle: what passes the guard runs on chdb, as sent and as typed, and no file appears."""
    from chdb import session

    engine = session.Session(str(tmp_path / "warehouse"))
    engine.query("SET max_execution_time = 2")
    engine.query("SET readonly = 1")
    engine.query(f"SELECT 1 INTO OUTFILE '{tmp_path / 'proof'}'")
    assert (tmp_path / "proof").exists()  # readonly=1 does not stop it: only the guard does
    rng, passed = random.Random(20240601), 0
    for i in range(6000):
        outfile = tmp_path / f"out-{i}"
        sql = spliced(rng, outfile)
        try:
            sent = check_read_only(sql).sql
        except ReadOnlyViolation:
            continue
        passed += 1
        for text in (sent, sql):
            try:
                engine.query(text, "Null")
            except Exception:  # most are not valid SQL; what matters is what they leave on disk
                pass
        assert not outfile.exists(), (sql, sent)
    engine.close()
    assert passed > 50  # INTO OUTFILE hidden in strings and comments: reads the guard must let through

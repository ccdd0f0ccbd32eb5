"""Secrets and access against the real servers.

- A worker whose ClickHouse URL carries a password (a wrong one for `default`, the right one for the read-only
  user, which cannot write) fails, retries, and never prints the password, in its log (at DEBUG) or its metrics.
- `cem sql` refuses every write against a ClickHouse server, through the read-write URL as well as the
  read-only user's: the statement guard, and the session's readonly=1 behind it.
- After a worker processed simulated traffic (including a row ClickHouse refuses), no email or phone number of
  that traffic, raw or normalised, appears in its log or in its metric label values.
"""

from __future__ import annotations

import subprocess
import urllib.parse
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cem.domain.identifiers import normalise_phone
from devtools.harness import run_cem, wait_until
from devtools.scrape import metric_value
from devtools.simulate import iso
from devtools.topics import publish
from schemas.codec import encode_json
from sinks.clickhouse import connect, migrate

pytestmark = [pytest.mark.faults, pytest.mark.integration]
DEBUG = {"CEM_LOG_LEVEL": "DEBUG"}


def with_database(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + f"/{database}"


def test_clickhouse_password_never_logged(scenario, kafka, clickhouse) -> None:
    s = scenario("secret", kafka.bootstrap, clickhouse.url, customers=5, seed=31)
    wrong = f"Wr0ng-{uuid.uuid4().hex[:8]}/p@ss"
    wrong_url = with_database(f"clickhouse://default:{urllib.parse.quote(wrong, safe='')}@127.0.0.1:"
                              f"{clickhouse.tcp_port}/x", s.settings.clickhouse_url.rsplit("/", 1)[1])
    readonly_url = with_database(clickhouse.readonly_url, s.settings.clickhouse_url.rsplit("/", 1)[1])
    # Two consumer groups on the same topics: each worker owns a resolver, so each talks to ClickHouse.
    workers = [s.start_worker(name, env=DEBUG, settings=replace(s.settings, clickhouse_url=url,
                                                                app_id=f"{s.settings.app_id}-{name}"))
               for name, url in (("wrong-password", wrong_url), ("readonly-user", readonly_url))]
    publish(s.settings, s.records)  # the resolver only touches ClickHouse once a batch arrives
    for worker in workers:
        wait_until(lambda w=worker: metric_value(w.metrics_text(), "cem_sink_failures_total") >= 2, 90,
                   f"{worker.name} never tried ClickHouse", workers=[worker])
    texts = {}
    for worker in workers:
        texts[worker.name] = worker.log_path.read_text(errors="replace") + worker.metrics_text()
        s.kill(worker)
    assert "Authentication failed" in texts["wrong-password"] or "Wrong password" in texts["wrong-password"]
    assert "readonly" in texts["readonly-user"].lower()  # it could log in, and was refused the DDL
    for password in (wrong, urllib.parse.quote(wrong, safe=""), clickhouse.readonly_password):
        for name, text in texts.items():
            assert password not in text, f"{name} printed a password"


WRITES = [
    "INSERT INTO {db}.target VALUES (1)",
    "DROP TABLE {db}.target",
    "ALTER TABLE {db}.target DELETE WHERE x = 1",
    "CREATE TABLE {db}.other (x UInt8) ENGINE = Memory",
    "TRUNCATE TABLE {db}.target",
    "OPTIMIZE TABLE {db}.target",
    "RENAME TABLE {db}.target TO {db}.renamed",
    "SELECT 1; DROP TABLE {db}.target",
    "  (SELECT 1) ; INSERT INTO {db}.target VALUES (2)",
    "WITH 1 AS a INSERT INTO {db}.target VALUES (3)",
    "SELECT 1 SETTINGS readonly = 0",
    "-- SELECT\nDROP TABLE {db}.target",
    "SELECT 1 INTO -- x\nOUTFILE '/dev/null'",
]


def cem_sql(url: str, query: str) -> subprocess.CompletedProcess[str]:
    return run_cem("sql", query, "--format", "tsv", env={"CEM_CLICKHOUSE_URL": url}, timeout=60)


def test_cem_sql_refuses_writes_on_a_server(clickhouse, tmp_path: Path) -> None:
    database = f"sqlguard_{uuid.uuid4().hex[:6]}"
    admin = connect(with_database(clickhouse.url, database))
    migrate(admin)
    admin.command(f"CREATE TABLE {database}.target (x UInt8) ENGINE = MergeTree ORDER BY x")
    admin.insert("target", {"x": [7]})
    outfile = tmp_path / "outfile.tsv"
    for url in (with_database(clickhouse.url, database), with_database(clickhouse.readonly_url, database)):
        assert cem_sql(url, f"SELECT sum(x) FROM {database}.target").stdout.split() == ["sum(x)", "7"]
        # INTO OUTFILE is refused by the guard (on chdb it would write the file; a server ignores it).
        into_file = cem_sql(url, f"SELECT * FROM {database}.target INTO/**/OUTFILE '{outfile}'")
        assert into_file.returncode == 2 and into_file.stderr.startswith("refused:") and not outfile.exists()
        for statement in WRITES:
            done = cem_sql(url, statement.format(db=database))
            assert done.returncode != 0, (statement, done.stdout, done.stderr)
            assert done.stderr.startswith(("refused:", "error:")), done.stderr
    assert admin.query(f"SELECT sum(x), count() FROM {database}.target") == [(7, 1)]
    assert {r[0] for r in admin.query(f"SHOW TABLES FROM {database}")} >= {"target", "interaction_log"}
    assert "other" not in {r[0] for r in admin.query(f"SHOW TABLES FROM {database}")}
    assert not outfile.exists()
    admin.close()


def identifier_values(traffic: Any) -> set[str]:
    """Every email and phone of the traffic, as sent and as normalised (lower-cased email, E.164 phone)."""
    values: set[str] = set()
    for record in traffic.events.values():
        for id_type, value in record["identifiers"].items():
            if id_type == "email" and "@" in value:
                values |= {value.strip(), value.strip().lower()}
            elif id_type == "phone":
                values.add(value)
                values.add(normalise_phone(value, "US") or value)
    return {v for v in values if len(v) >= 6}


def test_no_identifier_values_in_logs_or_metric_labels(scenario, kafka, clickhouse) -> None:
    s = scenario("pii", kafka.bootstrap, clickhouse.url, customers=60, seed=32)
    warehouse = connect(s.settings.clickhouse_url)
    migrate(warehouse)
    warehouse.command(f"ALTER TABLE {warehouse.database}.interaction_log ADD COLUMN refuse_guard UInt8 "
                      "DEFAULT throwIf(position(text, 'POISON#') > 0)")
    source = next(r for r in s.traffic.events.values() if "email" in r["identifiers"] and "phone" in r["identifiers"])
    refused = {**source, "event_id": "refused-pii", "occurred_at": iso(source["occurred_at"]),
               "text": f"POISON# call me at {source['identifiers']['phone']} or {source['identifiers']['email']}"}
    s.records.append((s.settings.raw_topic(source["channel"]), None, encode_json(refused)))
    s.expected.rejected.add("refused-pii")
    worker = s.start_worker(env=DEBUG)
    publish(s.settings, s.records)
    s.wait_drained()
    assert metric_value(worker.metrics_text(), "cem_deadletter_total", {"reason": "warehouse_rejected"}) == 1
    metrics = worker.metrics_text()
    labels = " ".join(line.split("{", 1)[1].rsplit("}", 1)[0] for line in metrics.splitlines()
                      if "{" in line and not line.startswith("#"))
    s.finish()
    log = worker.log_path.read_text(errors="replace")
    values = identifier_values(s.traffic)
    assert len(values) > 100 and len(log) > 1000
    leaked = sorted(v for v in values if v in log or v in labels)
    assert not leaked, f"identifier values in the worker's log or metric labels: {leaked[:5]}"

"""The zero-setup demo path: Tansu (embedded broker) + chdb (embedded ClickHouse) + a real worker process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def cem(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cem.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_demo_runs_on_tansu_and_chdb_then_sql_reads_it(tmp_path: Path) -> None:
    env = {**os.environ, "CEM_CLICKHOUSE_URL": f"chdb://{tmp_path}/warehouse", "CEM_STATE_DIR": str(tmp_path / "state")}
    demo = cem(["demo", "--customers", "60", "--seed", "5"], env)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "cem customer-experience report" in demo.stdout
    assert "FCR rate %" in demo.stdout and "NPS" in demo.stdout
    # The worker's log: plain INFO lines (what it did), no terminal codes, no customer identifier.
    worker_log = (tmp_path / "state" / "demo" / "worker.log").read_text()
    assert "[INFO] faust.worker: [^CemWorker]: Ready" in worker_log
    assert "\x1b" not in worker_log and "\x08" not in worker_log
    assert "@example.org" not in worker_log.lower() and "555-" not in worker_log and "+1415555" not in worker_log
    drained = next(line for line in demo.stdout.splitlines() if line.startswith("[demo] simulated"))
    unique = int(drained.split(": ")[1].split(" unique")[0])

    counted = cem(["sql", "SELECT count(), uniqExact(event_id), uniqExact(customer_id) FROM cem.interactions",
                   "--format", "tsv"], env)
    assert counted.returncode == 0, counted.stderr
    header, values = counted.stdout.splitlines()
    assert header.split("\t") == ["count()", "uniqExact(event_id)", "uniqExact(customer_id)"]
    count, distinct, customers = (int(v) for v in values.split())
    assert count == distinct == unique
    assert customers == 60

    refused = cem(["sql", "DROP TABLE cem.interaction_log"], env)
    assert refused.returncode == 2 and "read-only" in refused.stderr
    still_there = cem(["sql", "SELECT count() FROM cem.interaction_log", "--format", "tsv"], env)
    assert still_there.stdout.splitlines() == ["count()", str(unique)]

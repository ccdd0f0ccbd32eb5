"""The zero-setup demo path: Tansu (embedded broker) + chdb (embedded ClickHouse) + a real worker process."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from devtools.harness import run_cem, run_module
from tests.integration.readme import normalised, shown_output

pytestmark = pytest.mark.integration


def test_demo_runs_on_tansu_and_chdb_then_sql_reads_it(tmp_path: Path) -> None:
    env = {"CEM_CLICKHOUSE_URL": f"chdb://{tmp_path}/warehouse", "CEM_STATE_DIR": str(tmp_path / "state")}
    demo = run_module("devtools.demo", "--customers", "60", "--seed", "5", env=env, timeout=300)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "cem customer-experience report" in demo.stdout
    assert "Scores by channel" in demo.stdout and "FCR %" in demo.stdout and "NPS" in demo.stdout
    # The alerts: published on Tansu (no idempotent producer there), counted per rule, and the HTML report written.
    lines = demo.stdout.splitlines()
    published = int(next(line for line in lines if line.endswith("alert revisions published to cem.alerts")).split()[1])
    total = int(next(line for line in lines if line.startswith("[demo] alerts by rule:")).split(": ")[1].split()[0])
    assert published > 0 and total > 0
    html = tmp_path / "state" / "demo" / "report.html"
    assert f"open {html} in a browser" in demo.stdout and "plotly" in html.read_text()[:200_000].lower()
    # The worker's log: plain INFO lines (what it did), no terminal codes, no customer identifier.
    worker_log = (tmp_path / "state" / "demo" / "worker.log").read_text()
    assert "[INFO] faust.worker: [^CemWorker]: Ready" in worker_log
    assert "\x1b" not in worker_log and "\x08" not in worker_log
    assert "@example.org" not in worker_log.lower() and "555-" not in worker_log and "+1415555" not in worker_log
    simulated = next(line for line in demo.stdout.splitlines() if line.startswith("[demo] simulated"))
    examples = next(line for line in demo.stdout.splitlines() if line.startswith("[demo] plus the README's examples"))
    # The README's examples: docs/examples/jane.jsonl (7 events) and frontdesk.jsonl (7 events).
    assert examples.split(": ")[1].startswith("14 events from docs/examples/jane.jsonl, docs/examples/frontdesk.jsonl")
    unique = int(simulated.split(": ")[1].split(" unique")[0]) + 14

    counted = run_cem("sql", "SELECT count(), uniqExact(event_id), uniqExact(customer_id) FROM cem.interactions",
                      "--format", "tsv", env=env)
    assert counted.returncode == 0, counted.stderr
    header, values = counted.stdout.splitlines()
    assert header.split("\t") == ["count()", "uniqExact(event_id)", "uniqExact(customer_id)"]
    count, distinct, customers = (int(v) for v in values.split())
    assert count == distinct == unique
    assert customers == 60 + 2 + 7  # Jane and the CRM-99 customer; the front desk's six phone customers and d-7

    refused = run_cem("sql", "DROP TABLE cem.interaction_log", env=env)
    assert refused.returncode == 2 and "read-only" in refused.stderr
    still_there = run_cem("sql", "SELECT count() FROM cem.interaction_log", "--format", "tsv", env=env)
    assert still_there.stdout.splitlines() == ["count()", str(unique)]

    # The README's examples are in the demo's traffic: explain answers as the README shows (its walk runs them on
    # the dev stack; here on the embedded warehouse, among simulated customers that share none of their identifiers).
    for command in ('cem identity explain email "JANE.DOE@example.com"', 'cem identity explain phone "+1 212 555 2303"',
                    "cem identity explain email frontdesk@store.example.com"):
        explained = run_cem(*shlex.split(command)[1:], env=env)
        assert explained.returncode == 0, explained.stderr
        assert normalised(explained.stdout) == normalised(shown_output(command)), explained.stdout

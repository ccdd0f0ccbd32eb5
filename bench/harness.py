"""What every benchmark run stands on: its own Kafka and ClickHouse, isolated settings per phase, producing
pre-built traffic, the bare-Faust ceiling, and a pipeline phase (workers started, first record consumed -> last
row visible, CPU metered, rows checked). `make bench` (bench/run.py) and `make bench-history` (bench/history.py)
compose their phases from these."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from bench import procstat
from bench.pipeline_timeline import Sample, fill_and_drain
from bench.traffic import TrafficSet, produce_fast
from bench.worker_figures import await_counted, identity_costs, worker_metrics
from cem.kafka import ensure_topics
from cem.settings import Settings
from devtools.harness import WorkerProcess
from devtools.services import ClickHouseServer, KafkaBroker, require_clickhouse, stop_all
from devtools.simulate import recent_base_ms

RESULTS_DIR = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parent.parent
# How often a pipeline phase asks its workers what they consumed (bench/pipeline_timeline.py)
STAGE_SAMPLE_SECONDS = 0.2


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def bench_worker(settings: Settings, log_path: Path, name: str, proposals: str = "") -> WorkerProcess:
    """One `cem worker` process (devtools.harness.WorkerProcess); with proposals, the same worker with
    bench/proposals patches applied first."""
    if not proposals:
        return WorkerProcess(settings, log_path, name)
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    return WorkerProcess(settings, log_path, name, env={"BENCH_PROPOSALS": proposals, "PYTHONPATH": path},
                         command=[sys.executable, "-m", "bench.proposals.worker"])


def pid_of(worker: WorkerProcess) -> int:
    assert worker.pid is not None, f"{worker.name} was not started"
    return worker.pid


@dataclass
class Polled:
    """What a pipeline phase saw while it waited for its rows: when it ended, the rows then, whether the phase
    limit cut it, what the workers had consumed (every STAGE_SAMPLE_SECONDS) and, if asked, the first worker's
    RSS once a second."""
    ended: float = 0.0
    rows: int = 0
    incomplete: bool = False
    stages: list[Sample] = field(default_factory=list)
    rss: list[dict[str, Any]] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(args.workdir or tempfile.mkdtemp(prefix="cem-bench-"))
        self.kafka: KafkaBroker | None = None
        self.clickhouse: ClickHouseServer | None = None
        self.result: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": vars(args).copy()}
        self.base_ms = recent_base_ms()
        self.overrides = dict(item.split("=", 1) for item in args.overrides)

    # ---- services and settings ---------------------------------------------------------------------------
    def start_services(self) -> None:
        require_clickhouse()
        # A new consumer group waits this long for more members before its first assignment, so the two
        # workers of the scaling phase start with the final assignment instead of a rebalance mid-run.
        self.kafka = KafkaBroker(self.workdir / "kafka", config={"group.initial.rebalance.delay.ms": "4000"})
        self.clickhouse = ClickHouseServer(self.workdir / "clickhouse", max_memory_usage=8_000_000_000)
        started = time.monotonic()
        self.kafka.start()
        self.clickhouse.start()
        log(f"Kafka {self.kafka.bootstrap} (pid {self.kafka.pid}) and ClickHouse :{self.clickhouse.tcp_port} "
            f"(pid {self.clickhouse.pid}) up in {time.monotonic() - started:.1f} s; workdir {self.workdir}")

    def settings(self, tag: str) -> Settings:
        """Isolated topics (prefix), consumer group and database per tag; the database is migrated here, as a
        production warehouse would be, so the workers' first batch does not pay for the DDL."""
        from sinks.clickhouse import connect, migrate

        assert self.kafka is not None and self.clickhouse is not None
        url = self.clickhouse.url.rsplit("/", 1)[0] + f"/{tag}"
        warehouse = connect(url)
        try:
            migrate(warehouse)
        finally:
            warehouse.close()
        environ = {"CEM_" + key.upper(): value for key, value in self.overrides.items()}
        return Settings.from_env(environ, kafka_bootstrap=self.kafka.bootstrap, clickhouse_url=url, topic_prefix=tag,
                                 app_id=tag, state_dir=str(self.workdir / "state" / tag))

    def service_pids(self) -> dict[str, int]:
        assert self.kafka is not None and self.clickhouse is not None
        assert self.kafka.pid is not None and self.clickhouse.pid is not None
        return {"kafka": self.kafka.pid, "clickhouse": self.clickhouse.pid, "bench": os.getpid()}

    def client(self) -> Any:
        assert self.clickhouse is not None
        return self.clickhouse.client(send_receive_timeout=60)

    def produce(self, settings: Settings, traffic: TrafficSet) -> None:
        asyncio.run(ensure_topics(settings))
        started = time.monotonic()
        rate = asyncio.run(produce_fast(settings, traffic.to_topics(settings)))
        log(f"produced {len(traffic.records)} records to {settings.topic_prefix}.raw.* in "
            f"{time.monotonic() - started:.1f} s ({rate:,.0f}/s)")

    def count_rows(self, client: Any, db: str) -> int:
        return int(client.execute(f"SELECT count() FROM {db}.interaction_log")[0][0])

    def check_unique(self, client: Any, db: str, expected: int) -> dict[str, Any]:
        (rows, unique), = client.execute(f"SELECT count(), uniqExact(event_id) FROM {db}.interaction_log")
        (view_rows,), = client.execute(f"SELECT count() FROM {db}.interactions")
        ok = rows == unique == view_rows == expected
        check = {"rows": rows, "unique_event_ids": unique, "view_rows": view_rows, "expected_unique_valid": expected,
                 "ok": ok}
        log(f"check {db}: rows={rows} unique={unique} view={view_rows} expected={expected} -> "
            f"{'OK' if ok else 'MISMATCH'}")
        return check

    def close(self) -> None:
        for service in (self.clickhouse, self.kafka):
            if service is not None:
                try:
                    service.stop()
                except Exception as exc:  # a service that will not stop must not hide the results
                    log(f"stopping {service.name}: {exc}")
        stop_all()
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- the bare-Faust ceiling ------------------------------------------------------------------------------
    def bare_faust(self, settings: Settings, traffic: TrafficSet, mode: str) -> dict[str, Any]:
        bare = replace(settings, app_id=f"{settings.app_id}_bare_{mode}",
                       state_dir=str(self.workdir / "state" / f"bare_{mode}"))
        result_path = self.workdir / f"bare_{mode}.json"
        env = {"BENCH_EXPECTED": str(len(traffic.records)), "BENCH_RESULT": str(result_path), "BENCH_MODE": mode}
        load = procstat.load_average()
        process = WorkerProcess(bare, self.workdir / f"bare_{mode}.log", "bare_faust", env=env,
                                command=[sys.executable, "-m", "bench.bare"]).spawn()
        first_path = result_path.with_suffix(".first")
        try:
            deadline = time.monotonic() + self.args.timeout
            while not first_path.exists():  # CPU is metered from the first record on, like the workers'
                if not process.running or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            meter = procstat.CpuMeter({**self.service_pids(), "bare_faust": pid_of(process)}).start()
            while not result_path.exists():
                process.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError("bare Faust did not consume every record")
                time.sleep(0.1)
            cpu = meter.stop()
            peak = procstat.peak_rss_mb(pid_of(process))
        finally:
            process.stop(20.0)
        done = orjson.loads(result_path.read_bytes())
        seconds = done["last_s"] - done["first_s"]
        rate = done["count"] / seconds
        log(f"bare Faust ({mode}): {done['count']} records in {seconds:.2f} s = {rate:,.0f}/s "
            f"(decoded {done['decoded']}); cpu {cpu}; load {load}")
        return {"mode": mode, "records": done["count"], "seconds": round(seconds, 3), "events_per_s": round(rate, 1),
                "cpu_seconds": cpu, "peak_rss_mb": peak, "load_average": load}

    # ---- a pipeline phase: first record consumed -> last row visible ----------------------------------------
    def pipeline(self, settings: Settings, traffic: TrafficSet, n_workers: int, label: str,
                 keep_running: bool = False, rss_samples: bool = False,
                 limit: float | None = None) -> tuple[dict[str, Any], list[WorkerProcess]]:
        limit = self.args.phase_limit if limit is None else limit
        client = self.client()
        db = settings.clickhouse_url.rsplit("/", 1)[-1]
        workers = [bench_worker(replace(settings, state_dir=f"{settings.state_dir}/w{i}"),
                                self.workdir / f"{label}-worker{i}.log", f"{label}-worker{i}", self.args.with_proposals)
                   for i in range(n_workers)]
        load = procstat.load_average()
        for w in workers:
            w.spawn()
        profilers: list[subprocess.Popen[bytes]] = []
        try:
            deadline = time.monotonic() + max(self.args.timeout, limit + 120)
            t0 = self._first_record(workers, label, deadline)
            meter = procstat.CpuMeter({**self.service_pids(), **{w.name: pid_of(w) for w in workers}}).start()
            baseline_rss = {w.name: procstat.rss_mb(pid_of(w)) for w in workers}
            if self.args.profile and label in ("throughput", "scaling"):
                profilers = self._start_profilers(workers, label)
            polled = self._poll_until_visible(client, db, workers, traffic.unique_valid, t0, limit, deadline, label,
                                              rss_samples)
            cpu = meter.stop()
            while profilers:
                stop_profiler(profilers.pop())
            out = self._phase_result(client, db, workers, traffic, t0, polled, cpu, baseline_rss)
            out.update(load_average_before=load, load_average_after=procstat.load_average())
            log(f"{label}: {n_workers} worker(s), {len(traffic.records)} records -> {traffic.unique_valid} rows in "
                f"{out['seconds']:.2f} s = {out['events_per_s']:,.0f}/s; cpu {cpu}; peak RSS "
                f"{ {k: v['peak_rss_mb'] for k, v in out['per_worker'].items()} } MB; load {load}; "
                f"worker metrics { {k: v['metrics'] for k, v in out['per_worker'].items()} }")
            if polled.incomplete:
                for w in workers:
                    w.kill()
            elif not keep_running:
                for w in workers:
                    w.stop()
            return out, workers
        except BaseException:
            while profilers:
                stop_profiler(profilers.pop())
            for w in workers:
                w.kill()
            raise
        finally:
            client.disconnect()

    @staticmethod
    def _first_record(workers: list[WorkerProcess], label: str, deadline: float) -> float:
        """The wall time at which any worker had consumed its first record."""
        while True:
            for w in workers:
                w.check_alive()
                if (w.status() or {}).get("consumed", 0) > 0:
                    return time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: no worker consumed anything:\n{workers[0].log_tail()}")
            time.sleep(0.02)

    def _poll_until_visible(self, client: Any, db: str, workers: list[WorkerProcess], expected: int, t0: float,
                            limit: float, deadline: float, label: str, rss_samples: bool) -> Polled:
        polled = Polled()
        next_rss = next_stage = 0.0
        while True:
            now = time.time()
            polled.ended, polled.rows = now, self.count_rows(client, db)
            if polled.rows >= expected:
                return polled
            if now - t0 > limit:
                # Keep `make bench` inside its time budget even when the code under test is far too slow:
                # report the rate so far, flagged, and skip what depends on a drained pipeline.
                log(f"{label}: PHASE LIMIT {limit:.0f} s reached with {polled.rows}/{expected} rows; "
                    "reporting the rate so far")
                polled.incomplete = True
                return polled
            for w in workers:
                w.check_alive()
            statuses = None
            if now >= next_stage:  # every phase alike: the polls cost each worker the same
                next_stage = now + STAGE_SAMPLE_SECONDS
                statuses = [w.status() or {} for w in workers]
                polled.stages.append(Sample(now - t0, polled.rows, sum(s.get("consumed", 0) for s in statuses)))
            if rss_samples and now >= next_rss:
                next_rss = now + 1.0
                status = statuses[0] if statuses is not None else workers[0].status() or {}
                polled.rss.append({"t": round(now - t0, 2), "consumed": status.get("consumed", 0),
                                   "resolved": status.get("resolved", 0), "rows": polled.rows,
                                   "rss_mb": procstat.rss_mb(pid_of(workers[0]))})
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: {polled.rows}/{expected} rows, stuck")
            time.sleep(0.1)

    def _phase_result(self, client: Any, db: str, workers: list[WorkerProcess], traffic: TrafficSet, t0: float,
                      polled: Polled, cpu: dict[str, float], baseline_rss: dict[str, float | None]) -> dict[str, Any]:
        expected = traffic.unique_valid
        seconds = polled.ended - t0
        # records/s; an incomplete phase counts the records its visible rows stand for
        rate = len(traffic.records) * min(1.0, polled.rows / expected) / seconds
        if not polled.incomplete and not await_counted(workers, expected):
            log("the workers' counters do not hold every event yet; the per-event figures cover part of the phase")
        per_worker = {w.name: {"status": w.status(), "peak_rss_mb": procstat.peak_rss_mb(pid_of(w)),
                               "rss_mb": procstat.rss_mb(pid_of(w)), "rss_at_first_record_mb": baseline_rss[w.name],
                               "metrics": {**worker_metrics(w.metrics()), **identity_costs(w.metrics_text())}}
                      for w in workers}
        check = self.check_unique(client, db, expected) if not polled.incomplete else \
            {"ok": None, "skipped": f"incomplete: {polled.rows}/{expected} rows after {seconds:.0f} s"}
        out: dict[str, Any] = {
            "incomplete": polled.incomplete, "rows_visible": polled.rows,
            "workers": len(workers), "records": len(traffic.records), "unique_valid": expected,
            "customers": traffic.customers, "seconds": round(seconds, 3), "events_per_s": round(rate, 1),
            "cpu_seconds": cpu, "per_worker": per_worker, "check": check,
        }
        if polled.rss:
            out["rss_samples"] = polled.rss
        stages = fill_and_drain(polled.stages, len(traffic.records), seconds) if not polled.incomplete else None
        if stages is not None:
            out["fill_and_drain"] = stages.as_dict()
        return out

    def _start_profilers(self, workers: list[WorkerProcess], label: str) -> list[subprocess.Popen[bytes]]:
        names = [label] if len(workers) == 1 else [f"{label}-worker{i}" for i in range(len(workers))]
        return [p for w, name in zip(workers, names, strict=True)
                if (p := start_profiler(pid_of(w), name)) is not None]


def start_profiler(pid: int, label: str) -> subprocess.Popen[bytes] | None:
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        log("py-spy not found; no profile")
        return None
    out = RESULTS_DIR / f"profile-{label}.txt"
    log(f"py-spy recording worker {pid} -> {out}")
    return subprocess.Popen([str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "100",
                             "--nonblocking", "--threads", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()

"""`make bench`: end-to-end throughput, latency, scaling and memory of the pipeline, against the bare-Faust
ceiling measured in the same run on the same broker.

    python -m bench.run [--events N] [--quick] [--latency-seconds S] [--memory-events M] [--profile] ...

Phases (docs/performance.md explains each method and its resolution):
  1. bare-Faust ceiling  a tiny Faust app (bench/bare.py) that only decodes the pre-produced records
  2. throughput          one `cem worker`, first record consumed -> last row visible in ClickHouse
  3. latency             produce at half of (2), each record's send time against the time its row became
                         visible (ClickHouse polled every --poll-ms); then again on records delivered in random
                         order over their whole time span (a backfill or a replay)
  4. scaling             two workers on a copy of the same records, ratio to (2), CPU seconds per process,
                         and how long one stage worked alone (bench/pipeline_timeline.py);
                         then the split resolver (CEM_SPLIT_PARTITIONS=--split-partitions) with one worker and
                         with two, its own ratio
  5. memory              one worker over many customers with few events each; RSS sampled as it consumes,
                         peak RSS (VmHWM) at the end; then the analysts' `interactions` view against its base
                         table on what it wrote, its overrides unsquashed (bench/views.py)
  6. kiosk               in-process (bench/kiosk.py): visitors on one shared device, and logging in with one
                         e-mail, vs on their own devices, through Resolver.process; the time ratios (a hot
                         identifier must not cost more)
  7. collector           a `cem collect` process (bench/collector.py): Segment-shaped batch posts from concurrent
                         clients, each answered once Kafka acknowledged it; requests/s, events/s, p50/p99
  8. text cost           in-process (bench/text_cost.py): enrichment CPU per event before text signals (VADER,
                         user agent) and with them, and per new text
  9. alert cost          in-process (bench/alert_cost.py): Resolver.process per event without and with the alert
                         engine on the same batches; the ratio (budget 1.10)
 10. serial share        in-process (bench/serial_share.py): the share of events that need the identity graph's
                         owner, its CPU per such event, the partitionable CPU per event, the serial ceiling and a
                         projection for 8, 32 and 128 partitions (docs/scaling.md)
 11. split stages        in-process (bench/split_inproc.py): the product's fronts, graph owner and customer
                         partitions on the same traffic, replicas one version behind; checked against the single
                         resolver; the owner's CPU per request and the share of events it was asked about

The last line of output is `ratio_vs_bare_faust=X.XX p99_latency_s=Y.YY p99_shuffled_s=… scale_2w=Z.ZZ
scale_2w_cpu_bound=B.BB scale_2w_split=C.CC serial_share=S.SSSS serial_ceiling_eps=N` (the bound:
bench/cpu_budget.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import orjson

from bench import alert_cost, collector, kiosk, procstat, serial_share, split_inproc, text_cost, views
from bench.cpu_budget import scale_bound
from bench.pipeline_timeline import Sample, fill_and_drain
from bench.proposals import PROPOSALS
from bench.traffic import (
    ORDERS,
    TrafficSet,
    many_customers,
    produce_at_rate,
    produce_fast,
    simulated,
    with_event_ids,
)
from cem.kafka import ensure_topics
from cem.settings import Settings
from cem.worker import tune_garbage_collector
from devtools.harness import WorkerProcess, wait_until
from devtools.scrape import metric_value
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

    # ---- phase 1: the bare-Faust ceiling ---------------------------------------------------------------------
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

    # ---- phase 2 and 4: pipeline throughput ------------------------------------------------------------------
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
            t0 = None
            while t0 is None:  # the first record consumed by any worker
                for w in workers:
                    w.check_alive()
                    if (w.status() or {}).get("consumed", 0) > 0:
                        t0 = time.time()
                        break
                else:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{label}: no worker consumed anything:\n{workers[0].log_tail()}")
                    time.sleep(0.02)
            meter = procstat.CpuMeter({**self.service_pids(), **{w.name: pid_of(w) for w in workers}}).start()
            baseline_rss = {w.name: procstat.rss_mb(pid_of(w)) for w in workers}
            if self.args.profile and label in ("throughput", "scaling"):
                names = [label] if n_workers == 1 else [f"{label}-worker{i}" for i in range(n_workers)]
                profilers = [p for w, name in zip(workers, names, strict=True)
                             if (p := self._start_profiler(pid_of(w), name)) is not None]
            samples: list[dict[str, Any]] = []
            next_sample = next_stage_sample = 0.0
            stage_samples: list[Sample] = []
            expected = traffic.unique_valid
            incomplete = False
            while True:
                polled = time.time()
                rows = self.count_rows(client, db)
                if rows >= expected:
                    t_end = polled
                    break
                if polled - t0 > limit:
                    # Keep `make bench` inside its time budget even when the code under test is far too slow:
                    # report the rate so far, flagged, and skip what depends on a drained pipeline.
                    t_end, incomplete = polled, True
                    log(f"{label}: PHASE LIMIT {limit:.0f} s reached with {rows}/{expected} rows; "
                        "reporting the rate so far")
                    break
                for w in workers:
                    w.check_alive()
                statuses = None
                if polled >= next_stage_sample:  # every phase alike: the polls cost each worker the same
                    next_stage_sample = polled + STAGE_SAMPLE_SECONDS
                    statuses = [w.status() or {} for w in workers]
                    stage_samples.append(Sample(polled - t0, rows, sum(s.get("consumed", 0) for s in statuses)))
                if rss_samples and polled >= next_sample:
                    next_sample = polled + 1.0
                    status = statuses[0] if statuses is not None else workers[0].status() or {}
                    samples.append({"t": round(polled - t0, 2), "consumed": status.get("consumed", 0),
                                    "resolved": status.get("resolved", 0), "rows": rows,
                                    "rss_mb": procstat.rss_mb(pid_of(workers[0]))})
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{label}: {rows}/{expected} rows, stuck")
                time.sleep(0.1)
            cpu = meter.stop()
            while profilers:
                self._stop_profiler(profilers.pop())
            seconds = t_end - t0
            # records/s; an incomplete phase counts the records its visible rows stand for
            rate = len(traffic.records) * min(1.0, rows / expected) / seconds
            if not incomplete:
                _await_counted(workers, expected)
            per_worker = {w.name: {"status": w.status(), "peak_rss_mb": procstat.peak_rss_mb(pid_of(w)),
                                   "rss_mb": procstat.rss_mb(pid_of(w)), "rss_at_first_record_mb": baseline_rss[w.name],
                                   "metrics": {**_worker_metrics(w.metrics()), **_identity_costs(w.metrics_text())}}
                          for w in workers}
            check = self.check_unique(client, db, expected) if not incomplete else \
                {"ok": None, "skipped": f"incomplete: {rows}/{expected} rows after {seconds:.0f} s"}
            out: dict[str, Any] = {
                "incomplete": incomplete, "rows_visible": rows,
                "workers": n_workers, "records": len(traffic.records), "unique_valid": expected,
                "customers": traffic.customers, "seconds": round(seconds, 3), "events_per_s": round(rate, 1),
                "cpu_seconds": cpu, "per_worker": per_worker, "check": check, "load_average_before": load,
                "load_average_after": procstat.load_average(),
            }
            if samples:
                out["rss_samples"] = samples
            stages = fill_and_drain(stage_samples, len(traffic.records), seconds) if not incomplete else None
            if stages is not None:
                out["fill_and_drain"] = stages.as_dict()
            log(f"{label}: {n_workers} worker(s), {len(traffic.records)} records -> {expected} rows in {seconds:.2f} s "
                f"= {rate:,.0f}/s; cpu {cpu}; peak RSS "
                f"{ {k: v['peak_rss_mb'] for k, v in per_worker.items()} } MB; load {load}; "
                f"worker metrics { {k: v['metrics'] for k, v in per_worker.items()} }")
            if incomplete:
                for w in workers:
                    w.kill()
            elif not keep_running:
                for w in workers:
                    w.stop()
            return out, workers
        except BaseException:
            while profilers:
                self._stop_profiler(profilers.pop())
            for w in workers:
                w.kill()
            raise
        finally:
            client.disconnect()

    def _start_profiler(self, pid: int, label: str) -> subprocess.Popen[bytes] | None:
        py_spy = Path(sys.executable).parent / "py-spy"
        if not py_spy.exists():
            log("py-spy not found; no profile")
            return None
        out = RESULTS_DIR / f"profile-{label}.txt"
        log(f"py-spy recording worker {pid} -> {out}")
        return subprocess.Popen([str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "100",
                                 "--nonblocking", "--threads", "-o", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @staticmethod
    def _stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
        profiler.send_signal(signal.SIGINT)
        try:
            profiler.wait(30)
        except subprocess.TimeoutExpired:
            profiler.kill()

    def split_scaling(self, traffic: TrafficSet, partitions: int) -> None:
        """The partitioned resolver (CEM_SPLIT_PARTITIONS) on the same traffic, 1 worker then 2: its own ratio."""
        rates = {}
        for workers, tag in ((1, "bench_split1"), (2, "bench_split2")):
            settings = replace(self.settings(tag), split_partitions=partitions)
            self.produce(settings, traffic)
            phase, _ = self.pipeline(settings, traffic, workers, f"split-{workers}w")
            self.result[f"split_throughput_{workers}w"] = phase
            rates[workers] = phase["events_per_s"]
        self.result["scale_2w_split"] = round(rates[2] / rates[1], 3)
        log(f"split ({partitions} partitions): 1 worker {rates[1]:,.0f}/s, 2 workers {rates[2]:,.0f}/s, "
            f"scale {self.result['scale_2w_split']:.2f}")

    # ---- phase 3: latency at a fixed rate -------------------------------------------------------------------
    def latency(self, settings: Settings, worker: WorkerProcess, rate: float, traffic: TrafficSet,
                rows_before: int) -> dict[str, Any]:
        db = settings.clickhouse_url.rsplit("/", 1)[-1]
        poll_s = self.args.poll_ms / 1000
        # version -> poll-start time of the poll that saw its row count grow last (the batch complete)
        complete_at: dict[int, float] = {}
        stop = threading.Event()
        poll_costs: list[float] = []
        client = self.client()
        (start_version,), = client.execute(f"SELECT max(version) FROM {db}.interaction_log")
        client.disconnect()

        def poll() -> None:
            # Each batch's interaction rows share one `version`, strictly increasing from batch to batch, and a
            # batch is written only after the previous one's write returned: only the newest version can still be
            # growing (an insert spanning two monthly partitions lands as two parts). So each poll is one small
            # GROUP BY over versions >= the newest seen; event ids are read once, at the end.
            client = self.client()
            counts: dict[int, int] = {}
            newest = start_version + 1
            try:
                while not stop.is_set():
                    started = time.time()
                    for v, n in client.execute(f"SELECT version, count() FROM {db}.interaction_log "
                                               f"WHERE version >= {newest} GROUP BY version"):
                        if n > counts.get(v, 0):
                            counts[v] = n
                            complete_at[v] = started
                            newest = max(newest, v)
                    poll_costs.append(time.time() - started)
                    stop.wait(max(0.0, poll_s - (time.time() - started)))
            finally:
                client.disconnect()

        load = procstat.load_average()
        poller = threading.Thread(target=poll, name="latency-poller", daemon=True)
        poller.start()
        meter = procstat.CpuMeter({**self.service_pids(), worker.name: pid_of(worker)}).start()
        metrics_before = worker.metrics()
        profiler = self._start_profiler(pid_of(worker), "latency") if self.args.profile else None
        sent_at: list[float] = []
        achieved = asyncio.run(produce_at_rate(settings, traffic.to_topics(settings), rate, sent_at))
        log(f"latency: produced {len(sent_at)} records at {achieved:,.0f}/s (target {rate:,.0f}/s)")
        first_sent: dict[str, float] = {}
        for event_id, at in zip(traffic.event_ids, sent_at, strict=True):
            if event_id is not None and event_id not in first_sent:
                first_sent[event_id] = at
        client = self.client()
        deadline = time.monotonic() + 120
        while self.count_rows(client, db) < rows_before + traffic.unique_valid and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3 * poll_s)  # let the poller see the last batch too
        stop.set()
        poller.join(10)
        cpu = meter.stop()
        visible_at: dict[str, float] = {}
        resolved_at: dict[str, float] = {}  # the row's ingested_ms: when the resolver took its batch
        for event_id, version, ingested_ms in client.execute(
                f"SELECT event_id, version, ingested_ms FROM {db}.interaction_log WHERE version > {start_version}"):
            if version in complete_at:
                visible_at[event_id] = complete_at[version]
                resolved_at[event_id] = ingested_ms / 1000
        client.disconnect()
        if profiler is not None:
            self._stop_profiler(profiler)
        metrics_after = worker.metrics()
        sink = _worker_metrics({k: metrics_after[k] - metrics_before.get(k, 0.0) for k in metrics_after})
        latencies = sorted(visible_at[e] - t for e, t in first_sent.items() if e in visible_at)
        # Where the time goes: send -> the resolver takes the batch (ingest batching, the cem.resolve hop, the
        # resolver's take() wait), then -> the row is visible (resolve, ClickHouse write, poll resolution).
        to_resolver = sorted(resolved_at[e] - t for e, t in first_sent.items() if e in resolved_at)
        to_visible = sorted(visible_at[e] - resolved_at[e] for e in first_sent if e in visible_at)
        # Latency over the run, by send time in 5 s windows: a growing p50 means the pipeline fell behind.
        start = min(first_sent.values(), default=0.0)
        windows: dict[int, list[float]] = {}
        for e, t in first_sent.items():
            if e in visible_at:
                windows.setdefault(int((t - start) // 5), []).append(visible_at[e] - t)
        timeline = [{"from_s": k * 5, "events": len(v), "p50_s": _pct(sorted(v), 50), "p99_s": _pct(sorted(v), 99)}
                    for k, v in sorted(windows.items())]
        missing = traffic.unique_valid - len(latencies)
        client = self.client()
        try:
            check = self.check_unique(client, db, rows_before + traffic.unique_valid)
        finally:
            client.disconnect()
        out = {
            "target_rate": round(rate, 1), "achieved_rate": round(achieved, 1), "records": len(sent_at),
            "events_measured": len(latencies), "events_missing": missing, "poll_interval_s": poll_s,
            "poll_query_s_median": round(statistics.median(poll_costs), 4) if poll_costs else None,
            "p50_s": _pct(latencies, 50), "p95_s": _pct(latencies, 95), "p99_s": _pct(latencies, 99),
            "max_s": round(latencies[-1], 3) if latencies else None, "cpu_seconds": cpu, "load_average": load,
            "stages": {"send_to_resolver_p50_s": _pct(to_resolver, 50), "send_to_resolver_p99_s": _pct(to_resolver, 99),
                       "resolver_to_visible_p50_s": _pct(to_visible, 50),
                       "resolver_to_visible_p99_s": _pct(to_visible, 99)},
            "timeline": timeline, "worker_metrics": sink, "check": check,
        }
        log(f"latency at {achieved:,.0f}/s: p50 {out['p50_s']} s, p95 {out['p95_s']} s, p99 {out['p99_s']} s, "
            f"max {out['max_s']} s ({len(latencies)} events, {missing} missing; poll every {poll_s * 1000:.0f} ms, "
            f"median poll {out['poll_query_s_median']} s); stages {out['stages']}; cpu {cpu}; worker {sink}")
        log("latency by send time (5 s windows): " + ", ".join(f"{w['from_s']}s:{w['p50_s']}/{w['p99_s']}"
                                                              for w in timeline))
        return out

    # ---- the whole run -------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        args = self.args
        started = time.monotonic()
        self.result["machine"] = {"cores": os.cpu_count(), "python": platform.python_version(),
                                  "cpu": _cpu_model(), "load_average_at_start": procstat.load_average(),
                                  "git": _git_head()}
        self.result["code_under_test"] = "tree" + (f" + proposals {args.with_proposals}"
                                                   if args.with_proposals else "") + \
            "".join(f" --set {item}" for item in args.overrides)
        if args.with_proposals:
            log(f"WHAT-IF RUN: workers run with bench/proposals patches: {args.with_proposals}")
        self.start_services()
        main = simulated(args.events, args.seed, 0, self.base_ms, args.order)
        log(f"simulated {len(main.records)} records: {main.unique_valid} unique valid events, {main.customers} "
            f"customers, {main.duplicates} re-sent duplicates, {main.malformed} malformed")
        a = self.settings("bench_a")
        self.produce(a, main)

        bare = self.bare_faust(a, main, args.bare_mode)
        self.result["bare_faust"] = bare
        if args.bare_both:
            other = "take" if args.bare_mode == "events" else "events"
            self.result["bare_faust_" + other] = self.bare_faust(a, main, other)

        one, workers = self.pipeline(a, main, 1, "throughput", keep_running=not args.skip_latency)
        self.result["throughput_1w"] = one
        self.result["ratio_vs_bare_faust"] = round(one["events_per_s"] / bare["events_per_s"], 3)

        if not args.skip_latency and one["incomplete"]:
            self.result["latency_skipped"] = "the throughput phase did not drain within --phase-limit"
            log("latency: SKIPPED, the throughput phase did not drain within its limit")
        elif not args.skip_latency:
            rate = one["events_per_s"] * args.latency_fraction
            n = max(1000, int(rate * args.latency_seconds))
            lat_traffic = with_event_ids(simulated(n, args.seed + 1, 1_000_000, self.base_ms, args.order))
            # The same rate again on traffic delivered in random order over its whole time span, as a backfill or a
            # replay arrives: every event may be late, so sessions, journeys and identity recompute.
            shuffled = with_event_ids(simulated(n, args.seed + 3, 3_000_000, self.base_ms, "shuffled"))
            try:
                self.result["latency"] = self.latency(a, workers[0], rate, lat_traffic, main.unique_valid)
                if not args.skip_shuffled:
                    self.result["latency_shuffled"] = self.latency(
                        a, workers[0], rate, shuffled, main.unique_valid + lat_traffic.unique_valid)
            finally:
                workers[0].stop()

        if not args.skip_scaling:
            b = self.settings("bench_b")
            self.produce(b, main)
            two, _ = self.pipeline(b, main, 2, "scaling")
            self.result["throughput_2w"] = two
            self.result["scale_2w"] = round(two["events_per_s"] / one["events_per_s"], 3)
            self.result["scale_2w_bound"] = scale_bound(
                one["events_per_s"], one["cpu_seconds"], two["events_per_s"], two["cpu_seconds"], one["records"],
                float(os.cpu_count() or 1)).as_dict()

        if not args.skip_scaling and args.split_partitions > 0:
            self.result["split_partitions"] = args.split_partitions
            self.split_scaling(main, args.split_partitions)

        if args.memory_events > 0:
            per_customer = max(5, round(args.memory_events / args.memory_customers))
            mem_traffic = many_customers(args.memory_customers, per_customer, args.seed + 2, 2_000_000, self.base_ms,
                                         order=args.order)
            log(f"memory traffic: {len(mem_traffic.records)} records, {mem_traffic.unique_valid} unique, "
                f"{mem_traffic.customers} customers")
            c = self.settings("bench_c")
            self.produce(c, mem_traffic)
            # A bigger memory run (the 1M events) gets a proportionally longer limit.
            limit = args.phase_limit * max(1.0, len(mem_traffic.records) / 200_000)
            mem, _ = self.pipeline(c, mem_traffic, 1, "memory", rss_samples=True, limit=limit)
            mem["rss_growth"] = _rss_growth(mem)
            self.result["memory"] = mem
            log(f"memory: {mem['rss_growth']}")
            self.result["views"] = views.measure(c.clickhouse_url)
            log(f"views: {self.result['views']}")

        if args.kiosk_visitors > 0:
            hot = kiosk.measure(args.kiosk_visitors, args.seed)
            self.result["kiosk"] = {"visitors": hot.visitors, "events": hot.events, "own_devices_s": hot.own_devices_s,
                                    "kiosk_s": hot.kiosk_s, "shared_email_s": hot.shared_email_s,
                                    "ratio": round(hot.ratio, 3), "email_ratio": round(hot.email_ratio, 3)}
            log(f"kiosk: {hot.visitors:,} visitors, own devices {hot.own_devices_s:.2f} s, one kiosk "
                f"{hot.kiosk_s:.2f} s (ratio {hot.ratio:.2f}), one e-mail {hot.shared_email_s:.2f} s "
                f"(ratio {hot.email_ratio:.2f})")

        if args.collector_requests > 0:
            collect = collector.measure(self.settings("bench_collect"), self.workdir, args.collector_requests,
                                        args.collector_batch, args.collector_concurrency)
            self.result["collector"] = collect
            log(f"collector: {collect['requests_per_s']:,.0f} requests/s, {collect['events_per_s']:,.0f} events/s, "
                f"p50 {collect['p50_ms']} ms, p99 {collect['p99_ms']} ms")
        if args.text_events > 0:
            cost = text_cost.measure(args.text_events, args.seed)
            self.result["text_cost"] = cost.as_dict()
            log(f"text signals: {cost.as_dict()}")
        if args.alert_events > 0:
            alerts = alert_cost.measure(args.alert_events, args.seed)
            self.result["alert_cost"] = alerts.as_dict()
            log(f"alert path: {alerts.alerts_us_per_event} us per event on {alerts.resolver_us_per_event} us of "
                f"the resolver: ratio {alerts.ratio_to_resolver} (budget 1.10); {alerts.as_dict()}")
        if args.serial_events > 0:
            serial = serial_share.measure(args.serial_events, args.seed, worker_eps=one["events_per_s"],
                                          order=args.order)
            self.result["serial_share"] = serial
            log(f"serial share: {serial['serial_share']} of events need the graph owner, "
                f"{serial['owner_us_per_owner_event']} us each: ceiling {serial['serial_ceiling_eps']:,}/s; {serial}")
        if args.split_events > 0:
            split = split_inproc.run(args.split_events, fronts=4, partitions=4, lag=1, seed=args.seed,
                                     order=args.order)
            split["check"] = {"ok": all(split["check"].values()), **split["check"]}
            self.result["split_stages"] = split
            log(f"split stages: {split}")

        self.result["elapsed_s"] = round(time.monotonic() - started, 1)
        self.result["load_average_at_end"] = procstat.load_average()
        return self.result

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


WORKER_METRICS = ("cem_events_in_total", "cem_events_resolved_total", "cem_duplicates_dropped_total",
                  "cem_deadletter_total", "cem_identities_merged_total", "cem_identity_recomputes_total",
                  "cem_sink_batch_duration_seconds_sum", "cem_sink_batch_duration_seconds_count")


def _worker_metrics(samples: dict[str, float]) -> dict[str, float]:
    out = {name: samples[name] for name in WORKER_METRICS if name in samples}
    count = out.get("cem_sink_batch_duration_seconds_count", 0.0)
    if count:
        out["sink_batch_mean_s"] = round(out["cem_sink_batch_duration_seconds_sum"] / count, 4)
        out["events_per_sink_batch"] = round(out.get("cem_events_resolved_total", 0.0) / count, 1)
    return out


def _await_counted(workers: list[Any], expected: int) -> None:
    """A batch's rows are visible before the worker counts it: wait (briefly) until the workers' counters hold
    every unique event, so that the per-event figures read from them cover the whole phase."""
    try:
        wait_until(lambda: sum(metric_value(w.metrics_text(), "cem_identity_events_total") for w in workers)
                   >= expected, 10, "", interval=0.2)
    except TimeoutError:
        log("the workers' counters do not hold every event yet; the per-event figures cover part of the phase")


def _identity_costs(text: str) -> dict[str, float]:
    """The live serial share: of the events this worker attributed, those that needed the graph's owner; and, with
    the replica on, of the events its ingest asked its replica about, those a front would have sent to the owner.
    With them, what the resolver measured of its own CPU: the graph's per event that needed the owner (and the
    serial ceiling it implies), and the whole resolver's per event resolved (and today's single-resolver cap)."""
    out: dict[str, float] = {}
    attributed = metric_value(text, "cem_identity_events_total")
    if attributed:
        local = metric_value(text, "cem_identity_events_total", {"outcome": "local"})
        out.update(identity_events_attributed=attributed, live_owner_share=round(1 - local / attributed, 4))
        owner_seconds = metric_value(text, "cem_identity_graph_seconds_total", {"need": "owner"})
        if owner_seconds and attributed > local:
            out.update(live_owner_us_per_owner_event=round(owner_seconds / (attributed - local) * 1e6, 1),
                       live_serial_ceiling_eps=round(attributed / owner_seconds))
    asked = metric_value(text, "cem_identity_front_answers_total")
    if asked:
        local = metric_value(text, "cem_identity_front_answers_total", {"answer": "local"})
        out.update(front_events_asked=asked, front_owner_share=round(1 - local / asked, 4))
    resolved = metric_value(text, "cem_events_resolved_total")
    cpu = metric_value(text, "cem_resolver_cpu_seconds_total")
    if resolved and cpu:
        out.update(resolver_cpu_us_per_event=round(cpu / resolved * 1e6, 1), resolver_ceiling_eps=round(resolved / cpu),
                   **{f"resolver_cpu_s_{step}": round(metric_value(text, "cem_resolver_cpu_seconds_total",
                                                                   {"step": step}), 2)
                      for step in ("resolve", "columns", "insert", "state")})
    return out


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    k = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))  # nearest-rank percentile
    return round(values[k], 3)


def _rss_growth(mem: dict[str, Any]) -> dict[str, Any]:
    """MB of RSS per 100k resolved events, fitted (least squares) over the second half of the run, and the
    peak extrapolated to 1M events."""
    samples = [s for s in mem.get("rss_samples", []) if s["rss_mb"] is not None and s["resolved"] > 0]
    peak = next(iter(mem["per_worker"].values()))["peak_rss_mb"]
    base = next(iter(mem["per_worker"].values()))["rss_at_first_record_mb"]
    half = samples[len(samples) // 2:]
    if len(half) < 2 or mem.get("incomplete"):
        return {"peak_rss_mb": peak, "rss_at_first_record_mb": base}
    xs = [s["resolved"] for s in half]
    ys = [s["rss_mb"] for s in half]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    per_100k = slope * 100_000
    events = round(mem["records"] * min(1.0, mem["rows_visible"] / mem["unique_valid"]))
    return {"peak_rss_mb": peak, "rss_at_first_record_mb": base, "mb_per_100k_events": round(per_100k, 1),
            "events": events, "customers": mem["customers"],
            "peak_extrapolated_to_1m_events_mb": round(peak + slope * max(0, 1_000_000 - events), 0)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_head() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=False).stdout.split("\n")
        changed = sorted(line[3:] for line in dirty if line.strip())
        return head + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")
    except OSError:
        return ""


def summary_table(r: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []

    def add(name: str, value: str, note: str = "") -> None:
        rows.append((name, value, note))

    bare, one = r["bare_faust"], r["throughput_1w"]
    add("code under test", r["code_under_test"], f"git {r['machine']['git']}")
    add("records (unique valid)", f"{one['records']:,} ({one['unique_valid']:,})",
        f"{one['customers']:,} customers, 5% duplicates, mixed JSON/Avro")
    add("bare Faust ceiling", f"{bare['events_per_s']:,.0f}/s", f"{bare['mode']} loop, decode only; "
        f"cpu {_cpu_note(bare['cpu_seconds'], 'bare_faust')}")
    if "bare_faust_take" in r or "bare_faust_events" in r:
        other = r.get("bare_faust_take") or r["bare_faust_events"]
        add(f"bare Faust ({other['mode']})", f"{other['events_per_s']:,.0f}/s", "diagnostic")
    add("pipeline, 1 worker", f"{one['events_per_s']:,.0f}/s" + (" INCOMPLETE" if one.get("incomplete") else ""),
        f"consumed -> rows visible in {one['seconds']:.1f} s; "
        f"cpu {_cpu_note(one['cpu_seconds'], 'throughput-worker0')}")
    add("ratio vs bare Faust", f"{r['ratio_vs_bare_faust']:.2f}", "target >= 0.7")
    if "latency" in r:
        lat = r["latency"]
        add("latency p50 / p95 / p99", f"{lat['p50_s']} / {lat['p95_s']} / {lat['p99_s']} s",
            f"at {lat['achieved_rate']:,.0f}/s, {lat['events_measured']:,} events, poll {lat['poll_interval_s']} s; "
            "target p99 <= 2 s")
    if "latency_shuffled" in r:
        lat = r["latency_shuffled"]
        add("latency, shuffled order", f"{lat['p50_s']} / {lat['p95_s']} / {lat['p99_s']} s",
            f"at {lat['achieved_rate']:,.0f}/s, records in random order over their time span; target p99 <= 1 s")
    if "throughput_2w" in r:
        two = r["throughput_2w"]
        add("pipeline, 2 workers", f"{two['events_per_s']:,.0f}/s" + (" INCOMPLETE" if two.get("incomplete") else ""),
            f"cpu {_cpu_note(two['cpu_seconds'], 'scaling-worker0', 'scaling-worker1')}")
        add("scale 2w / 1w", f"{r['scale_2w']:.2f}", "target >= 1.7 (2 cores shared with Kafka and ClickHouse)")
        if "scale_2w_bound" in r:
            b = r["scale_2w_bound"]
            add("scale 2w bound: spent CPU / free split", f"{b['at_spent_cpu']:.2f} / {b['free_split']:.2f}",
                f"all cores busy at the pipeline CPU per event of the 2-worker / 1-worker phase (bench/cpu_budget.py);"
                f" 2 workers kept {b['busy_cores']:.2f} cores busy, {b['extra_cpu']:+.0%} CPU per event")
        if "fill_and_drain" in two:
            fd = two["fill_and_drain"]
            add("2 workers: fill / drain", f"{fd['fill_s']:.2f} / {fd['drain_s']:.2f} s",
                f"first row after {fd['fill_s']:.2f} s, last row {fd['drain_s']:.2f} s after the last record consumed: "
                f"both stages at work {fd['overlap_share']:.0%} of {fd['phase_s']:.1f} s (bench/pipeline_timeline.py)")
    if "scale_2w_split" in r:
        one_split, two_split = r["split_throughput_1w"], r["split_throughput_2w"]
        add("split resolver, 1 / 2 workers", f"{one_split['events_per_s']:,.0f} / {two_split['events_per_s']:,.0f}/s",
            f"CEM_SPLIT_PARTITIONS={r.get('split_partitions', '?')}: scale {r['scale_2w_split']:.2f}; "
            f"cpu 2w {_cpu_note(two_split['cpu_seconds'], 'split-2w-worker0', 'split-2w-worker1')}")
    if "memory" in r:
        g = r["memory"]["rss_growth"]
        add("memory: peak RSS", f"{g['peak_rss_mb']:.0f} MB" + (" INCOMPLETE" if r["memory"].get("incomplete") else ""),
            f"{r['memory']['records']:,} events / {r['memory']['customers']:,} customers; "
            f"{g.get('mb_per_100k_events', '?')} MB per 100k events; "
            f"~{g.get('peak_extrapolated_to_1m_events_mb', '?')} MB at 1M")
    if "views" in r:
        v = r["views"]
        for name in ("per_channel_count", "customer_timeline", "customer_timeline_direct"):
            add(f"view cost: {name.replace('_', ' ')}", f"{v['before_squash'][name]['ratio']:.2f}",
                f"interactions / interaction_log, no squash; {v['interaction_rows']:,} rows, "
                f"overrides {v['overrides_by_kind']}; target <= 2")
    if "kiosk" in r:
        hot = r["kiosk"]
        add("kiosk: one device / own devices", f"{hot['ratio']:.2f}", f"{hot['visitors']:,} visitors, "
            f"{hot['kiosk_s']:.2f} s vs {hot['own_devices_s']:.2f} s in-process; target <= 2")
        add("kiosk: one e-mail / own devices", f"{hot['email_ratio']:.2f}",
            f"{hot['shared_email_s']:.2f} s; target <= 2")
    if "collector" in r:
        c = r["collector"]
        add("collector: batch posts", f"{c['requests_per_s']:,.0f}/s, {c['events_per_s']:,.0f} events/s",
            f"{c['events_per_request']} events per post, {c['concurrency']} clients; p50 {c['p50_ms']} ms, "
            f"p99 {c['p99_ms']} ms (200 = on Kafka)")
    if "text_cost" in r:
        t = r["text_cost"]
        add("enrichment per event: before / with text",
            f"{t['old_us_per_event']} / {t['old_and_text_us_per_event']} us",
            f"x{t['ratio_to_old']}; +{t['added_us_per_text']} us per text ({t['with_text']:,} of {t['events']:,} "
            f"events); a new text: VADER {t['vader_us_per_unique_text']} us, with text signals "
            f"{t['vader_and_text_us_per_unique_text']} us")
    if "alert_cost" in r:
        a = r["alert_cost"]
        add("resolver per event: without / with alerts",
            f"{a['resolver_us_per_event']} / {a['resolver_and_alerts_us_per_event']} us",
            f"x{a['ratio_to_resolver']} (budget 1.10); with ingest x{a['ratio_to_in_process']}; "
            f"{a['alerts_raised']:,} alert revisions on {a['events']:,} events")
    if "serial_share" in r:
        s = r["serial_share"]
        add("serial share: events needing the owner", f"{s['serial_share']:.1%}",
            f"owner {s['owner_us_per_owner_event']} us per such event, partitionable {s['partitioned_us_per_event']} "
            f"us per event; serial ceiling {s['serial_ceiling_eps']:,}/s; projected "
            + ", ".join(f"{p['partitions']}p {p['projected_eps']:,}/s" for p in s["projection"]["simulated"]))
    if "split_stages" in r:
        t = r["split_stages"]
        add("split stages (4 fronts, 4 partitions): owner asked about", f"{t['serial_share']:.1%}",
            f"owner {t['owner_us_per_request']} us per request, serial ceiling {t['serial_ceiling_eps']:,}/s; "
            f"front {t['front_us_per_event']} + partition {t['partition_us_per_event']} us per event vs the single "
            f"resolver's {t['single_resolver_us_per_event']}; {t['handoffs']:,} hand-offs; sessions and journeys "
            + ("equal" if t["sessions_and_journeys_equal_the_single_resolvers"] else "DIFFER"))
    live = [w["metrics"] for w in r["throughput_1w"].get("per_worker", {}).values()
            if "live_owner_share" in w["metrics"]]
    if live:
        m = live[0]
        add("live share needing the owner", f"{m['live_owner_share']:.1%}",
            f"of {m['identity_events_attributed']:,.0f} events the pipeline attributed (cem_identity_events_total)"
            + (f"; a front would have sent {m['front_owner_share']:.1%} to the owner (replica on)"
               if "front_owner_share" in m else ""))
        if "live_serial_ceiling_eps" in m:
            add("live owner cost and serial ceiling", f"{m['live_serial_ceiling_eps']:,.0f}/s",
                f"the graph's CPU {m['live_owner_us_per_owner_event']} us per event needing the owner "
                "(cem_identity_graph_seconds_total)")
        if "resolver_ceiling_eps" in m:
            add("live single-resolver cap", f"{m['resolver_ceiling_eps']:,.0f}/s",
                f"the resolver's CPU {m['resolver_cpu_us_per_event']} us per event resolved: resolve "
                f"{m['resolver_cpu_s_resolve']}s, columns {m['resolver_cpu_s_columns']}s, insert "
                f"{m['resolver_cpu_s_insert']}s, state {m['resolver_cpu_s_state']}s (cem_resolver_cpu_seconds_total)")
    checks = [v["check"]["ok"] for k, v in r.items() if isinstance(v, dict) and "check" in v]
    done = [c for c in checks if c is not None]
    add("self-check rows == unique valid", ("OK" if all(done) else "FAILED") if done else "n/a",
        f"{len(done)} phases checked" + (f", {len(checks) - len(done)} INCOMPLETE (not checked)"
                                         if len(done) < len(checks) else ""))
    if "latency_skipped" in r:
        add("latency", "skipped", r["latency_skipped"])
    add("load average start / end", f"{r['machine']['load_average_at_start']} / {r.get('load_average_at_end')}",
        f"{r['machine']['cores']} cores")
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{width[0]}}  {b:>{width[1]}}  {c}" for a, b, c in rows]
    rule = "-" * min(120, max(len(line) for line in lines))
    return "\n".join([rule, *lines, rule])


def _cpu_note(cpu: dict[str, float], *workers: str) -> str:
    parts = [f"{w.rsplit('-', 1)[-1]} {cpu.get(w, 0):.1f}s" for w in workers if w in cpu]
    parts += [f"kafka {cpu.get('kafka', 0):.1f}s", f"clickhouse {cpu.get('clickhouse', 0):.1f}s",
              f"other {cpu.get('other_processes', 0):.1f}s", f"wall {cpu.get('wall', 0):.1f}s"]
    return ", ".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000, help="records pre-produced for phases 1, 2 and 4")
    p.add_argument("--quick", action="store_true", help="small smoke run: 20k events, 10 s latency, 20k memory")
    p.add_argument("--latency-seconds", type=float, default=30.0, help="how long the fixed-rate produce lasts")
    p.add_argument("--latency-fraction", type=float, default=0.5, help="fixed rate as a fraction of phase 2")
    p.add_argument("--poll-ms", type=float, default=50.0, help="ClickHouse poll interval of the latency phase")
    p.add_argument("--memory-events", type=int, default=200_000, help="events of the memory phase (0: skip)")
    p.add_argument("--memory-customers", type=int, default=0, help="customers of the memory phase "
                   "(default: events / 5, the 1M-events-from-200k-customers density)")
    p.add_argument("--bare-mode", choices=["events", "take"], default="events",
                   help="bare agent loop: one turn per record (default) or take_events batches")
    p.add_argument("--bare-both", action="store_true", help="also measure the other bare-Faust loop")
    p.add_argument("--kiosk-visitors", type=int, default=10_000, help="visitors of the in-process kiosk phase "
                   "(0: skip)")
    p.add_argument("--collector-requests", type=int, default=2_000, help="batch posts of the collector phase "
                   "(0: skip)")
    p.add_argument("--collector-batch", type=int, default=100, help="events per post (the SDKs' default batch)")
    p.add_argument("--collector-concurrency", type=int, default=8, help="concurrent HTTP clients")
    p.add_argument("--text-events", type=int, default=20_000, help="events of the in-process enrichment-cost phase "
                   "(bench/text_cost.py: VADER and user agents, then with text signals; 0: skip)")
    p.add_argument("--alert-events", type=int, default=20_000, help="events of the in-process alert-cost phase "
                   "(bench/alert_cost.py: the resolver without and with the alert engine; 0: skip)")
    p.add_argument("--serial-events", type=int, default=20_000, help="events of the in-process serial-share phase "
                   "(bench/serial_share.py: what must stay with the identity graph's owner; 0: skip)")
    p.add_argument("--split-events", type=int, default=20_000, help="events of the in-process split-stages phase "
                   "(bench/split_inproc.py: the partitioned stages against the single resolver; 0: skip)")
    p.add_argument("--split-partitions", type=int, default=4, help="partitions of the split resolver's scaling "
                   "phase: 1 then 2 workers with CEM_SPLIT_PARTITIONS (0: skip)")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--skip-shuffled", action="store_true", help="skip the latency phase's second, shuffled run")
    p.add_argument("--profile", action="store_true",
                   help="py-spy the workers during the throughput, scaling and latency phases "
                   "(bench/results/profile-<phase>[-worker<i>].txt, collapsed stacks; "
                   "summarise with python -m bench.profile)")
    p.add_argument("--with-proposals", default="", metavar="NAME[,NAME]",
                   help="what-if: run the workers with these bench/proposals patches applied ("
                   + ", ".join(PROPOSALS) + "); the summary says so")
    p.add_argument("--order", choices=ORDERS, default="time",
                   help="delivery order: event time plus realistic lateness (default), or the simulator's full "
                   "shuffle of its five days (the identity graph's worst case)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="a worker setting for this run, e.g. --set sink_flush_seconds=0.3 (repeatable)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--phase-limit", type=float, default=150.0,
                   help="seconds a pipeline phase may run; past it the rate so far is reported, flagged INCOMPLETE "
                   "(keeps make bench under 15 minutes even when the code under test is very slow)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before a stuck phase is abandoned")
    p.add_argument("--workdir", help="keep services' data here instead of a temp dir")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json")
    args = p.parse_args(argv)
    if args.quick:
        args.events = min(args.events, 20_000)
        args.latency_seconds = min(args.latency_seconds, 10.0)
        args.memory_events = min(args.memory_events, 20_000)
        args.collector_requests = min(args.collector_requests, 200)
    known_fields = {f.name for f in fields(Settings)}
    for item in args.overrides:
        name = item.split("=", 1)[0]
        if "=" not in item or name not in known_fields:
            p.error(f"--set {item!r}: expected FIELD=VALUE with a Settings field ({', '.join(sorted(known_fields))})")
    unknown = [n for n in args.with_proposals.split(",") if n and n not in PROPOSALS]
    if unknown:
        p.error(f"unknown proposals {unknown}; known: {sorted(PROPOSALS)}")
    if args.memory_customers <= 0:
        args.memory_customers = max(1, args.memory_events // 5)
    return args


def main(argv: list[str] | None = None) -> int:
    tune_garbage_collector()  # measure what a worker pays
    args = parse_args(argv)
    # Producing right after topic creation meets NotLeaderForPartition until the partitions are loaded; aiokafka
    # retries those, and its warnings would bury the benchmark's own output.
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    bench = Bench(args)
    try:
        result = bench.run()
    except BaseException:
        log(f"failed; logs kept in {bench.workdir}")
        args.keep = True
        raise
    finally:
        bench.close()
    result["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in result["config"].items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(summary_table(result))
    print(f"results: {args.out}")
    checks_ok = all(v["check"]["ok"] is not False for v in result.values() if isinstance(v, dict) and "check" in v)
    incomplete = [k for k, v in result.items() if isinstance(v, dict) and v.get("incomplete")]
    if incomplete:
        print(f"WARNING: phases cut at --phase-limit: {', '.join(incomplete)}; their rates are partial")
    p99 = result.get("latency", {}).get("p99_s")
    p99_shuffled = result.get("latency_shuffled", {}).get("p99_s")
    serial = result.get("serial_share", {})
    print(f"ratio_vs_bare_faust={result['ratio_vs_bare_faust']:.2f} "
          f"p99_latency_s={p99 if p99 is not None else float('nan'):.2f} "
          f"p99_shuffled_s={p99_shuffled if p99_shuffled is not None else float('nan'):.2f} "
          f"scale_2w={result.get('scale_2w', float('nan')):.2f} "
          f"scale_2w_cpu_bound={result.get('scale_2w_bound', {}).get('at_spent_cpu', float('nan')):.2f} "
          f"scale_2w_split={result.get('scale_2w_split', float('nan')):.2f} "
          f"serial_share={serial.get('serial_share', float('nan')):.4f} "
          f"serial_ceiling_eps={serial.get('serial_ceiling_eps', float('nan')):.0f}", flush=True)
    return 0 if checks_ok else 1


if __name__ == "__main__":
    sys.exit(main())

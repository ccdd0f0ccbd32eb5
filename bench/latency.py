"""`make bench`'s latency phase: records produced at a fixed rate to a running worker, each record's send time
against the time its row became visible in ClickHouse (polled every --poll-ms)."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any

from bench import procstat
from bench.harness import Bench, log, pid_of, start_profiler, stop_profiler
from bench.traffic import TrafficSet, produce_at_rate
from bench.worker_figures import percentile, worker_metrics
from cem.settings import Settings
from devtools.harness import WorkerProcess

# Latency over the run is reported by send time in windows this long: a growing p50 means the pipeline fell behind.
WINDOW_SECONDS = 5


class VisibilityPoller:
    """When each batch's rows became visible: each batch's interaction rows share one `version`, strictly
    increasing from batch to batch, and a batch is written only after the previous one's write returned, so only
    the newest version can still be growing (an insert spanning two monthly partitions lands as two parts). Each
    poll is one small GROUP BY over versions >= the newest seen; event ids are read once, at the end."""

    def __init__(self, bench: Bench, db: str, poll_s: float) -> None:
        self.bench, self.db, self.poll_s = bench, db, poll_s
        client = bench.client()
        (self.start_version,), = client.execute(f"SELECT max(version) FROM {db}.interaction_log")
        client.disconnect()
        # version -> poll-start time of the poll that saw its row count grow last (the batch complete)
        self.complete_at: dict[int, float] = {}
        self.poll_costs: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="latency-poller", daemon=True)

    def start(self) -> VisibilityPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _poll(self) -> None:
        client = self.bench.client()
        counts: dict[int, int] = {}
        newest = self.start_version + 1
        try:
            while not self._stop.is_set():
                started = time.time()
                for v, n in client.execute(f"SELECT version, count() FROM {self.db}.interaction_log "
                                           f"WHERE version >= {newest} GROUP BY version"):
                    if n > counts.get(v, 0):
                        counts[v] = n
                        self.complete_at[v] = started
                        newest = max(newest, v)
                self.poll_costs.append(time.time() - started)
                self._stop.wait(max(0.0, self.poll_s - (time.time() - started)))
        finally:
            client.disconnect()

    def visible_and_resolved(self) -> tuple[dict[str, float], dict[str, float]]:
        """Per event id: when its row became visible, and its row's ingested_ms (when the resolver took its
        batch)."""
        visible_at: dict[str, float] = {}
        resolved_at: dict[str, float] = {}
        client = self.bench.client()
        try:
            for event_id, version, ingested_ms in client.execute(
                    f"SELECT event_id, version, ingested_ms FROM {self.db}.interaction_log "
                    f"WHERE version > {self.start_version}"):
                if version in self.complete_at:
                    visible_at[event_id] = self.complete_at[version]
                    resolved_at[event_id] = ingested_ms / 1000
        finally:
            client.disconnect()
        return visible_at, resolved_at


def measure(bench: Bench, settings: Settings, worker: WorkerProcess, rate: float, traffic: TrafficSet,
            rows_before: int) -> dict[str, Any]:
    db = settings.clickhouse_url.rsplit("/", 1)[-1]
    poll_s = bench.args.poll_ms / 1000
    load = procstat.load_average()
    poller = VisibilityPoller(bench, db, poll_s).start()
    meter = procstat.CpuMeter({**bench.service_pids(), worker.name: pid_of(worker)}).start()
    metrics_before = worker.metrics()
    profiler = start_profiler(pid_of(worker), "latency") if bench.args.profile else None
    sent_at: list[float] = []
    achieved = asyncio.run(produce_at_rate(settings, traffic.to_topics(settings), rate, sent_at))
    log(f"latency: produced {len(sent_at)} records at {achieved:,.0f}/s (target {rate:,.0f}/s)")
    first_sent: dict[str, float] = {}
    for event_id, at in zip(traffic.event_ids, sent_at, strict=True):
        if event_id is not None and event_id not in first_sent:
            first_sent[event_id] = at
    client = bench.client()
    try:
        deadline = time.monotonic() + 120
        while bench.count_rows(client, db) < rows_before + traffic.unique_valid and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3 * poll_s)  # let the poller see the last batch too
        poller.stop()
        cpu = meter.stop()
        visible_at, resolved_at = poller.visible_and_resolved()
        if profiler is not None:
            stop_profiler(profiler)
        metrics_after = worker.metrics()
        check = bench.check_unique(client, db, rows_before + traffic.unique_valid)
    finally:
        client.disconnect()
    sink = worker_metrics({k: metrics_after[k] - metrics_before.get(k, 0.0) for k in metrics_after})
    latencies = sorted(visible_at[e] - t for e, t in first_sent.items() if e in visible_at)
    out = {
        "target_rate": round(rate, 1), "achieved_rate": round(achieved, 1), "records": len(sent_at),
        "events_measured": len(latencies), "events_missing": traffic.unique_valid - len(latencies),
        "poll_interval_s": poll_s,
        "poll_query_s_median": round(statistics.median(poller.poll_costs), 4) if poller.poll_costs else None,
        "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95), "p99_s": percentile(latencies, 99),
        "max_s": round(latencies[-1], 3) if latencies else None, "cpu_seconds": cpu, "load_average": load,
        "stages": stages(first_sent, resolved_at, visible_at), "timeline": timeline(first_sent, visible_at),
        "worker_metrics": sink, "check": check,
    }
    log(f"latency at {achieved:,.0f}/s: p50 {out['p50_s']} s, p95 {out['p95_s']} s, p99 {out['p99_s']} s, "
        f"max {out['max_s']} s ({len(latencies)} events, {out['events_missing']} missing; poll every "
        f"{poll_s * 1000:.0f} ms, median poll {out['poll_query_s_median']} s); stages {out['stages']}; cpu {cpu}; "
        f"worker {sink}")
    log(f"latency by send time ({WINDOW_SECONDS} s windows): "
        + ", ".join(f"{w['from_s']}s:{w['p50_s']}/{w['p99_s']}" for w in out["timeline"]))
    return out


def stages(first_sent: dict[str, float], resolved_at: dict[str, float],
           visible_at: dict[str, float]) -> dict[str, float | None]:
    """Where the time goes: send -> the resolver takes the batch (ingest batching, the cem.resolve hop, the
    resolver's take() wait), then -> the row is visible (resolve, ClickHouse write, poll resolution)."""
    to_resolver = sorted(resolved_at[e] - t for e, t in first_sent.items() if e in resolved_at)
    to_visible = sorted(visible_at[e] - resolved_at[e] for e in first_sent if e in visible_at)
    return {"send_to_resolver_p50_s": percentile(to_resolver, 50),
            "send_to_resolver_p99_s": percentile(to_resolver, 99),
            "resolver_to_visible_p50_s": percentile(to_visible, 50),
            "resolver_to_visible_p99_s": percentile(to_visible, 99)}


def timeline(first_sent: dict[str, float], visible_at: dict[str, float]) -> list[dict[str, Any]]:
    """p50 and p99 of the events sent in each window of WINDOW_SECONDS, from the first send on."""
    start = min(first_sent.values(), default=0.0)
    windows: dict[int, list[float]] = {}
    for e, t in first_sent.items():
        if e in visible_at:
            windows.setdefault(int((t - start) // WINDOW_SECONDS), []).append(visible_at[e] - t)
    return [{"from_s": k * WINDOW_SECONDS, "events": len(v), "p50_s": percentile(sorted(v), 50),
             "p99_s": percentile(sorted(v), 99)} for k, v in sorted(windows.items())]

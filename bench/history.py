"""`make bench-history`: what a long history costs a worker. One run, on Apache Kafka and a ClickHouse server:

    python -m bench.history [--customers-1m 200000] [--customers-3m 600000] [--days 120] [--quick]
                            [--set FIELD=VALUE ...]

  1. ratio       bare Faust against one worker on the same records (as `make bench`, smaller)
  2. 1M          1M events from 200k customers over --days of event time, one worker: peak RSS
  3. restore     a worker restarted on the same disk, then one on an empty disk taking over: the time its state
                 took to be ready (`cem_state_restore_seconds`), each on a few new events that wake the resolver
  4. views       `cem.interactions` against `cem.interaction_log` (bench/views.py)
  5. 3M          2M more events from 400k more customers, on the worker that took over: peak RSS, then (3), (4)
  6. side rows   rows of each side table per event

The last line is `rss_1m_mb=… rss_3m_mb=… restore_same_disk_s=… restore_new_disk_s=… view_cost_ratio=…
ratio_vs_bare_faust=…` (restores and view ratio at 3M). Results go to bench/results/history-latest.json.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from bench import views
from bench.harness import RESULTS_DIR, Bench, bench_worker, log
from bench.traffic import many_customers, simulated
from cem.settings import Settings
from devtools.harness import wait_until

SIDE_TABLES = ("identity_sets", "identity_links", "id_aliases", "customer_merges", "customer_log", "session_log",
               "journey_log", "overrides", "resolver_batches")
EVENTS_PER_CUSTOMER = 5


class History(Bench):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.expected = 0  # unique valid events the history database must hold
        self.probes = 0

    def stage(self, settings: Settings, customers: int, offset: int, label: str) -> dict[str, Any]:
        traffic = many_customers(customers, EVENTS_PER_CUSTOMER, self.args.seed + offset, 5_000_000 + offset,
                                 self.base_ms - self.args.days * 86_400_000, spread_days=self.args.days)
        log(f"{label}: {len(traffic.records):,} records, {traffic.unique_valid:,} unique, {customers:,} customers")
        self.produce(settings, traffic)
        self.expected += traffic.unique_valid
        cumulative = replace(traffic, unique_valid=self.expected)
        limit = self.args.phase_limit * max(1.0, len(traffic.records) / 200_000)
        out, _ = self.pipeline(settings, cumulative, 1, label, rss_samples=True, limit=limit)
        peak = max(w["peak_rss_mb"] for w in out["per_worker"].values())
        log(f"{label}: peak RSS {peak:.0f} MB, {out['events_per_s']:,.0f} records/s")
        return {"records": len(traffic.records), "unique": traffic.unique_valid, "peak_rss_mb": peak,
                "events_per_s": out["events_per_s"], "seconds": out["seconds"], "check": out["check"],
                "rss_samples": out.get("rss_samples", [])[-20:]}

    def restore(self, settings: Settings, state_dir: str, label: str) -> dict[str, Any]:
        """A worker on `state_dir` wakes its resolver with a few new events; the time its state took."""
        self.probes += 1
        probe = simulated(50, self.args.seed + 100 + self.probes, 9_000_000 + 1000 * self.probes, self.base_ms,
                          "time")
        worker = bench_worker(replace(settings, state_dir=state_dir), self.workdir / f"{label}.log", label)
        worker.spawn()
        try:
            wait_until(lambda: (worker.status() or {}).get("ready") is not None or worker.status() is not None, 120,
                       f"{label}: the worker did not start", workers=[worker])
            self.produce(settings, probe)
            self.expected += probe.unique_valid
            client = self.client()
            try:
                wait_until(lambda: self.count_rows(client, settings.clickhouse_url.rsplit("/", 1)[-1])
                           >= self.expected, self.args.timeout, f"{label}: probe events not written",
                           workers=[worker])
            finally:
                client.disconnect()
            metrics = worker.metrics()
        finally:
            worker.stop()
        seconds = float(metrics.get("cem_state_restore_seconds", -1))
        resumed = int(metrics.get("cem_state_resumed_total", 0))
        log(f"{label}: state ready in {seconds:.2f} s ({'resumed from disk' if resumed else 'rebuilt'})")
        return {"seconds": round(seconds, 3), "resumed": bool(resumed)}

    def side_rows(self, settings: Settings) -> dict[str, float]:
        db = settings.clickhouse_url.rsplit("/", 1)[-1]
        client = self.client()
        try:
            events = self.count_rows(client, db)
            return {t: round(int(client.execute(f"SELECT count() FROM {db}.{t}")[0][0]) / events, 3)
                    for t in SIDE_TABLES}
        finally:
            client.disconnect()

    def run(self) -> dict[str, Any]:
        args = self.args
        started = time.monotonic()
        self.start_services()
        small = simulated(args.ratio_events, args.seed, 0, self.base_ms, "time")
        a = self.settings("hist_ratio")
        self.produce(a, small)
        bare = self.bare_faust(a, small, "events")
        one, _ = self.pipeline(a, small, 1, "ratio")
        self.result["ratio_vs_bare_faust"] = round(one["events_per_s"] / bare["events_per_s"], 3)
        log(f"ratio to bare Faust: {self.result['ratio_vs_bare_faust']}")

        h = self.settings("hist")
        first_disk = f"{h.state_dir}/first"
        self.result["at_1m"] = self.stage(replace(h, state_dir=first_disk), args.customers_1m, 0, "history-1m")
        # pipeline() runs its worker on <state_dir>/w0: the same disk again, then an empty one that takes over
        self.result["at_1m"]["restore_same_disk"] = self.restore(h, f"{first_disk}/w0", "restore-1m-same")
        second_disk = f"{h.state_dir}/second"
        self.result["at_1m"]["restore_new_disk"] = self.restore(h, f"{second_disk}/w0", "restore-1m-new")
        self.result["at_1m"]["views"] = views.measure(h.clickhouse_url)

        more = args.customers_3m - args.customers_1m
        self.result["at_3m"] = self.stage(replace(h, state_dir=second_disk), more, args.customers_1m, "history-3m")
        self.result["at_3m"]["restore_same_disk"] = self.restore(h, f"{second_disk}/w0", "restore-3m-same")
        self.result["at_3m"]["restore_new_disk"] = self.restore(h, f"{h.state_dir}/third/w0", "restore-3m-new")
        self.result["at_3m"]["views"] = views.measure(h.clickhouse_url)
        self.result["side_rows_per_event"] = self.side_rows(h)
        self.result["elapsed_s"] = round(time.monotonic() - started, 1)
        return self.result


def view_cost_ratio(measured: dict[str, Any]) -> float:
    """The worse of the view's two queries (the direct timeline, sinks/timeline.py, is reported beside it)."""
    return max(pair["ratio"] for name, pair in measured["before_squash"].items() if not name.endswith("_direct"))


def summary(r: dict[str, Any]) -> str:
    at3 = r["at_3m"]
    return (f"rss_1m_mb={r['at_1m']['peak_rss_mb']:.0f} rss_3m_mb={at3['peak_rss_mb']:.0f} "
            f"restore_same_disk_s={at3['restore_same_disk']['seconds']:.2f} "
            f"restore_new_disk_s={at3['restore_new_disk']['seconds']:.2f} "
            f"view_cost_ratio={view_cost_ratio(at3['views']):.2f} "
            f"ratio_vs_bare_faust={r['ratio_vs_bare_faust']:.2f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers-1m", type=int, default=200_000, help="customers of the first million events")
    p.add_argument("--customers-3m", type=int, default=600_000, help="customers after the second stage")
    p.add_argument("--days", type=int, default=120, help="days of event time the customers spread over")
    p.add_argument("--ratio-events", type=int, default=50_000, help="records of the ratio phase")
    p.add_argument("--quick", action="store_true", help="smoke run: 2k and 6k customers, 5k ratio records")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="a worker setting for this run, e.g. --set state_memory_mb=128 (repeatable)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--phase-limit", type=float, default=300.0, help="seconds per 200k records before a stage "
                   "reports what it reached")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--workdir")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "history-latest.json")
    args = p.parse_args(argv)
    if args.quick:
        args.customers_1m, args.customers_3m, args.ratio_events = 2_000, 6_000, 5_000
    # What Bench reads of `make bench`'s options, at their defaults there
    args.profile, args.with_proposals = False, ""
    bench = History(args)
    try:
        result = bench.run()
    finally:
        bench.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2, default=str))
    log(f"results in {args.out}")
    print(summary(result), flush=True)


if __name__ == "__main__":
    main()

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
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import orjson

from bench import alert_cost, collector, kiosk, latency, procstat, serial_share, split_inproc, text_cost, views
from bench.cpu_budget import scale_bound
from bench.harness import REPO, RESULTS_DIR, Bench, log
from bench.proposals import PROPOSALS
from bench.summary import last_line, phase_checks, summary_table
from bench.traffic import ORDERS, TrafficSet, many_customers, simulated, with_event_ids
from bench.worker_figures import rss_growth
from cem.settings import Settings
from cem.worker import tune_garbage_collector


class MakeBench(Bench):
    """`make bench`'s phases, in order, on one Kafka and one ClickHouse."""

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
        self.bare_ceiling(a, main)
        one = self.throughput_and_latency(a, main)
        if not args.skip_scaling:
            self.scaling(main, one)
        if args.memory_events > 0:
            self.memory()
        self.in_process(one["events_per_s"])
        self.result["elapsed_s"] = round(time.monotonic() - started, 1)
        self.result["load_average_at_end"] = procstat.load_average()
        return self.result

    def bare_ceiling(self, settings: Settings, traffic: TrafficSet) -> None:
        """Phase 1: a Faust app that only decodes the records, on the same records."""
        mode = self.args.bare_mode
        self.result["bare_faust"] = self.bare_faust(settings, traffic, mode)
        if self.args.bare_both:
            other = "take" if mode == "events" else "events"
            self.result["bare_faust_" + other] = self.bare_faust(settings, traffic, other)

    def throughput_and_latency(self, settings: Settings, traffic: TrafficSet) -> dict[str, Any]:
        """Phases 2 and 3: one worker drains the records, then stays up for the fixed-rate latency runs."""
        args = self.args
        one, workers = self.pipeline(settings, traffic, 1, "throughput", keep_running=not args.skip_latency)
        self.result["throughput_1w"] = one
        self.result["ratio_vs_bare_faust"] = round(one["events_per_s"] / self.result["bare_faust"]["events_per_s"], 3)
        if args.skip_latency:
            return one
        if one["incomplete"]:
            self.result["latency_skipped"] = "the throughput phase did not drain within --phase-limit"
            log("latency: SKIPPED, the throughput phase did not drain within its limit")
            return one
        rate = one["events_per_s"] * args.latency_fraction
        n = max(1000, int(rate * args.latency_seconds))
        in_order = with_event_ids(simulated(n, args.seed + 1, 1_000_000, self.base_ms, args.order))
        # The same rate again on traffic delivered in random order over its whole time span, as a backfill or a
        # replay arrives: every event may be late, so sessions, journeys and identity recompute.
        shuffled = with_event_ids(simulated(n, args.seed + 3, 3_000_000, self.base_ms, "shuffled"))
        try:
            self.result["latency"] = latency.measure(self, settings, workers[0], rate, in_order, traffic.unique_valid)
            if not args.skip_shuffled:
                self.result["latency_shuffled"] = latency.measure(
                    self, settings, workers[0], rate, shuffled, traffic.unique_valid + in_order.unique_valid)
        finally:
            workers[0].stop()
        return one

    def scaling(self, traffic: TrafficSet, one: dict[str, Any]) -> None:
        """Phase 4: two workers on a copy of the same records; then the split resolver, one worker and two."""
        b = self.settings("bench_b")
        self.produce(b, traffic)
        two, _ = self.pipeline(b, traffic, 2, "scaling")
        self.result["throughput_2w"] = two
        self.result["scale_2w"] = round(two["events_per_s"] / one["events_per_s"], 3)
        self.result["scale_2w_bound"] = scale_bound(
            one["events_per_s"], one["cpu_seconds"], two["events_per_s"], two["cpu_seconds"], one["records"],
            float(os.cpu_count() or 1)).as_dict()
        if self.args.split_partitions > 0:
            self.result["split_partitions"] = self.args.split_partitions
            self.split_scaling(traffic, self.args.split_partitions)

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

    def memory(self) -> None:
        """Phase 5: one worker over many customers with few events each; then the views on what it wrote."""
        args = self.args
        per_customer = max(5, round(args.memory_events / args.memory_customers))
        traffic = many_customers(args.memory_customers, per_customer, args.seed + 2, 2_000_000, self.base_ms,
                                 order=args.order)
        log(f"memory traffic: {len(traffic.records)} records, {traffic.unique_valid} unique, "
            f"{traffic.customers} customers")
        c = self.settings("bench_c")
        self.produce(c, traffic)
        # A bigger memory run (the 1M events) gets a proportionally longer limit.
        limit = args.phase_limit * max(1.0, len(traffic.records) / 200_000)
        mem, _ = self.pipeline(c, traffic, 1, "memory", rss_samples=True, limit=limit)
        mem["rss_growth"] = rss_growth(mem)
        self.result["memory"] = mem
        log(f"memory: {mem['rss_growth']}")
        self.result["views"] = views.measure(c.clickhouse_url)
        log(f"views: {self.result['views']}")

    def in_process(self, worker_eps: float) -> None:
        """Phases 6-11, in this process: the hot identifiers, the collector, and the costs per event."""
        args = self.args
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
        self.identity_in_process(worker_eps)

    def identity_in_process(self, worker_eps: float) -> None:
        """Phases 10 and 11: what must stay with the identity graph's owner, and the split's stages in process."""
        args = self.args
        if args.serial_events > 0:
            serial = serial_share.measure(args.serial_events, args.seed, worker_eps=worker_eps, order=args.order)
            self.result["serial_share"] = serial
            log(f"serial share: {serial['serial_share']} of events need the graph owner, "
                f"{serial['owner_us_per_owner_event']} us each: ceiling {serial['serial_ceiling_eps']:,}/s; {serial}")
        if args.split_events > 0:
            split = split_inproc.run(args.split_events, fronts=4, partitions=4, lag=1, seed=args.seed,
                                     order=args.order)
            split["check"] = {"ok": all(split["check"].values()), **split["check"]}
            self.result["split_stages"] = split
            log(f"split stages: {split}")


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    _phase_options(p)
    _run_options(p)
    return _checked(p, p.parse_args(argv))


def _phase_options(p: argparse.ArgumentParser) -> None:
    """How large each phase is (0 skips an optional one)."""
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


def _run_options(p: argparse.ArgumentParser) -> None:
    """What runs, how, and where the results go."""
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


def _checked(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """--quick applied, every --set and --with-proposals name known, the memory phase's customers defaulted."""
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
    bench = MakeBench(args)
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
    incomplete = [k for k, v in result.items() if isinstance(v, dict) and v.get("incomplete")]
    if incomplete:
        print(f"WARNING: phases cut at --phase-limit: {', '.join(incomplete)}; their rates are partial")
    print(last_line(result), flush=True)
    return 0 if all(ok is not False for ok in phase_checks(result)) else 1


if __name__ == "__main__":
    sys.exit(main())

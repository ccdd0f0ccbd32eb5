"""The resolver alone, in one process, with its state in dicts or in the disk store: time per event and peak RSS.

    python -m bench.state_probe [--customers N] [--memory-mb M] [--spread-days D] [--order time|partitions]

Each mode runs in its own child process (peak RSS is per process), on the same traffic: `many_customers`, five
events per customer, parsed by the worker's own ingest, in batches of 500 at one processing time. The disk mode
writes back after every batch, as the worker does. Run both in one invocation and compare the
ratio: this machine is shared and its absolute timings are noisy.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from bench.traffic import RawRecord, many_customers, parsed_interactions
from cem.config import resolver_config
from cem.domain.resolver import Resolver
from cem.domain.state_maps import in_memory_maps
from cem.settings import Settings
from cem.state_store import Checkpoint, StateStore

BASE_MS = 1_760_000_000_000
BATCH = 500


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def partition_order(records: list[RawRecord], partitions: int = 4, chunk: int = 500,
                    seed: int = 1) -> list[RawRecord]:
    """The order a worker reads records in: each channel's topic has `partitions` partitions (records placed by
    key), and the consumer takes up to `chunk` records from one partition at a time. A customer's events then
    arrive out of event-time order, across channels, as they do from Kafka."""
    queues: dict[tuple[str, int], list[RawRecord]] = {}
    for record in records:
        channel, key, _ = record
        queues.setdefault((channel, zlib.crc32(key or b"") % partitions), []).append(record)
    rng = random.Random(seed)
    pending = [queue[::-1] for queue in queues.values()]
    ordered: list[RawRecord] = []
    while pending:
        queue = rng.choice(pending)
        ordered.extend(queue.pop() for _ in range(min(chunk, len(queue))))
        pending = [q for q in pending if q]
    return ordered


def run_mode(mode: str, customers: int, memory_mb: int, spread_days: int, order: str) -> dict[str, float]:
    traffic = many_customers(customers, 5, 7, 2_000_000, BASE_MS, spread_days=spread_days)
    settings = Settings(state_store="memory")
    now_ms = BASE_MS + 200 * 86_400_000
    records = partition_order(traffic.records) if order == "partitions" else traffic.records
    events = parsed_interactions(records, settings, now_ms)
    del traffic
    gc.collect()
    before = _peak_mb()
    store = StateStore(Path(tempfile.mkdtemp(prefix="cem-state-probe-")), memory_mb) if mode == "disk" else None
    resolver = Resolver(resolver_config(settings), store.map if store is not None else in_memory_maps)
    started = time.perf_counter()
    for start in range(0, len(events), BATCH):
        batch = events[start:start + BATCH]
        effects = resolver.process(batch, now_ms + start)
        if store is not None:
            store.flush(Checkpoint(effects.version, "probe"))
    elapsed = time.perf_counter() - started
    return {"events": len(events), "us_per_event": elapsed / len(events) * 1e6, "rss_before_mb": before,
            "rss_peak_mb": _peak_mb()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--memory-mb", type=int, default=256)
    parser.add_argument("--spread-days", type=int, default=5, help="days of event time the customers spread over")
    parser.add_argument("--order", choices=["time", "partitions"], default="time",
                        help="time: event-time order; partitions: as a worker reads the channels' partitions")
    parser.add_argument("--mode", choices=["memory", "disk"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode:
        print(json.dumps(run_mode(args.mode, args.customers, args.memory_mb, args.spread_days, args.order)))
        return
    results = {}
    for mode in ("memory", "disk"):
        out = subprocess.run([sys.executable, "-m", "bench.state_probe", "--mode", mode, "--customers",
                              str(args.customers), "--memory-mb", str(args.memory_mb),
                              "--spread-days", str(args.spread_days), "--order", args.order],
                             check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
        print(f"{mode}: {results[mode]}")
    ratio = results["disk"]["us_per_event"] / results["memory"]["us_per_event"]
    print(f"state_probe events={results['memory']['events']} memory_us={results['memory']['us_per_event']:.1f} "
          f"disk_us={results['disk']['us_per_event']:.1f} disk_vs_memory={ratio:.2f}")


if __name__ == "__main__":
    main()

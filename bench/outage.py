"""`make bench-outage`: a worker's memory and speed while ClickHouse is down or slow.

    python -m bench.outage [--customers N] [--outage-seconds S] [--delay-ms D] [--keep]

The fault tests (tests/faults/test_clickhouse_outage.py) check what must hold whatever the machine: nothing
lost, nothing doubled, one batch held back, offsets not committed. How much memory and time that costs depends
on the machine and its load, so it is measured here, with the same traffic and settings as those tests:

  1. outage  one worker; half the records written, then ClickHouse stopped for --outage-seconds while the other
             half arrives; the worker's RSS sampled every second. The backlog must wait in Kafka: the peak and
             the growth over the RSS before the outage are compared with --rss-limit-mb and --rss-growth-limit-mb.
  2. slow    the same traffic through a TCP proxy (devtools.proxy) that adds --delay-ms each way to every packet
             of the native protocol, then without it: the mean sink batch time must grow by at least the two
             added round-trip delays, and records/s must drop.

The last line is `outage_peak_rss_mb=X outage_rss_growth_mb=Y slow_batch_s=A fast_batch_s=B`; the exit code is
1 when a bound is exceeded.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from cem.settings import Settings
from devtools.harness import WorkerProcess, isolated_settings, wait_until
from devtools.proxy import DelayProxy
from devtools.services import ClickHouseServer, KafkaBroker, require_clickhouse
from devtools.simulate import Simulator, recent_base_ms
from devtools.topics import drained, publish

RESULTS = Path(__file__).parent / "results" / "outage.json"


def log(message: str) -> None:
    print(f"[bench.outage {time.strftime('%H:%M:%S')}] {message}", flush=True)


def records(settings: Settings, customers: int, seed: int) -> list[tuple[str, bytes | None, bytes]]:
    return Simulator(customers=customers, seed=seed, base_time_ms=recent_base_ms()).run().topic_records(settings)


def outage(kafka: KafkaBroker, clickhouse: ClickHouseServer, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "outage", sink_retry_max_seconds=2.0)
    traffic = records(settings, args.customers, 23)
    half = len(traffic) // 2
    with WorkerProcess(settings, workdir / "outage-worker.log", "outage", state_dir=workdir / "outage-state") as w:
        publish(settings, traffic[:half])
        wait_until(lambda: (w.status() or {}).get("written", 0) >= half // 2, 120, "no progress", workers=[w])
        baseline = (w.rss_kb() or 0) / 1024
        clickhouse.stop()
        stopped = time.monotonic()
        publish(settings, traffic[half:])
        samples = []
        while time.monotonic() - stopped < args.outage_seconds:
            samples.append((w.rss_kb() or 0) / 1024)
            time.sleep(1.0)
        clickhouse.start()
        wait_until(lambda: drained(settings), 180, "not drained after the outage", workers=[w], settings=settings)
    peak = max(samples)
    result = {"records": len(traffic), "outage_s": args.outage_seconds, "rss_before_mb": round(baseline),
              "peak_rss_mb": round(peak), "rss_growth_mb": round(peak - baseline),
              "ok": peak <= args.rss_limit_mb and peak - baseline <= args.rss_growth_limit_mb}
    log(f"outage: RSS {result['rss_before_mb']} MB before, peak {result['peak_rss_mb']} MB (limit "
        f"{args.rss_limit_mb}), growth {result['rss_growth_mb']} MB (limit {args.rss_growth_limit_mb}) -> "
        f"{'OK' if result['ok'] else 'OVER'}")
    return result


def slow(kafka: KafkaBroker, clickhouse: ClickHouseServer, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    delay = args.delay_ms / 1000
    phases: list[dict[str, Any]] = []
    with DelayProxy(clickhouse.tcp_port) as proxy:
        for name, added in (("slow", delay), ("fast", 0.0)):
            proxy.delay = added
            settings = isolated_settings(kafka.bootstrap, f"clickhouse://default:@127.0.0.1:{proxy.port}/cem", name)
            traffic = records(settings, args.customers, 26)
            with WorkerProcess(settings, workdir / f"{name}-worker.log", name, state_dir=workdir / name) as w:
                started = time.monotonic()
                publish(settings, traffic)
                wait_until(partial(drained, settings), 300, f"{name}: not drained", workers=[w], settings=settings)
                elapsed = time.monotonic() - started
                metrics = w.metrics()
            batches = metrics.get("cem_sink_batch_duration_seconds_count", 0.0)
            seconds = metrics.get("cem_sink_batch_duration_seconds_sum", 0.0)
            phases.append({"phase": name, "delay_s": added, "records": len(traffic), "drain_s": round(elapsed, 1),
                           "records_per_s": round(len(traffic) / elapsed), "batches": int(batches),
                           "mean_batch_s": round(seconds / max(1.0, batches), 3)})
            log(f"{name}: {phases[-1]}")
    slowed, fast = phases
    ok = slowed["mean_batch_s"] >= fast["mean_batch_s"] + 2 * delay and slowed["records_per_s"] < fast["records_per_s"]
    return {"phases": phases, "ok": ok}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.outage", description=__doc__.split("\n\n")[0])
    p.add_argument("--customers", type=int, default=120, help="simulated customers per phase (as the fault tests)")
    p.add_argument("--outage-seconds", type=float, default=30.0)
    p.add_argument("--rss-limit-mb", type=float, default=800.0, help="a worker runs at ~150-250 MB here")
    p.add_argument("--rss-growth-limit-mb", type=float, default=150.0,
                   help="growth during the outage: one batch in flight, the rest waits in Kafka")
    p.add_argument("--delay-ms", type=float, default=150.0, help="added to every packet, each way, in the slow phase")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="cem-bench-outage-"))
    require_clickhouse()
    try:
        with KafkaBroker(workdir / "kafka") as kafka, ClickHouseServer(workdir / "clickhouse") as clickhouse:
            result = {"outage": outage(kafka, clickhouse, workdir, args),
                      "slow": slow(kafka, clickhouse, workdir, args)}
    except BaseException:
        log(f"failed; logs kept in {workdir}")
        raise
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    down, (slowed, fast) = result["outage"], result["slow"]["phases"]
    print(f"results: {args.out}")
    print(f"outage_peak_rss_mb={down['peak_rss_mb']} outage_rss_growth_mb={down['rss_growth_mb']} "
          f"slow_batch_s={slowed['mean_batch_s']} fast_batch_s={fast['mean_batch_s']}", flush=True)
    return 0 if result["outage"]["ok"] and result["slow"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

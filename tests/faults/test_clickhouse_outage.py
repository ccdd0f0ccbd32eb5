"""ClickHouse down, slow, and resetting connections.

Down: a private server is stopped for 30 s mid-stream, records keep arriving, then it is started again. While it
is down the sink retries with backoff and applies backpressure: the metrics show the outage, nothing more is
written, the resolver's offsets are not committed (its lag grows), and the worker holds one batch, which does not
grow: the backlog waits in Kafka. (The worker's memory during such an outage is measured by `python -m
bench.outage`: a bound on RSS depends on the machine and its load, so it is a benchmark figure, not a test.)

Slow: a TCP proxy between the worker and the server delays every packet; nothing is lost. (How much slower the
batches get is measured by `python -m bench.outage` too.)

Resets: the proxy drops some of the server's replies and resets the connection, so some inserts are committed
while the worker sees a failure. The retry must not write those rows twice.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from devtools.harness import wait_until
from devtools.proxy import DelayProxy
from devtools.scrape import metric_value
from devtools.services import ClickHouseServer
from devtools.topics import BackgroundPublisher, group_offsets, publish

pytestmark = [pytest.mark.faults, pytest.mark.integration]
OUTAGE_SECONDS = 30.0


def test_clickhouse_stopped_for_30_seconds_mid_stream(scenario, kafka, tmp_workdir) -> None:
    with ClickHouseServer(tmp_workdir("clickhouse-outage")) as server:
        s = scenario("chdown", kafka.bootstrap, server.url, customers=120, seed=23)
        half = len(s.records) // 2
        worker = s.start_worker()
        publish(s.settings, s.records[:half])
        wait_until(lambda: (worker.status() or {}).get("written", 0) >= 300, 90, "no progress", workers=[worker])
        baseline_rss = worker.rss_kb() or 0

        server.stop()
        stopped = time.monotonic()
        publish(s.settings, s.records[half:])  # the stream goes on while the warehouse is down
        samples: list[dict[str, Any]] = []
        while time.monotonic() - stopped < OUTAGE_SECONDS:
            text = worker.metrics_text()
            resolve_end, resolve_committed = group_offsets(s.settings, [s.settings.resolve_topic])[
                s.settings.resolve_topic]
            samples.append({
                "t": round(time.monotonic() - stopped, 1),
                "sink_up": metric_value(text, "cem_sink_up"),
                "failures": metric_value(text, "cem_sink_failures_total"),
                "pending": metric_value(text, "cem_sink_pending_events"),
                "lag_metric": metric_value(text, "cem_consumer_lag_messages", {"topic": s.settings.resolve_topic}),
                "written": (worker.status() or {}).get("written", -1),
                "resolve_end": resolve_end,
                "resolve_committed": resolve_committed,
                "rss_kb": worker.rss_kb() or 0,
            })
            time.sleep(1.0)
        server.start()  # same ports, same data
        restarted = time.monotonic()
        recovery = s.wait_drained()

        # The outage shows in the metrics, and from the first failed write on nothing advances.
        failing = [x for x in samples if x["sink_up"] == 0 and x["failures"] > 0]
        assert failing, f"the outage never showed in cem_sink_up / cem_sink_failures_total: {samples}"
        after = samples[samples.index(failing[0]) + 2:]  # the commit of a batch written just before may follow
        assert len(after) >= 15, samples
        assert len({x["written"] for x in after}) == 1, f"rows written while ClickHouse was down: {samples}"
        assert len({x["resolve_committed"] for x in after}) == 1, f"offsets committed for unwritten data: {samples}"
        assert after[-1]["resolve_end"] > after[-1]["resolve_committed"], "the resolver's lag shows the backlog"
        assert after[-1]["lag_metric"] > 0, "cem_consumer_lag_messages shows the backlog"
        held = {x["pending"] for x in after}
        assert len(held) == 1, f"the batch held back changed while ClickHouse was down: {samples}"
        assert 0 < held.pop() <= s.settings.sink_batch_max, "cem_sink_pending_events shows the one batch held back"
        assert failing[-1]["failures"] >= 3, "the sink keeps retrying (with backoff)"
        peak = max(x["rss_kb"] for x in samples)  # reported, not asserted (see the module's docstring)
        assert "cem_sink_up 1.0" in worker.metrics_text()
        s.finish(time_to_recover_s=round(time.monotonic() - restarted, 1), drain_after_restart_s=round(recovery, 1),
                 outage_s=round(restarted - stopped, 1), sink_failures=int(failing[-1]["failures"]),
                 rss_baseline_mb=round(baseline_rss / 1024), rss_peak_mb=round(peak / 1024))


def test_slow_clickhouse_throughput_drops_nothing_lost(scenario, kafka, clickhouse) -> None:
    with DelayProxy(clickhouse.tcp_port, delay=0.0) as proxy:
        url = f"clickhouse://default:@127.0.0.1:{proxy.port}/cem"
        s = scenario("slowch", kafka.bootstrap, url, customers=120, seed=26)
        half = len(s.records) // 2
        worker = s.start_worker()
        phases = []
        for delay, records in ((0.0, s.records[:half]), (0.15, s.records[half:])):
            proxy.delay = delay  # each way: every round trip of the native protocol takes 0.3 s longer
            before = worker.metrics_text()
            started = time.monotonic()
            publish(s.settings, records)
            s.wait_drained()
            elapsed = time.monotonic() - started
            after = worker.metrics_text()
            batches = (metric_value(after, "cem_sink_batch_duration_seconds_count")
                       - metric_value(before, "cem_sink_batch_duration_seconds_count"))
            seconds = (metric_value(after, "cem_sink_batch_duration_seconds_sum")
                       - metric_value(before, "cem_sink_batch_duration_seconds_sum"))
            phases.append({"delay_s": delay, "records": len(records), "drain_s": round(elapsed, 1),
                           "records_per_s": round(len(records) / elapsed), "batches": int(batches),
                           "mean_batch_s": round(seconds / max(1, batches), 3)})
        # Speeds are reported, not asserted (see the module's docstring); the slow phase did go through the proxy.
        assert all(phase["batches"] > 0 for phase in phases), phases
        assert proxy.connections >= 1 and proxy.bytes["up"] > 0
        proxy.delay = 0.0
        s.finish(time_to_recover_s=0.0, phases=phases)


@pytest.mark.parametrize("split_partitions", [0, 4], ids=["single-resolver", "split-4"])
def test_clickhouse_connection_resets_lose_replies_nothing_doubled(scenario, kafka, clickhouse,
                                                                   split_partitions: int) -> None:
    with DelayProxy(clickhouse.tcp_port, delay=0.01, seed=29) as proxy:
        url = f"clickhouse://default:@127.0.0.1:{proxy.port}/cem"
        s = scenario(f"chresets_split{split_partitions}", kafka.bootstrap, url, customers=100, seed=29,
                     split_partitions=split_partitions)
        worker = s.start_worker()
        proxy.drop_match = b".interaction_log ("  # the insert that matters: a blind retry doubles its rows
        proxy.drop_probability = 0.8
        flaky = time.monotonic()
        BackgroundPublisher(s.settings, s.records, chunks=15, pause=0.7).start().join()
        wait_until(lambda: proxy.resets >= 2, 60, f"only {proxy.resets} replies lost")
        proxy.drop_probability = 0.0
        healed = time.monotonic()
        s.wait_drained()
        failures = metric_value(worker.metrics_text(), "cem_sink_failures_total")
        found = metric_value(worker.metrics_text(), "cem_sink_inserts_found_landed_total")
        assert proxy.resets > 0 and failures > 0, (proxy.resets, failures)
        figures = s.finish(time_to_recover_s=round(time.monotonic() - healed, 1), connection_resets=proxy.resets,
                           sink_failures=int(failures), flaky_s=round(healed - flaky, 1))
        # Each lost reply's rows had landed: the resumed write found them instead of writing them again (and the
        # invariants checked by finish() count every event once).
        assert found > 0, (proxy.resets, figures)


def test_clickhouse_down_while_a_worker_joins_no_zombie_writer(scenario, kafka, tmp_workdir) -> None:
    """A rebalance during an outage: the resolver owner cannot give up its partition (its batch is not written),
    so it exits instead of letting the group drop it and writing the batch later, beside the new owner. The
    workers reach ClickHouse through a proxy, as through a load balancer: the new worker's start-up check finds
    the address answering (a worker started with no ClickHouse at all exits 69 at once, see test_fail_fast)."""
    with ClickHouseServer(tmp_workdir("clickhouse-rebalance")) as server, DelayProxy(server.tcp_port, delay=0.0,
                                                                                        seed=33) as proxy:
        url = f"clickhouse://default:@127.0.0.1:{proxy.port}/cem"
        s = scenario("chrebalance", kafka.bootstrap, url, customers=80, seed=33)
        half = len(s.records) // 2
        w1 = s.start_worker("w1")
        publish(s.settings, s.records[:half])
        wait_until(lambda: (w1.status() or {}).get("written", 0) >= 200, 90, "no progress", workers=[w1])
        server.stop()
        stopped = time.monotonic()
        publish(s.settings, s.records[half:])
        wait_until(lambda: metric_value(w1.metrics_text(), "cem_sink_failures_total") > 0, 60, "no failed write",
                   workers=[w1])
        s.start_worker("w2")  # the group now waits for w1 to give up its partitions
        joined = time.monotonic()

        def w1_exited() -> bool:
            w1.metrics_text()  # its last counters before it goes
            return not w1.running

        wait_until(w1_exited, 90, "w1 kept its partitions", workers=s.workers)
        s.ended.add("w1")
        gave_up = time.monotonic() - joined
        # It left by itself (code 75), before the group dropped it: a dropped owner would write beside w2, and the
        # invariants of finish() would see rows twice.
        assert w1.process is not None and w1.process.returncode == 75, w1.log_tail()
        server.start()
        restarted = time.monotonic()
        drain = s.wait_drained()
        s.finish(time_to_recover_s=round(time.monotonic() - restarted, 1), outage_s=round(restarted - stopped, 1),
                 owner_gave_up_after_s=round(gave_up, 1), drain_after_restart_s=round(drain, 1))

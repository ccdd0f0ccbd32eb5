"""Worker crashes: SIGKILL at different points of the stream, then restarts; and a crash with two workers, the
survivor taking over, then a third worker joining (a rebalance), all while records keep arriving."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from devtools.harness import WorkerProcess, wait_until
from devtools.topics import BackgroundPublisher, publish

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def _progress(worker: WorkerProcess, key: str) -> int:
    return (worker.status() or {}).get(key, 0)


def _wait_for(trigger: Callable[[WorkerProcess], bool], worker: WorkerProcess, since: float,
              recoveries: list[float], timeout: float = 30.0) -> bool:
    """Poll until the trigger holds; meanwhile note when the worker first resolved a batch (its recovery)."""
    deadline = time.monotonic() + timeout
    recovered = False
    while time.monotonic() < deadline:
        fired = trigger(worker)
        if not recovered and worker.last_status.get("resolved", 0) > 0:
            recoveries.append(time.monotonic() - since)
            recovered = True
        if fired:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("split_partitions", [0, 4], ids=["single-resolver", "split-4"])
def test_worker_sigkilled_at_six_points_and_restarted(scenario, kafka, clickhouse, split_partitions: int) -> None:
    # With the identity replica on: every kill between a write and its publication must be caught up (finish()).
    s = scenario(f"kill_split{split_partitions}", kafka.bootstrap, clickhouse.url, customers=120, seed=21,
                 identity_replica=True, split_partitions=split_partitions)
    rng = random.Random(21)
    delay = rng.uniform(0.3, 1.5)
    # Each kill point is a predicate on the live worker's /status; the worker is killed as soon as it holds.
    kill_points: list[tuple[str, Callable[[WorkerProcess], bool]]] = [
        ("while joining the group and restoring, before any batch", lambda w: True),
        ("mid-ingest: its first raw records consumed", lambda w: _progress(w, "consumed") >= 1),
        ("right after its first warehouse write, before the offset commit", lambda w: _progress(w, "written") >= 1),
        (f"at a random moment, {delay:.2f} s after it started", _after(delay)),
        ("catching up: 0.3 s after its first batch was written", _after_first_write(0.3)),
        ("late: 250 rows written", lambda w: _progress(w, "written") >= 250),
    ]
    waves = _split(s.records, len(kill_points) + 1)
    recoveries: list[float] = []
    killed_at: list[dict[str, Any]] = []
    for i, (label, trigger) in enumerate(kill_points):
        publish(s.settings, waves[i])
        restarted = time.monotonic()
        worker = s.start_worker(f"w{i + 1}")
        fired = _wait_for(trigger, worker, restarted, recoveries)
        s.kill(worker)
        killed_at.append({"point": label, "fired": fired, **worker.last_status})
    publish(s.settings, waves[-1])
    restarted = time.monotonic()
    final = s.start_worker("final")
    recoveries.append(_until_written(final, restarted))
    drain = s.wait_drained()
    figures = s.finish(kills=len(kill_points),
                       time_to_recover_s=round(max(recoveries), 1),
                       mean_time_to_recover_s=round(sum(recoveries) / len(recoveries), 1),
                       final_drain_s=round(drain, 1), kill_points=killed_at)
    assert all(k["fired"] for k in killed_at), killed_at
    # Kills after a write and before the commit replay batches whose rows landed: dropped as duplicates.
    assert figures["duplicates_before_dedup"] > s.traffic.duplicates_sent


@pytest.mark.parametrize("split_partitions", [0, 4], ids=["single-resolver", "split-4"])
def test_two_workers_one_killed_survivor_takes_over_then_a_third_joins(scenario, kafka, clickhouse,
                                                                       split_partitions: int) -> None:
    s = scenario(f"takeover_split{split_partitions}", kafka.bootstrap, clickhouse.url, customers=120, seed=22,
                 identity_replica=True, split_partitions=split_partitions)
    tail = len(s.records) // 5  # held back until the third worker has partitions, so it must take part
    w1, w2 = s.start_worker("w1"), s.start_worker("w2")
    publisher = BackgroundPublisher(s.settings, s.records[:-tail], chunks=16, pause=1.0).start()
    wait_until(lambda: s.status_total("written") >= 300, 90, "no progress", interval=0.1, workers=s.workers)
    # Kill the worker that owns the resolver partition (it is the one writing), mid-stream.
    owner = max((w1, w2), key=lambda w: _progress(w, "resolved"))
    survivor = w2 if owner is w1 else w1
    s.kill(owner)
    killed = time.monotonic()
    before = _progress(survivor, "written")
    wait_until(lambda: _progress(survivor, "written") > before, 90,
               "the survivor did not take over", interval=0.1, workers=s.workers)
    takeover = time.monotonic() - killed
    stream_running = not publisher.done  # the held-back tail makes the join mid-stream in any case
    joined = time.monotonic()
    w3 = s.start_worker("w3")
    # Its partitions show in its lag gauge (exported every 5 s) once the rebalance has assigned them.
    wait_until(lambda: "cem_consumer_lag_messages{" in w3.metrics_text(), 60,
               "the third worker got no partitions", interval=0.5, workers=s.workers)
    rebalanced = time.monotonic() - joined
    publisher.join()
    publish(s.settings, s.records[-tail:])
    drain = s.wait_drained()
    third_consumed = _progress(w3, "consumed")
    s.finish(time_to_recover_s=round(takeover, 1), rebalance_s=round(rebalanced, 1),
             third_joined_after_s=round(joined - s.started, 1), drain_after_join_s=round(drain, 1),
             third_worker_consumed=third_consumed, stream_running_at_join=stream_running)
    # Every process took part, as the workers themselves counted it (a killed one: its last scrape; the others:
    # the scrape before finish() stopped them): each consumed raw records or resolved events (the resolver's
    # worker ingests nothing while another worker can), and the survivor wrote after the kill.
    took_part = {w.name: (w.last_status.get("consumed", 0), w.last_status.get("resolved", 0)) for w in s.workers}
    assert all(consumed + resolved > 0 for consumed, resolved in took_part.values()), took_part
    assert third_consumed > 0, "the third worker took part after the rebalance"
    assert survivor.last_status.get("written", 0) > before, "the survivor wrote after the kill"


def _after(seconds: float) -> Callable[[WorkerProcess], bool]:
    began: dict[int, float] = {}

    def trigger(worker: WorkerProcess) -> bool:
        return time.monotonic() - began.setdefault(id(worker), time.monotonic()) >= seconds

    return trigger


def _after_first_write(seconds: float) -> Callable[[WorkerProcess], bool]:
    first: dict[int, float] = {}

    def trigger(worker: WorkerProcess) -> bool:
        if _progress(worker, "written") > 0:
            first.setdefault(id(worker), time.monotonic())
        return id(worker) in first and time.monotonic() - first[id(worker)] >= seconds

    return trigger


def _until_written(worker: WorkerProcess, since: float, timeout: float = 60.0) -> float:
    """Seconds from `since` until the worker resolved its first batch."""
    wait_until(lambda: _progress(worker, "resolved") > 0, timeout,
               f"{worker.name} made no progress", interval=0.05, workers=[worker])
    return time.monotonic() - since


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    size = -(-len(items) // parts)
    return [items[i:i + size] for i in range(0, len(items), size)]

"""A worker whose event loop blocks: the watchdog stops it (exit 70, stacks in its log), the other worker takes over
its partitions, and every invariant holds. And the other side: a long block in an executor thread (the resolver's
ClickHouse insert) leaves the loop turning, and the watchdog leaves the worker alone.

The blocks are injected with the fault launcher (tests/faults/inject.py): a function sleeps forever on the loop's
thread when it meets a marker, as a worker stuck in a library lock does. Its heartbeats go on (Faust's consumer
thread), so without the watchdog it would keep its partitions for good."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from devtools.harness import WorkerProcess, wait_until
from devtools.topics import BackgroundPublisher
from streams.watchdog import EXIT_EVENT_LOOP_STALLED
from tests.faults.inject import Fault, write_plan
from tests.faults.scenario import Scenario

pytestmark = [pytest.mark.faults, pytest.mark.integration]

WATCHDOG_SECONDS = 5.0


def blocked_decoding_a_marked_event(s: Scenario, at: float) -> tuple[Fault, str]:
    """`schemas.codec.decode` (a plain function, called on the loop by ingest) blocks on the valid JSON record about
    `at` (a fraction) into the stream. Returns the fault and the function the blocked loop must show."""
    for _, _, value in s.records[int(len(s.records) * at):]:
        try:
            event_id = orjson.loads(value).get("event_id")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if event_id in s.expected.person_of_event:
            return Fault("schemas.codec.decode", "block", contains=str(event_id)), "in parse"
    raise AssertionError("no valid JSON record in the second part of the traffic")


def blocked_dead_lettering(s: Scenario, at: float) -> tuple[Fault, str]:
    """`IngestStage._send_dead_letter` (a coroutine, awaited on the loop) blocks on the first invalid record from
    `at`."""
    reasons = {value: reason for reason, value in s.expected.invalid}
    reason = next(reasons[v] for _, _, v in s.records[int(len(s.records) * at):] if v in reasons)
    return Fault("streams.ingest.IngestStage._send_dead_letter", "block",
                 contains=f"('cem.reason', b'{reason}')"), "in _deliver"


def has_partitions(worker: WorkerProcess) -> bool:
    return "cem_consumer_lag_messages{" in worker.metrics_text()  # the lag gauge lists its assigned partitions


def identifier_values(s: Scenario) -> set[str]:
    """Every identifier the traffic carries, as sent and normalised the simplest ways (lower case, digits)."""
    values = set()
    for record in s.traffic.events.values():
        for id_type, value in record["identifiers"].items():
            text = str(value)
            values |= {text.strip(), text.strip().lower()}
            if id_type == "phone":
                values.add("+" + "".join(c for c in text if c.isdigit()))
    return {v for v in values if len(v) >= 6}


@pytest.mark.parametrize("blocked", [blocked_decoding_a_marked_event, blocked_dead_lettering],
                         ids=["sync-decode", "async-dead-letter"])
def test_a_worker_whose_event_loop_blocks_is_stopped_by_the_watchdog_and_the_other_takes_over(
        scenario, kafka, clickhouse, tmp_path: Path, blocked: Callable[[Scenario, float], tuple[Fault, str]]) -> None:
    s = scenario("stall", kafka.bootstrap, clickhouse.url, customers=100, seed=24, watchdog_seconds=WATCHDOG_SECONDS)
    fault, blocked_in = blocked(s, 0.4)
    plan = write_plan(tmp_path / "plan.json", [fault], claims_dir=tmp_path / "claims")
    w1, w2 = s.start_worker("w1", fault_plan=plan), s.start_worker("w2", fault_plan=plan)
    wait_until(lambda: has_partitions(w1) and has_partitions(w2), 90, "the two workers did not share the partitions",
               workers=s.workers)
    publisher = BackgroundPublisher(s.settings, s.records, chunks=10, pause=0.5).start()

    wait_until(lambda: not (w1.running and w2.running), 120, "no worker was stopped by the watchdog",
               workers=s.workers, settings=s.settings)
    stopped_at = time.monotonic()
    stalled, survivor = (w1, w2) if not w1.running else (w2, w1)
    s.ended.add(stalled.name)
    assert stalled.process is not None and stalled.process.returncode == EXIT_EVENT_LOOP_STALLED, \
        stalled.diagnostics()
    log = stalled.log_tail(1_000_000)
    assert f"[fault-inject] block in {fault.target}" in log
    assert "cem.watchdog: the event loop has not turned for" in log
    loop_stack = next(part for part in log.split("\nThread ") if "(the event loop)" in part)
    assert blocked_in in loop_stack and "inject.py" in loop_stack, loop_stack  # the worker's frame, then the fault
    assert survivor.running

    publisher.join()
    drain = s.wait_drained()
    assert survivor.running, survivor.diagnostics()
    assert sorted(p.name for p in (tmp_path / "claims").iterdir()) == ["fault0-0"]  # blocked once, in one process
    logs = {w.name: w.log_tail(10_000_000) for w in s.workers}
    s.finish(blocked=fault.target, stalled_worker=stalled.name, exit_code=stalled.process.returncode,
             watchdog_seconds=WATCHDOG_SECONDS, drain_after_stop_s=round(time.monotonic() - stopped_at, 1),
             final_drain_s=round(drain, 1))
    assert_plain_logs_without_identifiers(s, logs)


def test_a_long_block_in_an_executor_thread_does_not_trip_the_watchdog(scenario, kafka, clickhouse,
                                                                        tmp_path: Path) -> None:
    """The resolver's ClickHouse insert blocks its thread for three times the watchdog's timeout, mid-stream."""
    s = scenario("slow_insert", kafka.bootstrap, clickhouse.url, customers=60, seed=25,
                 watchdog_seconds=WATCHDOG_SECONDS)
    fault = Fault("sinks.clickhouse.ServerWarehouse.insert", "block_then_release", contains="interaction_log", call=2,
                  seconds=3 * WATCHDOG_SECONDS)
    plan = write_plan(tmp_path / "plan.json", [fault], claims_dir=tmp_path / "claims")
    worker = s.start_worker("w1", fault_plan=plan)
    publisher = BackgroundPublisher(s.settings, s.records, chunks=6, pause=0.5).start()
    wait_until(lambda: "[fault-inject] block_then_release" in worker.log_tail(1_000_000), 90,
               "the insert was never blocked", workers=s.workers)
    statuses = []
    for _ in range(4):  # well inside the block: the loop keeps answering
        statuses.append(worker.status())
        time.sleep(1.0)
    publisher.join()
    drain = s.wait_drained()  # raises if the worker exited
    log = worker.log_tail(10_000_000)
    assert "the event loop has not turned" not in log and worker.running
    assert all(status is not None for status in statuses), "/status did not answer while the insert blocked"
    s.finish(blocked=fault.target, blocked_seconds=fault.seconds, watchdog_seconds=WATCHDOG_SECONDS,
             final_drain_s=round(drain, 1))
    assert_plain_logs_without_identifiers(s, {worker.name: log})


def assert_plain_logs_without_identifiers(s: Scenario, logs: dict[str, str]) -> None:
    """The INFO logs the workers wrote are plain text and name no customer."""
    raw_logs = {w.name: w.log_path.read_text(errors="replace") for w in s.workers}
    assert all("\x1b" not in text for text in raw_logs.values()), "terminal escape codes in a worker log"
    leaked = sorted(v for v in identifier_values(s) for text in logs.values() if v in text)
    assert not leaked, f"identifiers in the worker logs, e.g. {leaked[:3]}"
    assert all("[INFO]" in text for text in logs.values())

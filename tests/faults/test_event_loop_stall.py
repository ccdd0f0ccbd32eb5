"""A worker whose event loop blocks: the watchdog stops it (exit 70, stacks in its log), the other worker takes over
its partitions, and every invariant holds.

The block is injected with the fault launcher (tests/faults/inject.py): `schemas.codec.decode` sleeps forever on
the loop's thread when it decodes the record carrying a marker event id, as a worker stuck in a library lock does.
Its heartbeats go on (Faust's consumer thread), so without the watchdog it would keep its partitions for good."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from cem.harness import BackgroundPublisher, WorkerProcess, wait_until
from streams.watchdog import EXIT_EVENT_LOOP_STALLED
from tests.faults.inject import Fault, write_plan
from tests.faults.scenario import Scenario

pytestmark = [pytest.mark.faults, pytest.mark.integration]

WATCHDOG_SECONDS = 5.0


def marker_event(s: Scenario, at: float) -> str:
    """The event id of a valid JSON record about `at` (a fraction) into the stream: the record that blocks."""
    for _, _, value in s.records[int(len(s.records) * at):]:
        try:
            event_id = orjson.loads(value).get("event_id")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if event_id in s.expected.person_of_event:
            return str(event_id)
    raise AssertionError("no valid JSON record in the second part of the traffic")


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


def test_a_worker_whose_event_loop_blocks_is_stopped_by_the_watchdog_and_the_other_takes_over(
        scenario, kafka, clickhouse, tmp_path: Path) -> None:
    s = scenario("stall", kafka.bootstrap, clickhouse.url, customers=100, seed=24, watchdog_seconds=WATCHDOG_SECONDS)
    marker = marker_event(s, at=0.4)
    plan = write_plan(tmp_path / "plan.json", [Fault("schemas.codec.decode", "block", contains=marker, times=1)],
                      claims_dir=tmp_path / "claims")
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
    assert "[fault-inject] block in schemas.codec.decode" in log
    assert "cem.watchdog: the event loop has not turned for" in log
    loop_stack = next(part for part in log.split("\nThread ") if "(the event loop)" in part)
    assert "in parse" in loop_stack and "inject.py" in loop_stack, loop_stack  # Ingestor.parse, then the fault
    assert survivor.running

    publisher.join()
    drain = s.wait_drained()
    assert survivor.running, survivor.diagnostics()
    assert sorted(p.name for p in (tmp_path / "claims").iterdir()) == ["fault0-0"]  # blocked once, in one process
    logs = {w.name: w.log_tail(10_000_000) for w in s.workers}
    figures = s.finish(stalled_worker=stalled.name, exit_code=stalled.process.returncode,
                       watchdog_seconds=WATCHDOG_SECONDS, drain_after_stop_s=round(time.monotonic() - stopped_at, 1),
                       final_drain_s=round(drain, 1))
    assert figures["rows_in_clickhouse"] == len(s.expected.person_of_event)

    # The INFO logs the workers wrote are plain text and name no customer.
    raw_logs = {w.name: w.log_path.read_text(errors="replace") for w in s.workers}
    assert all("\x1b" not in text for text in raw_logs.values()), "terminal escape codes in a worker log"
    leaked = sorted(v for v in identifier_values(s) for text in logs.values() if v in text)
    assert not leaked, f"identifiers in the worker logs, e.g. {leaked[:3]}"
    assert all("[INFO]" in text for text in logs.values())

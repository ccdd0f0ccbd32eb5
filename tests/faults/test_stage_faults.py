"""A failure at any step of either stage never acknowledges what was not processed.

A real worker (run by tests/faults/inject.py) raises twice at each step, each fault triggered by its own record:
decode, validate, enrich, the dead-letter send, the send to the resolver, the resolver itself and the warehouse
write. Before, an exception in an agent made Faust acknowledge the whole batch and the valid events in it were
lost. Now each batch is retried until it is done, and every valid event lands exactly once.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from devtools.topics import publish
from tests.faults.inject import Fault, write_plan

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def marked_records(s: Any) -> dict[str, dict[str, Any]]:
    """Valid JSON records of the traffic, by event id, with and without text, in publishing order."""
    out: dict[str, dict[str, Any]] = {}
    for _, _, value in s.records:
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("event_id") in s.expected.person_of_event:
            out[record["event_id"]] = record
    return out


def faults_at_every_step(s: Any) -> list[Fault]:
    records = list(marked_records(s).values())
    texts = [r for r in records if r.get("text")]
    plain = [r for r in records if not r.get("text")]
    third = len(plain) // 3
    reason = next(reason for reason, _ in s.expected.invalid)
    return [
        Fault("schemas.codec.decode", "raise", contains=plain[third]["event_id"], times=2),
        Fault("cem.domain.validate.build_interaction", "raise", contains=plain[2 * third]["event_id"], times=2),
        Fault("cem.domain.enrich.sentiment", "raise", contains=texts[len(texts) // 2]["text"], times=2),
        Fault("streams.ingest.IngestStage._send_dead_letter", "raise", contains=f"('cem.reason', b'{reason}')",
              times=2),
        Fault("faust.topics.Topic.send", "raise", contains=".resolve", times=2),
        Fault("cem.domain.resolver.Resolver.process", "raise", contains=plain[-1]["event_id"], times=2),
        Fault("sinks.clickhouse.ServerWarehouse.insert", "raise", contains="interaction_log", times=2,
              exception="ConnectionResetError", message="injected: connection reset"),
    ]


def test_a_fault_at_every_step_loses_nothing_and_doubles_nothing(scenario, kafka, clickhouse, tmp_path) -> None:
    s = scenario("stepfaults", kafka.bootstrap, clickhouse.url, customers=80, seed=44)
    faults = faults_at_every_step(s)
    plan = write_plan(tmp_path / "plan.json", faults, claims_dir=tmp_path / "claims")
    worker = s.start_worker(fault_plan=plan)
    publish(s.settings, s.records)
    s.wait_drained(timeout=240)
    assert worker.running, worker.log_tail()
    log = worker.log_path.read_text(errors="replace")
    fired = {f.target: log.count(f"[fault-inject] raise in {f.target}") for f in faults}
    assert fired == {f.target: 2 for f in faults}, fired
    failures = s.total("cem_stage_failures_total") + s.total("cem_sink_failures_total")
    assert failures >= len(faults), "every fault was retried, not swallowed"
    s.finish(faults_injected=len(faults) * 2, stage_failures=int(failures))

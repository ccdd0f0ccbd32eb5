"""The Kafka broker restarted mid-stream (Apache Kafka keeps its log), and the broker's connections dropping
briefly (killed, down for a few seconds, started again). A private broker each: the shared one stays up."""

from __future__ import annotations

import time

import pytest

from devtools.harness import wait_until
from devtools.services import KafkaBroker
from devtools.topics import BackgroundPublisher

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def _run(scenario, clickhouse, broker: KafkaBroker, name: str, seed: int, fault) -> None:  # type: ignore[no-untyped-def]
    s = scenario(name, broker.bootstrap, clickhouse.url, customers=100, seed=seed)
    worker = s.start_worker()
    # The stream keeps arriving through the outage: an idempotent producer waits the broker out.
    publisher = BackgroundPublisher(s.settings, s.records, chunks=20, pause=0.7, through_outages=True).start()
    wait_until(lambda: (worker.status() or {}).get("written", 0) >= 1, 90, "no first write", interval=0.05,
               workers=[worker])
    at_fault = {**worker.last_status, "published": publisher.published}
    assert not publisher.done, "the fault must hit mid-stream"
    down = fault()  # returns the seconds the broker was unavailable
    restored = time.monotonic()
    consumed = (worker.status() or {}).get("consumed", 0)
    # The same worker process carries on: it reconnects, consumes what arrives now, and replays what it had not
    # committed. Recovered: it consumes records again.
    wait_until(lambda: (worker.status() or {}).get("consumed", 0) > consumed, 120,
               "no progress after the broker came back", interval=0.1, workers=[worker])
    resumed = time.monotonic() - restored
    publisher.join()
    drain = s.wait_drained()
    assert worker.running, "the worker survived the broker outage"
    s.finish(time_to_recover_s=round(resumed, 1), broker_unavailable_s=round(down, 1),
             drain_after_restore_s=round(drain, 1), consumed_at_fault=at_fault["consumed"],
             published_at_fault=at_fault["published"])


def test_broker_restarted_mid_stream(scenario, clickhouse, tmp_workdir) -> None:
    with KafkaBroker(tmp_workdir("kafka-restart")) as broker:
        def restart() -> float:
            began = time.monotonic()
            broker.restart()  # graceful stop, then start on the same ports with the same log
            return time.monotonic() - began

        _run(scenario, clickhouse, broker, "brokerrestart", 25, restart)


def test_broker_connection_drop(scenario, clickhouse, tmp_workdir) -> None:
    with KafkaBroker(tmp_workdir("kafka-drop")) as broker:
        def drop() -> float:
            began = time.monotonic()
            broker.kill()  # every connection drops at once, nothing is flushed gracefully
            time.sleep(3.0)
            broker.start()
            return time.monotonic() - began

        _run(scenario, clickhouse, broker, "brokerdrop", 27, drop)

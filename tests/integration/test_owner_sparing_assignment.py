"""The worker holding the resolver partition ingests nothing while another worker can (streams/assignment.py), on
Apache Kafka's real group protocol; with CEM_OWNER_INGESTS=true both ingest, as Faust spreads topics evenly. Every
event lands once either way."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.harness import WorkerProcess, isolated_settings, wait_until
from devtools.simulate import Simulator
from devtools.topics import drained, publish
from sinks.clickhouse import connect
from tests.integration.common import BASE_MS

pytestmark = pytest.mark.integration


def holds_partitions(worker: WorkerProcess, topic_prefix: str) -> bool:
    """Its lag gauge (exported every 5 s) lists a partition of one of these settings' topics."""
    return any(line.startswith("cem_consumer_lag_messages{") and f'topic="{topic_prefix}.' in line
               for line in worker.metrics_text().splitlines())


@pytest.mark.parametrize("owner_ingests", [False, True])
def test_the_resolvers_worker_ingests_only_when_asked(kafka, clickhouse, tmp_path: Path, owner_ingests: bool) -> None:
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "spare", owner_ingests=owner_ingests)
    traffic = Simulator(customers=60, seed=31, base_time_ms=BASE_MS).run()
    records = traffic.topic_records(settings)
    workers = [WorkerProcess(settings, tmp_path / f"w{i}.log", f"w{i}") for i in range(2)]
    try:
        for worker in workers:
            worker.start()
        # Both in the group before anything is published, so one assignment holds for the whole run.
        wait_until(lambda: all(holds_partitions(w, settings.topic_prefix) for w in workers), 60,
                   "both workers did not get partitions", interval=0.5, workers=workers)
        publish(settings, records)
        wait_until(lambda: drained(settings), 120, "workers did not drain", workers=workers)
        for worker in workers:
            worker.status()
    finally:
        for worker in workers:
            worker.stop()
    owner = max(workers, key=lambda w: w.last_status.get("resolved", 0))
    other = workers[1] if owner is workers[0] else workers[0]
    assert owner.last_status.get("resolved", 0) > 0 and other.last_status.get("resolved", 0) == 0
    if owner_ingests:
        assert owner.last_status.get("consumed", 0) > 0 and other.last_status.get("consumed", 0) > 0
    else:
        assert owner.last_status.get("consumed", 0) == 0
        assert other.last_status.get("consumed", 0) == len(records)
    db = connect(settings.clickhouse_url)
    assert db.query(f"SELECT count(), uniqExact(event_id) FROM {db.database}.interaction_log") == \
        [(len(traffic.person_of_event), len(traffic.person_of_event))]

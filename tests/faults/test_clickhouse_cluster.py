"""Cluster mode on real servers: two ClickHouse 18.16 servers as the replicas of one shard, Debian's ZooKeeper
coordinating them, and a worker with CEM_CLICKHOUSE_CLUSTER writing through the first. The second replica is
stopped mid-stream while the stream goes on, then started again: it fetches what it missed from ZooKeeper's log.
Every exactly-once invariant holds on EACH replica, read through its Distributed tables and views (on r2 with r1
stopped, so r2 answers alone), and the replicated local tables of the two hold the same rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cem.settings import Settings
from devtools.harness import WorkerProcess, isolated_settings, run_cem, wait_until
from devtools.services import ClickHouseServer, ClusterConfig, ZooKeeperServer, free_port
from devtools.topics import drained, publish
from schemas.codec import encode_json
from sinks.clickhouse import connect, migration_tables
from tests.faults.invariants import assert_invariants
from tests.integration import erasure_scenario as jane
from tests.integration.common import BASE_MS

pytestmark = [pytest.mark.faults, pytest.mark.integration]
CLUSTER = "cem_cluster"
MIN_DOWN_SECONDS = 10.0


def local_rows(server: ClickHouseServer, database: str) -> dict[str, list[str]]:
    """Per replicated local table, every row (sorted) on this server alone: the local table, not the Distributed
    one. The tables of one scenario hold a few thousand rows."""
    client = server.client()
    try:
        tables = [name for (name,) in client.execute(
            f"SELECT name FROM system.tables WHERE database = '{database}' AND engine LIKE 'Replicated%'")]
        return {table: sorted(repr(row) for row in client.execute(f"SELECT * FROM {database}.{table}"))
                for table in tables}
    finally:
        client.disconnect()


def replication_queue(server: ClickHouseServer, database: str) -> int:
    client = server.client()
    try:
        return int(client.execute(f"SELECT sum(queue_size) FROM system.replicas WHERE database = '{database}'")[0][0])
    finally:
        client.disconnect()


@pytest.fixture(scope="module")
def replicas(tmp_workdir: Callable[[str], Path]) -> Iterator[tuple[ClickHouseServer, ClickHouseServer]]:
    """Two ClickHouse 18.16 servers, the replicas r1 and r2 of the one shard of CLUSTER, and their ZooKeeper."""
    ports = (free_port(), free_port())
    with ZooKeeperServer(tmp_workdir("cluster-zookeeper")) as zookeeper:
        cluster = ClusterConfig(CLUSTER, zookeeper.port, ports)
        with ClickHouseServer(tmp_workdir("cluster-r1"), tcp_port=ports[0], cluster=cluster, replica="r1") as r1, \
                ClickHouseServer(tmp_workdir("cluster-r2"), tcp_port=ports[1], cluster=cluster, replica="r2") as r2:
            yield r1, r2


def url_on(server: ClickHouseServer, settings: Settings) -> str:
    """The URL of settings' database on another server."""
    return server.url.rsplit("/", 1)[0] + "/" + settings.clickhouse_url.rsplit("/", 1)[1]


def test_two_replicas_one_stopped_and_restarted_mid_stream(scenario, kafka, replicas) -> None:
    r1, r2 = replicas
    s = scenario("chcluster", kafka.bootstrap, r1.url, customers=100, seed=41, clickhouse_cluster=CLUSTER)
    database = connect(s.settings.clickhouse_url).database
    half, three_quarters = len(s.records) // 2, len(s.records) * 3 // 4
    worker = s.start_worker()
    publish(s.settings, s.records[:half])
    s.wait_drained()
    # The migrations made replicated tables on both servers, through ZooKeeper.
    engines = dict(r2.client().execute(
        f"SELECT name, engine FROM system.tables WHERE database = '{database}' AND name LIKE '%_local'"))
    assert engines["interaction_log_local"] == "ReplicatedMergeTree"
    assert engines["identity_sets_local"] == "ReplicatedReplacingMergeTree"

    r2.stop()
    stopped = time.monotonic()
    # A worker crashes while r2 is down. Its successor starts anyway: the schema is current, so it runs no DDL
    # (an ON CLUSTER statement would wait for r2).
    s.kill(worker)
    publish(s.settings, s.records[half:three_quarters])  # the stream goes on, written to r1 alone
    worker = s.start_worker("w2")
    s.wait_drained()
    written_while_down = (worker.status() or {}).get("written", 0)
    assert written_while_down > 0
    time.sleep(max(0.0, MIN_DOWN_SECONDS - (time.monotonic() - stopped)))
    r2.start()  # same ports, same data: it catches up from ZooKeeper's replication log...
    restarted = time.monotonic()
    publish(s.settings, s.records[three_quarters:])  # ...while the stream goes on
    s.wait_drained()
    wait_until(lambda: replication_queue(r2, database) == 0
               and local_rows(r2, database) == local_rows(r1, database),
               120, "r2 did not catch up with r1")
    caught_up = time.monotonic() - restarted

    figures = s.finish(replica_down_s=round(restarted - stopped, 1), written_while_down=written_while_down,
                       replica_caught_up_s=round(caught_up, 1))  # the invariants, read on r1
    rows = local_rows(r2, database)
    r1.stop()  # what r2 answers is its own
    on_r2 = assert_invariants(replace(s.settings, clickhouse_url=url_on(r2, s.settings)), s.expected)
    assert on_r2["rows"] == figures["rows_in_clickhouse"] == figures["unique_valid_events"]
    assert on_r2["customers"] == figures["customers"]
    tables = {*migration_tables(), "schema_migrations"} - {"erasure_log"}  # 0004 dropped erasure_log
    assert {f"{table}_local" for table in tables} == set(rows)
    assert len(rows["interaction_log_local"]) == figures["unique_valid_events"]
    r1.start()
    assert rows == local_rows(r1, database)


def test_forget_erases_her_on_both_replicas(kafka, replicas, tmp_path: Path) -> None:
    """The erasure's mutations (ALTER ... UPDATE/DELETE) go to the replicated local tables ON CLUSTER: afterwards
    nothing of her is in any table, view or mutation text of either replica."""
    r1, r2 = replicas
    settings = replace(isolated_settings(kafka.bootstrap, r1.url, "erasecluster"), clickhouse_cluster=CLUSTER,
                       identifier_limits="phone=1", secret_key="integration-secret")
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        publish(settings, [(settings.raw_topic(channel), None, encode_json(body))
                           for channel, body in jane.records(BASE_MS)])
        wait_until(lambda: drained(settings), 120, "worker did not drain", workers=[worker])
        on_r1, on_r2 = connect(settings.clickhouse_url), connect(url_on(r2, settings))
        name = on_r1.database
        wait_until(lambda: jane.find(jane.warehouse_texts(on_r2), [jane.EMAIL]) != [], 60, "nothing replicated")
        before = dict(on_r1.query(f"SELECT event_id, customer_id FROM {name}.interactions"))

        forgotten = run_cem("forget", "phone", jane.PHONE_TYPED, env=settings.as_env())
        assert forgotten.returncode == 0, forgotten.stderr + worker.log_tail()
        assert "1 customer(s) forgotten: 5 identifiers deleted, 5 interactions anonymised" in forgotten.stdout
        for warehouse in (on_r1, on_r2):
            wait_until(lambda: jane.find(jane.warehouse_texts(warehouse), jane.needles()) == [], 60,  # noqa: B023
                       "her data is left on a replica")
            assert jane.find([t for t in jane.warehouse_texts(warehouse) if not t[0].startswith("system.")],
                             [before["j1"]]) == []
            after = dict(warehouse.query(f"SELECT event_id, customer_id FROM {name}.interactions"))
            assert {after[e] for e in ("j1", "j2", "j3", "j4", "b2")} == {"forgotten"}
            assert after["b1"] == after["b3"] == before["b1"] and after["k1"] == before["k1"]
            assert warehouse.query(f"SELECT count(), uniqExact(event_id) FROM {name}.interactions") == [(13, 13)]
        mutations = r2.client().execute(f"SELECT table FROM system.mutations WHERE database = '{name}'")
        assert mutations and {table for (table,) in mutations} <= {f"{t}_local" for t in migration_tables()}

"""Cluster mode on real servers: two ClickHouse 18.16 servers as the replicas of one shard, Debian's ZooKeeper
coordinating them, and a worker with CEM_CLICKHOUSE_CLUSTER writing through the first. The second replica is
stopped mid-stream while the stream goes on, then started again: it fetches what it missed from ZooKeeper's log.
Every exactly-once invariant holds on EACH replica, read through its Distributed tables and views (on r2 with r1
stopped, so r2 answers alone), and the replicated local tables of the two hold the same rows."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from devtools.harness import wait_until
from devtools.services import ClickHouseServer, free_port
from devtools.services.clickhouse import ClusterConfig
from devtools.services.zookeeper import ZooKeeperServer
from devtools.topics import publish
from sinks.clickhouse import connect, migration_tables
from tests.faults.invariants import assert_invariants

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


def test_two_replicas_one_stopped_and_restarted_mid_stream(scenario, kafka, tmp_workdir) -> None:
    ports = (free_port(), free_port())
    with ZooKeeperServer(tmp_workdir("cluster-zookeeper")) as zookeeper:
        cluster = ClusterConfig(CLUSTER, zookeeper.port, ports)
        with ClickHouseServer(tmp_workdir("cluster-r1"), tcp_port=ports[0], cluster=cluster, replica="r1") as r1, \
                ClickHouseServer(tmp_workdir("cluster-r2"), tcp_port=ports[1], cluster=cluster, replica="r2") as r2:
            s = scenario("chcluster", kafka.bootstrap, r1.url, customers=100, seed=41, clickhouse_cluster=CLUSTER)
            database = connect(s.settings.clickhouse_url).database
            half, three_quarters = len(s.records) // 2, len(s.records) * 3 // 4
            worker = s.start_worker()
            publish(s.settings, s.records[:half])
            wait_until(lambda: (worker.status() or {}).get("written", 0) >= 300, 120, "no progress",
                       workers=[worker])
            # The migrations made replicated tables on both servers, through ZooKeeper.
            engines = dict(r2.client().execute(
                f"SELECT name, engine FROM system.tables WHERE database = '{database}' AND name LIKE '%_local'"))
            assert engines["interaction_log_local"] == "ReplicatedMergeTree"
            assert engines["identity_sets_local"] == "ReplicatedReplacingMergeTree"

            r2.stop()
            stopped = time.monotonic()
            written_at_stop = (worker.status() or {}).get("written", 0)
            publish(s.settings, s.records[half:three_quarters])  # the stream goes on; the worker writes to r1 alone
            s.wait_drained()
            written_while_down = (worker.status() or {}).get("written", 0) - written_at_stop
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
            on_r2 = assert_invariants(replace(s.settings, clickhouse_url=r2.url.rsplit("/", 1)[0] + f"/{database}"),
                                      s.expected)
            assert on_r2["rows"] == figures["rows_in_clickhouse"] == figures["unique_valid_events"]
            assert on_r2["customers"] == figures["customers"]
            tables = {*migration_tables(), "schema_migrations"} - {"erasure_log"}  # 0004 dropped erasure_log
            assert {f"{table}_local" for table in tables} == set(rows)
            assert len(rows["interaction_log_local"]) == figures["unique_valid_events"]
            r1.start()
            assert rows == local_rows(r1, database)

"""The dev-service harness against the real services: Apache Kafka, ClickHouse, Tansu."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException

from devtools.services import (
    REPO_ROOT,
    ClickHouseServer,
    KafkaBroker,
    TansuBroker,
    fetch_kafka_libs,
    free_port,
    kafka_metadata,
    port_is_open,
    wait_for_port,
)

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (PID 1 here may not reap orphans promptly)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _records(n: int) -> list[tuple[bytes, bytes]]:
    return [(f"key-{i}".encode(), f"value-{i}-{uuid.uuid4().hex}".encode()) for i in range(n)]


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], **kwargs: object) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kwargs)  # type: ignore[arg-type]
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in records]
        await producer.flush()
        for fut in futures:
            await fut  # raises if a record was not acknowledged
    finally:
        await producer.stop()


async def _consume(
    bootstrap: str,
    topic: str,
    expected: int,
    *,
    group_id: str | None = None,
    commit: bool = False,
    timeout: float = 30.0,
) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    got: list[tuple[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                got.extend((m.key, m.value) for m in messages if m.key is not None and m.value is not None)
        if commit:
            await consumer.commit()
    finally:
        await consumer.stop()
    return got


async def _committed_total(bootstrap: str, topic: str, group_id: str) -> int:
    """Sum of the group's committed offsets over all partitions of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call
            partitions = consumer.partitions_for_topic(topic) or set()
        total = 0
        for partition in partitions:
            committed = await consumer.committed(TopicPartition(topic, partition))
            total += committed or 0
        return total
    finally:
        await consumer.stop()


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def test_free_port_and_wait_for_port() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    port = free_port()
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", port, timeout=0.3)
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        wait_for_port("127.0.0.1", port, timeout=5)
        assert port_is_open("127.0.0.1", port)
    assert not port_is_open("127.0.0.1", port)


# ------------------------------------------------------------------------------------------
# Apache Kafka
# ------------------------------------------------------------------------------------------


def test_fetch_script_is_idempotent(tmp_path: Path) -> None:
    libs = fetch_kafka_libs(tmp_path)
    assert libs == tmp_path / "kafka-4.4.0" / "libs"
    jars = {p.name for p in libs.iterdir()}
    assert {"kafka_2.13-4.4.0.jar", "kafka-clients-4.4.0.jar", "log4j-slf4j2-impl-2.24.3.jar"} <= jars
    assert (tmp_path / "kafka-4.4.0" / ".complete").is_file()
    assert not [p for p in (tmp_path / "kafka-4.4.0").iterdir() if p.name.startswith("libs.tmp")]

    # Second run: served from the marker, no Maven (a broken PATH proves it).
    result = subprocess.run(
        ["/bin/bash", str(REPO_ROOT / "deploy/kafka/fetch.sh")],
        env={"CEM_CACHE_DIR": str(tmp_path), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin:/nonexistent"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(libs)
    assert "mvn" not in result.stderr


def test_kafka_produce_consume_with_group_commit(kafka: KafkaBroker) -> None:
    topic, group = _unique("devsvc"), _unique("group")
    records = _records(100)
    asyncio.run(_produce(kafka.bootstrap, topic, records, acks="all", enable_idempotence=True))

    got = asyncio.run(_consume(kafka.bootstrap, topic, 100, group_id=group, commit=True))
    assert sorted(got) == sorted(records)
    assert asyncio.run(_committed_total(kafka.bootstrap, topic, group)) == 100

    # The committed group resumes at the end: nothing left to read.
    again = asyncio.run(_consume(kafka.bootstrap, topic, 1, group_id=group, timeout=2))
    assert again == []

    meta = kafka_metadata("127.0.0.1", kafka.port)
    assert topic in meta.topics
    assert meta.brokers == ((1, "127.0.0.1", kafka.port),)


def test_kafka_restart_keeps_log_and_offsets(kafka: KafkaBroker) -> None:
    topic, group = _unique("devsvc_restart"), _unique("group")
    records = _records(100)
    asyncio.run(_produce(kafka.bootstrap, topic, records, acks="all"))
    assert len(asyncio.run(_consume(kafka.bootstrap, topic, 100, group_id=group, commit=True))) == 100

    bootstrap, old_pid = kafka.bootstrap, kafka.pid
    kafka.restart()
    assert kafka.is_running and kafka.pid != old_pid
    assert kafka.bootstrap == bootstrap

    got = asyncio.run(_consume(kafka.bootstrap, topic, 100))
    assert sorted(got) == sorted(records)
    assert asyncio.run(_committed_total(kafka.bootstrap, topic, group)) == 100


def test_kafka_survives_sigkill(kafka: KafkaBroker) -> None:
    topic = _unique("devsvc_kill")
    records = _records(50)
    asyncio.run(_produce(kafka.bootstrap, topic, records, acks="all"))

    old_pid = kafka.pid
    assert old_pid is not None
    kafka.kill()
    assert not kafka.is_running
    assert not port_is_open("127.0.0.1", kafka.port)
    assert not _alive(old_pid)

    kafka.start()  # unclean shutdown: log recovery on the same data dir and ports
    got = asyncio.run(_consume(kafka.bootstrap, topic, 50))
    assert sorted(got) == sorted(records)


def test_private_kafka_stop_releases_everything_and_writes_cds(
    tmp_workdir: Callable[[str], Path], kafka: KafkaBroker
) -> None:
    # A private broker reusing the shared broker's jars; the shared broker is not disturbed.
    cds_dir = tmp_workdir("kafka-cds")
    broker = KafkaBroker(tmp_workdir("kafka-private"), libs_dir=kafka.libs_dir, cds_dir=cds_dir)
    with broker:
        assert broker.bootstrap != kafka.bootstrap
        pid = broker.pid
        assert pid is not None and port_is_open("127.0.0.1", broker.port)
    assert not broker.is_running
    assert not port_is_open("127.0.0.1", broker.port)
    assert not port_is_open("127.0.0.1", broker.controller_port)
    assert not _alive(pid)
    assert kafka.is_running

    # The graceful stop left a complete class-data-sharing archive; the next start maps it.
    archives = sorted(cds_dir.iterdir())
    assert len(archives) == 1 and archives[0].suffix == ".jsa", archives
    with broker:
        assert broker.process is not None
        assert f"-XX:SharedArchiveFile={archives[0]}" in list(broker.process.args)  # type: ignore[arg-type]
        assert kafka_metadata("127.0.0.1", broker.port).brokers == ((1, "127.0.0.1", broker.port),)
    assert sorted(cds_dir.iterdir()) == archives


def test_kafka_start_failure_reports_log_tail(tmp_workdir: Callable[[str], Path], kafka: KafkaBroker) -> None:
    broker = KafkaBroker(
        tmp_workdir("kafka-broken"),
        libs_dir=kafka.libs_dir,
        config={"num.network.threads": "not-a-number"},
        start_timeout=30,
    )
    with pytest.raises(RuntimeError) as info:
        broker.start()
    message = str(info.value)
    assert "kafka" in message and "num.network.threads" in message
    assert not broker.is_running


# ------------------------------------------------------------------------------------------
# ClickHouse
# ------------------------------------------------------------------------------------------


def _create_and_fill(client: Client, database: str, rows: int) -> list[tuple[int, str, float]]:
    client.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.execute(
        f"CREATE TABLE {database}.events (id UInt64, name String, score Float64) ENGINE = MergeTree ORDER BY id"
    )
    ids = list(range(rows))
    names = [f"n{i}" for i in ids]
    scores = [i / 4 for i in ids]
    client.execute(
        f"INSERT INTO {database}.events (id, name, score) VALUES",
        [ids, names, scores],
        columnar=True,
    )
    return list(zip(ids, names, scores, strict=True))


def test_clickhouse_mergetree_roundtrip(clickhouse: ClickHouseServer) -> None:
    database = _unique("devsvc")
    client = Client.from_url(clickhouse.url)
    try:
        expected = _create_and_fill(client, database, 1000)
        assert client.execute(f"SELECT id, name, score FROM {database}.events ORDER BY id") == expected
        assert client.execute(f"SELECT engine FROM system.tables WHERE database = '{database}'") == [("MergeTree",)]
        assert client.execute("SELECT currentDatabase()") == [("cem",)]
    finally:
        client.disconnect()


def test_clickhouse_restart_keeps_data(clickhouse: ClickHouseServer) -> None:
    database = _unique("devsvc_restart")
    client = Client.from_url(clickhouse.url)
    try:
        expected = _create_and_fill(client, database, 500)
    finally:
        client.disconnect()

    tcp_port, old_pid = clickhouse.tcp_port, clickhouse.pid
    clickhouse.restart()
    assert clickhouse.pid != old_pid and clickhouse.tcp_port == tcp_port

    client = Client.from_url(clickhouse.url)
    try:
        assert client.execute(f"SELECT id, name, score FROM {database}.events ORDER BY id") == expected
    finally:
        client.disconnect()

    clickhouse.kill()
    clickhouse.start()
    client = Client.from_url(clickhouse.url)
    try:
        assert client.execute(f"SELECT count() FROM {database}.events") == [(500,)]
    finally:
        client.disconnect()


def test_clickhouse_password_is_escaped(tmp_workdir: Callable[[str], Path]) -> None:
    password = "p@ss&w<rd>/:%?#"
    with ClickHouseServer(tmp_workdir("clickhouse-password"), readonly_password=password) as server:
        for client in (Client.from_url(server.readonly_url), server.client(readonly=True)):
            try:
                # 18.16 has no currentUser(): find this very query in system.processes.
                marker = uuid.uuid4().hex
                whoami = f"SELECT DISTINCT user FROM system.processes WHERE query LIKE '%{marker}%'"
                assert client.execute(whoami) == [("readonly",)]
            finally:
                client.disconnect()


def test_clickhouse_readonly_user_cannot_write(clickhouse: ClickHouseServer) -> None:
    database = _unique("devsvc_ro")
    admin = Client.from_url(clickhouse.url)
    readonly = Client.from_url(clickhouse.readonly_url)
    try:
        _create_and_fill(admin, database, 10)
        assert readonly.execute(f"SELECT count() FROM {database}.events") == [(10,)]
        with pytest.raises(ServerException) as create_error:
            readonly.execute(f"CREATE TABLE {database}.other (x UInt8) ENGINE = MergeTree ORDER BY x")
        assert "readonly" in str(create_error.value).lower()
        with pytest.raises(ServerException):
            readonly.execute(f"INSERT INTO {database}.events (id, name, score) VALUES", [(99, "x", 1.0)])
        with pytest.raises(ServerException):
            readonly.execute(f"DROP TABLE {database}.events")
        assert admin.execute(f"SELECT count() FROM {database}.events") == [(10,)]
    finally:
        admin.disconnect()
        readonly.disconnect()

    wrong = Client.from_url(clickhouse.readonly_url.replace(clickhouse.readonly_password, "wrong"))
    try:
        with pytest.raises(ServerException):
            wrong.execute("SELECT 1")
    finally:
        wrong.disconnect()


# ------------------------------------------------------------------------------------------
# Tansu
# ------------------------------------------------------------------------------------------


def test_tansu_produce_consume(tansu: TansuBroker) -> None:
    topic = _unique("devsvc_tansu")
    records = _records(10)
    asyncio.run(_produce(tansu.bootstrap, topic, records, acks=1, enable_idempotence=False))
    got = asyncio.run(_consume(tansu.bootstrap, topic, 10))
    assert sorted(got) == sorted(records)


def test_tansu_restart_same_port(tmp_workdir: Callable[[str], Path]) -> None:
    with TansuBroker(tmp_workdir("tansu-private")) as broker:
        port, pid = broker.port, broker.pid
        broker.restart()
        assert broker.port == port and broker.pid != pid
        assert kafka_metadata("127.0.0.1", port).brokers
    assert not port_is_open("127.0.0.1", port)


def test_port_taken_before_first_start_is_replaced(tmp_workdir: Callable[[str], Path]) -> None:
    tansu = TansuBroker(tmp_workdir("tansu-clash"))
    clickhouse = ClickHouseServer(tmp_workdir("clickhouse-clash"))
    with socket.socket() as squat_tansu, socket.socket() as squat_clickhouse:
        squat_tansu.bind(("127.0.0.1", tansu.port))
        squat_tansu.listen()
        squat_clickhouse.bind(("127.0.0.1", clickhouse.tcp_port))
        squat_clickhouse.listen()
        taken = (tansu.port, clickhouse.tcp_port)
        with tansu, clickhouse:
            assert tansu.port != taken[0] and clickhouse.tcp_port != taken[1]
            assert kafka_metadata("127.0.0.1", tansu.port).brokers
            assert clickhouse.client().execute("SELECT 1") == [(1,)]


# ------------------------------------------------------------------------------------------
# No leaks: atexit and parent death
# ------------------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from devtools.services import TansuBroker
    broker = TansuBroker(Path({workdir!r})).start()
    print(broker.pid, broker.port, flush=True)
    mode = {mode!r}
    if mode == "exit":
        sys.exit(0)          # atexit must stop the broker
    if mode == "_exit":
        os._exit(0)          # no atexit: the parent-death signal must kill it
    if mode == "sigkill":
        os.kill(os.getpid(), 9)
    """
)


@pytest.mark.parametrize("mode", ["exit", "_exit", "sigkill"])
def test_services_do_not_outlive_python(tmp_workdir: Callable[[str], Path], mode: str) -> None:
    script = _CHILD.format(root=str(REPO_ROOT), workdir=str(tmp_workdir("tansu-leak")), mode=mode)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, -signal.SIGKILL), result.stderr
    pid, port = (int(x) for x in result.stdout.split())
    deadline = time.monotonic() + 10
    # A killed multi-threaded process can show as a zombie a moment before its sockets close.
    while time.monotonic() < deadline:
        if not _alive(pid) and not port_is_open("127.0.0.1", port):
            break
        time.sleep(0.05)
    else:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        pytest.fail(f"tansu (pid {pid}, port {port}) outlived its Python parent ({mode})")

"""Shared fixtures: real private services on free loopback ports (see devtools.services).

Session-scoped services start lazily: only when a test (or fixture) requests them. Their
workdirs (data + logs) live under pytest's ``tmp_path_factory`` base directory, so the logs of
a failed run can be inspected afterwards (pytest keeps the last few base directories).

Tests that kill/break a broker should not use the shared one: build a private service in
``tmp_workdir("name")`` and use it as a context manager.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.services import ClickHouseServer, KafkaBroker, SchemaRegistryServer, TansuBroker, require_clickhouse


@pytest.fixture(scope="session")
def tmp_workdir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Factory: ``tmp_workdir("kafka-faults")`` -> a fresh, unique directory for one service."""

    def make(name: str) -> Path:
        return tmp_path_factory.mktemp(name, numbered=True)

    return make


@pytest.fixture(scope="session")
def kafka(tmp_workdir: Callable[[str], Path]) -> Iterator[KafkaBroker]:
    """A shared Apache Kafka 4.4 broker (KRaft). ``kafka.bootstrap`` -> ``127.0.0.1:PORT``."""
    broker = KafkaBroker(tmp_workdir("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def clickhouse(tmp_workdir: Callable[[str], Path]) -> Iterator[ClickHouseServer]:
    """A shared ClickHouse server with database ``cem``; see ``.url`` and ``.readonly_url``."""
    require_clickhouse()
    server = ClickHouseServer(tmp_workdir("clickhouse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tansu(tmp_workdir: Callable[[str], Path]) -> Iterator[TansuBroker]:
    """A shared in-memory Tansu broker (the demo broker)."""
    broker = TansuBroker(tmp_workdir("tansu"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def schema_registry(kafka: KafkaBroker, tmp_workdir: Callable[[str], Path]) -> Iterator[SchemaRegistryServer]:
    """A shared Apicurio Registry (the Confluent Schema Registry API at ``.url``) keeping its schemas in the shared
    Kafka broker, so that they survive a restart."""
    registry = SchemaRegistryServer(tmp_workdir("schema-registry"), kafka_bootstrap=kafka.bootstrap)
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()

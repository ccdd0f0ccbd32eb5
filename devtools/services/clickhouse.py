"""The system ``clickhouse-server`` (18.16) with a private config (``deploy/clickhouse/config.xml.template``), a
``default`` read-write user and a ``readonly`` user, on free loopback ports."""

from __future__ import annotations

import string
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from devtools.services.base import (
    CLICKHOUSE_CONFIG_TEMPLATE,
    CLICKHOUSE_SERVER,
    LOOPBACK,
    Service,
    ServiceError,
    ServiceStartError,
    free_port,
)


def require_clickhouse(server: Path = CLICKHOUSE_SERVER) -> Path:
    """The server binary, or a ServiceError saying how to install it: system packages are installed in one place,
    `make system-deps` (apt-get), never behind a test's back."""
    if not server.exists():
        raise ServiceError(f"{server} is missing: run `make system-deps` (it installs clickhouse-server and "
                           "clickhouse-client with apt-get)")
    return server


@dataclass(frozen=True)
class ClusterConfig:
    """One shard of replicas (``replica_ports``: their native TCP ports on the loopback) coordinated by a
    ZooKeeper: the remote_servers, zookeeper and distributed_ddl sections every replica shares."""

    name: str
    zookeeper_port: int
    replica_ports: tuple[int, ...]

    def render(self, replica: str, interserver_port: int) -> str:
        replicas = "".join(f"<replica><host>{LOOPBACK}</host><port>{port}</port></replica>"
                           for port in self.replica_ports)
        return f"""
    <zookeeper><node><host>{LOOPBACK}</host><port>{self.zookeeper_port}</port></node></zookeeper>
    <remote_servers>
        <{self.name}><shard><internal_replication>true</internal_replication>{replicas}</shard></{self.name}>
    </remote_servers>
    <macros><shard>01</shard><replica>{xml_escape(replica)}</replica></macros>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
    <interserver_http_host>{LOOPBACK}</interserver_http_host>
    <interserver_http_port>{interserver_port}</interserver_http_port>"""


class ClickHouseServer(Service):
    """A private ``clickhouse-server`` (18.16) on free loopback ports.

    Users: ``default`` (no password, read-write), ``readonly`` (password
    :attr:`readonly_password`, ``readonly=1``) and ``grafana`` (password :attr:`grafana_password`, ``readonly=2``:
    the dashboards' user, which may change settings but not data). The database ``database`` (``cem``) is created
    on start when ``create_database`` is true, so :attr:`url` is usable immediately.

    With ``cluster``, the server is the replica ``replica`` of that cluster's one shard; its ``tcp_port`` must be
    one of ``cluster.replica_ports``. Without it (the default), the config has no cluster section at all.
    """

    name = "clickhouse"

    def __init__(
        self,
        workdir: Path,
        *,
        tcp_port: int | None = None,
        http_port: int | None = None,
        database: str = "cem",
        create_database: bool = True,
        readonly_password: str | None = None,
        max_memory_usage: int = 4_000_000_000,
        max_concurrent_queries: int = 100,
        binary: Path = CLICKHOUSE_SERVER,
        start_timeout: float = 30.0,
        stop_timeout: float = 30.0,
        cluster: ClusterConfig | None = None,
        replica: str = "",
    ) -> None:
        super().__init__(workdir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self._ports_chosen_by_us = tcp_port is None or http_port is None
        self._tcp_port = tcp_port if tcp_port is not None else free_port()
        self._http_port = http_port if http_port is not None else free_port()
        self.database = database
        self.create_database = create_database
        self.readonly_password = readonly_password or uuid.uuid4().hex
        self.grafana_password = uuid.uuid4().hex
        self.max_memory_usage = max_memory_usage
        self.max_concurrent_queries = max_concurrent_queries
        self.binary = Path(binary)
        self.cluster = cluster
        self.replica = replica
        self.interserver_port = free_port() if cluster is not None else 0
        if cluster is not None and self._tcp_port not in cluster.replica_ports:
            raise ServiceError(f"tcp_port {self._tcp_port} is not one of the cluster's {cluster.replica_ports}")

    @property
    def tcp_port(self) -> int:
        return self._tcp_port

    @property
    def http_port(self) -> int:
        return self._http_port

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def url(self) -> str:
        """clickhouse_driver URL of the read-write ``default`` user."""
        return f"clickhouse://default:@{LOOPBACK}:{self.tcp_port}/{self.database}"

    @property
    def readonly_url(self) -> str:
        """clickhouse_driver URL of the ``readonly`` user."""
        password = urllib.parse.quote(self.readonly_password, safe="")
        return f"clickhouse://readonly:{password}@{LOOPBACK}:{self.tcp_port}/{self.database}"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}/"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    @property
    def config_file(self) -> Path:
        return self.workdir / "config.xml"

    @property
    def error_log(self) -> Path:
        return self.log_dir / "clickhouse-server.err.log"

    def client(self, *, readonly: bool = False, **kwargs: Any) -> Any:
        """A ``clickhouse_driver.Client`` for this server (``default`` or ``readonly`` user).

        ``kwargs`` go to ``Client`` (e.g. ``settings={...}``, ``send_receive_timeout=...``).
        """
        from clickhouse_driver import Client

        if readonly:
            kwargs = {"user": "readonly", "password": self.readonly_password, **kwargs}
        return Client(host=LOOPBACK, port=self.tcp_port, database=self.database, **kwargs)

    def _choose_ports(self) -> None:
        if self.cluster is None:  # a replica's port is in its peers' config: it never moves
            self._tcp_port = free_port()
        self._http_port = free_port()

    def _log_files(self) -> list[Path]:
        return [self.error_log, self.stdout_log]

    def render_config(self) -> str:
        """The server config: ``deploy/clickhouse/config.xml.template`` with values XML-escaped."""
        template = string.Template(CLICKHOUSE_CONFIG_TEMPLATE.read_text())
        cluster = self.cluster.render(self.replica, self.interserver_port) if self.cluster is not None else ""
        values = {
            "tcp_port": self.tcp_port,
            "http_port": self.http_port,
            "data_dir": self.data_dir,
            "log_dir": self.log_dir,
            "readonly_password": self.readonly_password,
            "grafana_password": self.grafana_password,
            "max_memory_usage": self.max_memory_usage,
            "max_concurrent_queries": self.max_concurrent_queries,
        }
        escaped = {key: xml_escape(str(value)) for key, value in values.items()}
        return template.substitute(escaped, cluster_config=cluster)

    def _prepare(self) -> None:
        if not self.binary.exists():
            raise ServiceStartError(f"{self.binary} not found; run `make system-deps`")
        for directory in (self.data_dir, self.data_dir / "tmp", self.data_dir / "user_files", self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.render_config())
        self.config_file.chmod(0o600)

    def _command(self) -> list[str]:
        return [str(self.binary), f"--config-file={self.config_file}"]

    def _wait_ready(self, deadline: float) -> None:
        from clickhouse_driver import Client
        from clickhouse_driver.errors import Error as ClickHouseError

        # First the HTTP /ping endpoint: quiet on both sides while the server is still starting
        # (a bare TCP probe makes ClickHouse log a warning, and clickhouse_driver logs every
        # refused connection). Then the real check: SELECT 1 over the native protocol.
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.http_url}ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError as exc:
                last_error = exc
            time.sleep(0.05)
        while time.monotonic() < deadline:
            self._check_alive()
            client = Client(host=LOOPBACK, port=self.tcp_port, connect_timeout=2, send_receive_timeout=5)
            try:
                if client.execute("SELECT 1") == [(1,)]:
                    if self.create_database:
                        client.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
                    return
            except (ClickHouseError, OSError, EOFError) as exc:
                last_error = exc
            finally:
                client.disconnect()
            time.sleep(0.1)
        raise TimeoutError(f"SELECT 1 did not succeed: {last_error}")



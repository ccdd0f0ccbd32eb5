"""Debian's ZooKeeper (package ``zookeeperd``, Java) as one standalone server on a free loopback port: the
coordination service of replicated ClickHouse tables and of their ``ON CLUSTER`` DDL."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from devtools.services.base import LOOPBACK, Service, ServiceError, ServiceStartError, free_port

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")  # its manifest lists the dependencies' jars
SLF4J_SIMPLE_JAR = Path("/usr/share/java/slf4j-simple.jar")  # ZooKeeper's log lines, to its stdout log
JAVA = Path("/usr/bin/java")
_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"  # standalone: no quorum, no myid


def require_zookeeper(jar: Path = ZOOKEEPER_JAR) -> Path:
    """The server jar, or a ServiceError saying how to install it (`make system-deps`, Debian's zookeeperd)."""
    if not jar.exists():
        raise ServiceError(f"{jar} is missing: run `make system-deps` (it installs Debian's zookeeperd package)")
    return jar


class ZooKeeperServer(Service):
    """A private standalone ZooKeeper; its data lives in the workdir, so a restart keeps it."""

    name = "zookeeper"

    def __init__(self, workdir: Path, *, port: int | None = None, jar: Path = ZOOKEEPER_JAR,
                 log_level: str = "warn", start_timeout: float = 60.0, stop_timeout: float = 15.0) -> None:
        super().__init__(workdir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self._ports_chosen_by_us = port is None
        self.port = port if port is not None else free_port()
        self.jar = Path(jar)
        self.log_level = log_level

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def config_file(self) -> Path:
        return self.workdir / "zoo.cfg"

    def render_config(self) -> str:
        return "\n".join([
            "tickTime=2000",
            f"dataDir={self.workdir / 'data'}",
            f"clientPort={self.port}",
            f"clientPortAddress={LOOPBACK}",
            "admin.enableServer=false",  # its Jetty would take port 8080
            "4lw.commands.whitelist=ruok,srvr",
            "",
        ])

    def _choose_ports(self) -> None:
        self.port = free_port()

    def _prepare(self) -> None:
        require_zookeeper(self.jar)
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.render_config())

    def _command(self) -> list[str]:
        return [str(JAVA), "-Xmx256m", f"-Dorg.slf4j.simpleLogger.defaultLogLevel={self.log_level}",
                "-cp", f"{self.jar}:{SLF4J_SIMPLE_JAR}", _MAIN, str(self.config_file)]

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive()
            if self.serving():
                return
            time.sleep(0.2)
        raise ServiceStartError("ZooKeeper did not start serving")

    def serving(self) -> bool:
        """True when the server serves sessions: its `srvr` report names its mode. (`ruok` answers `imok` while the
        database is still loading, and ClickHouse 18.16 can crash on a session refused then.)"""
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=1) as sock:
                sock.sendall(b"srvr")
                report = b""
                while chunk := sock.recv(4096):
                    report += chunk
                return b"Mode: standalone" in report
        except OSError:
            return False

"""Apache Kafka 4.4 in KRaft combined mode (one JVM, broker + controller) on free loopback ports. Jars are
resolved by ``deploy/kafka/fetch.sh`` into a cache directory."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from devtools.services.base import (
    KAFKA_FETCH_SCRIPT,
    KAFKA_LOG4J_CONFIG,
    LOOPBACK,
    Service,
    ServiceError,
    ServiceStartError,
    free_port,
)
from devtools.services.kafka_protocol import KafkaMetadata, kafka_group_coordinators_ready, wait_kafka_metadata


def fetch_kafka_libs(cache_dir: Path | None = None, *, script: Path = KAFKA_FETCH_SCRIPT) -> Path:
    """Run ``deploy/kafka/fetch.sh`` (idempotent, fast when cached) and return the libs dir.

    ``cache_dir`` overrides the cache root (``CEM_CACHE_DIR`` of the script); by default the
    script's own default (``~/.cache/cem``) applies.
    """
    env = None
    if cache_dir is not None:
        env = {**os.environ, "CEM_CACHE_DIR": str(cache_dir)}
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, check=False, timeout=1800)
    if result.returncode != 0:
        raise ServiceError(
            f"{script} failed with code {result.returncode}:\n{result.stderr[-4000:]}{result.stdout[-2000:]}"
        )
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    libs = Path(lines[-1]) if lines else Path()
    if not lines or not libs.is_dir():
        raise ServiceError(f"{script} did not print a libs directory (stdout: {result.stdout!r})")
    return libs


def _kafka_cluster_id() -> str:
    """A random 22-character base64url UUID, the format Kafka's storage tool expects.

    Like Kafka's own Uuid.randomUuid(), never one starting with '-': the storage tool would read it as an option
    (`--cluster-id/-t: expected one argument`), which failed one broker start in 64."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker(Service):
    """Apache Kafka 4.4 (KRaft, broker+controller in one JVM) on free loopback ports.

    Storage lives in ``workdir/data`` and is formatted on the first start only, so
    :meth:`restart`, and :meth:`start` after :meth:`stop`/:meth:`kill`, keep all records.

    With ``cds=True`` (default) JVM start-up uses an AppCDS class archive kept next to the jars
    (``<libs>/../cds``): the first broker ever to stop gracefully writes it (its stop takes ~2 s
    longer), every later start saves ~2 s. A stale or unusable archive is ignored by the JVM.
    """

    name = "kafka"
    DEFAULT_JVM_OPTS: ClassVar[tuple[str, ...]] = (
        "-Xms128m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-XX:-UsePerfData",
        "-Djava.awt.headless=true",
    )

    def __init__(
        self,
        workdir: Path,
        libs_dir: Path | None = None,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        config: Mapping[str, str] | None = None,
        jvm_opts: Sequence[str] | None = None,
        java: str = "java",
        cds: bool = True,
        cds_dir: Path | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        super().__init__(workdir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self.libs_dir = Path(libs_dir) if libs_dir is not None else None
        self.cds = cds
        self.cds_dir = Path(cds_dir) if cds_dir is not None else None
        self._cds_archive: Path | None = None
        self._cds_dump: Path | None = None
        self.extra_config = dict(config or {})
        self.jvm_opts = tuple(jvm_opts) if jvm_opts is not None else self.DEFAULT_JVM_OPTS
        self.java = java
        self._ports_chosen_by_us = port is None or controller_port is None
        self.port = port if port is not None else free_port()
        self.controller_port = controller_port if controller_port is not None else free_port()
        self.metadata: KafkaMetadata | None = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` for ``bootstrap_servers``."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def server_log(self) -> Path:
        """The broker's log4j2 log (WARN and above)."""
        return self.workdir / "server.log"

    @property
    def properties_file(self) -> Path:
        return self.workdir / "server.properties"

    def _choose_ports(self) -> None:
        self.port = free_port()
        self.controller_port = free_port()

    def server_properties(self) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{LOOPBACK}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{self.port},CONTROLLER://{LOOPBACK}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "4",
            "default.replication.factor": "1",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "1000",
            # After a crash (kill()) the restarted broker cannot re-register until the controller
            # expires its old session: 5 s instead of 9 s keeps that wait short.
            "broker.session.timeout.ms": "5000",
            "broker.heartbeat.interval.ms": "500",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.retention.hours": "168",
        }
        props.update(self.extra_config)
        return props

    def _log_files(self) -> list[Path]:
        return [self.server_log, self.stdout_log]

    def _java_base(self, libs: Path, *extra: str) -> list[str]:
        return [
            self.java,
            *extra,
            f"-Dlog4j2.configurationFile={KAFKA_LOG4J_CONFIG}",
            f"-Dcem.kafka.log.file={self.server_log}",
            "-cp",
            f"{libs}/*",
        ]

    # ---- AppCDS ------------------------------------------------------------------------------

    def _cds_archive_path(self, libs: Path) -> Path | None:
        """Archive for this exact JVM + jar set + JVM options (None when CDS is off/unusable)."""
        java = shutil.which(self.java)
        if not self.cds or java is None:
            return None
        java_real = Path(java).resolve()
        key = hashlib.sha256()
        key.update(f"{java_real}:{java_real.stat().st_mtime_ns}\n".encode())
        key.update("\0".join(self.jvm_opts).encode())
        for jar in sorted(libs.glob("*.jar")):
            stat = jar.stat()
            key.update(f"{jar.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        cds_dir = self.cds_dir if self.cds_dir is not None else libs.parent / "cds"
        return cds_dir / f"kafka-{key.hexdigest()[:16]}.jsa"

    def _cds_opts(self, *, dump: bool) -> list[str]:
        quiet = ["-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
        if self._cds_archive is not None and self._cds_archive.is_file():
            return [*quiet, "-Xshare:auto", f"-XX:SharedArchiveFile={self._cds_archive}"]
        if dump and self._cds_dump is not None:
            return [*quiet, f"-XX:ArchiveClassesAtExit={self._cds_dump}"]
        return []

    def _after_exit(self) -> None:
        dump, self._cds_dump = self._cds_dump, None
        if dump is None or self._cds_archive is None:
            return
        proc = self.process
        # The JVM writes the archive while exiting; a signal death may have cut it short.
        complete = proc is not None and proc.returncode is not None and proc.returncode >= 0
        try:
            if complete and dump.is_file() and dump.stat().st_size > 0:
                os.replace(dump, self._cds_archive)
            else:
                dump.unlink(missing_ok=True)
        except OSError:
            dump.unlink(missing_ok=True)

    # ---- life cycle ------------------------------------------------------------------------

    def _prepare(self) -> None:
        if self.libs_dir is None:
            self.libs_dir = fetch_kafka_libs()
        self._cds_archive = self._cds_archive_path(self.libs_dir)
        self._cds_dump = None
        # A detached broker is stopped by pid, without _after_exit: it would leave a half-named archive behind.
        if self._cds_archive is not None and not self._cds_archive.is_file() and not self.detached:
            self._cds_archive.parent.mkdir(parents=True, exist_ok=True)
            self._cds_dump = self._cds_archive.with_name(
                f"{self._cds_archive.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text("".join(f"{key}={value}\n" for key, value in self.server_properties().items()))
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id_file = self.workdir / "cluster.id"
        if not cluster_id_file.exists():
            cluster_id_file.write_text(_kafka_cluster_id())
        cluster_id = cluster_id_file.read_text().strip()
        # A short-lived JVM: C1 only and a small serial heap start noticeably faster.
        argv = [
            *self._java_base(
                self.libs_dir,
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                *self._cds_opts(dump=False),
            ),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.properties_file),
        ]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise ServiceStartError(
                f"kafka storage format failed ({result.returncode}): {' '.join(argv)}\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )

    def _command(self) -> list[str]:
        assert self.libs_dir is not None
        return [
            *self._java_base(self.libs_dir, *self.jvm_opts, *self._cds_opts(dump=True)),
            "kafka.Kafka",
            str(self.properties_file),
        ]

    def _wait_ready(self, deadline: float) -> None:
        self.metadata = wait_kafka_metadata(self, LOOPBACK, self.port, deadline, all_partitions_led=True)
        if "__consumer_offsets" not in self.metadata.topics:
            return  # a fresh broker: the offsets topic is created with the first group
        partitions = int(self.server_properties()["offsets.topic.num.partitions"])
        while True:
            self._check_alive()
            try:
                if kafka_group_coordinators_ready(LOOPBACK, self.port, partitions):
                    return
            except (OSError, struct.error, UnicodeDecodeError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the group coordinator did not load the committed offsets")
            time.sleep(0.1)



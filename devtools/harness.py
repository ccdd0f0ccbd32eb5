"""Drive real `cem worker` processes from tests, benchmarks and the demo: settings of their own, start, watch,
stop or kill, and read what they wrote; run a `cem` command in a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from cem.settings import DEFAULT_STATE_DIR, Settings
from devtools.scrape import metric_totals, metrics_summary, plain_text
from devtools.services import REPO_ROOT, free_port
from devtools.topics import consumer_lag

# What the tests use instead of the production defaults: a dead worker is noticed within seconds, and small
# batches keep several of them in flight, so a fault lands between batches as well as inside one.
TEST_OVERRIDES: dict[str, Any] = {
    "topic_partitions": 4,
    "session_timeout_seconds": 6.0,
    "heartbeat_interval_seconds": 1.0,
    "ingest_batch_seconds": 0.1,
    "sink_flush_seconds": 0.3,
    "log_level": "INFO",  # the log of a failed test says what each worker was doing (no identifiers at INFO)
}


def isolated_settings(kafka_bootstrap: str, clickhouse_url: str, name: str, state_dir: Path | None = None,
                      **overrides: Any) -> Settings:
    """Settings with their own topics (prefix), consumer group (app id) and ClickHouse database, so tests can
    share one broker and one server without seeing each other's data. `clickhouse_url` is any URL of the
    server (its database part is replaced); `overrides` win over TEST_OVERRIDES."""
    tag = f"{name}_{uuid.uuid4().hex[:6]}"
    url = clickhouse_url.rsplit("/", 1)[0] + f"/{tag}"
    values: dict[str, Any] = {**TEST_OVERRIDES, **overrides}
    if state_dir is not None:
        values["state_dir"] = str(state_dir)
    return Settings.from_env({}, kafka_bootstrap=kafka_bootstrap, clickhouse_url=url, topic_prefix=tag, app_id=tag,
                             **values)


class WorkerProcess:
    """One `cem worker` OS process with its own web port and log file, in its own process group. `command`
    replaces `python -m cem.cli worker`, e.g. by the fault-injection launcher (tests/faults/inject.py) or the
    benchmark's proposals (bench/proposals), which run the same worker."""

    def __init__(self, settings: Settings, log_path: Path, name: str = "worker", state_dir: Path | None = None,
                 env: dict[str, str] | None = None, command: Sequence[str] | None = None) -> None:
        self.settings = replace(settings, web_port=free_port())
        if state_dir is None and settings.state_dir == DEFAULT_STATE_DIR:
            # Each worker needs its own state directory (the resolver's store is locked by its process); the same
            # name in the same place gets the same one again, so a restarted worker finds its files.
            state_dir = log_path.parent / f"{name}-state"
        if state_dir is not None:  # Faust's data directory and the resolver's store: one per process
            self.settings = replace(self.settings, state_dir=str(state_dir))
        self.log_path = log_path
        self.name = name
        self.extra_env = dict(env or {})
        self.command = list(command or [sys.executable, "-m", "cem.cli", "worker"])
        self.process: subprocess.Popen[bytes] | None = None
        self.last_status: dict[str, int] = {}
        self.last_metrics = ""

    def spawn(self) -> WorkerProcess:
        """Start the process and return at once (a benchmark watches for its very first record)."""
        env = {**os.environ, **self.settings.as_env(), **self.extra_env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        Path(self.settings.state_dir).mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        return self

    def start(self, wait: float = 90.0) -> WorkerProcess:
        """Start the process and wait until it serves /status."""
        self.spawn()
        deadline = time.monotonic() + wait
        while self.status() is None:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not serve /status within {wait} s:\n{self.diagnostics()}")
            time.sleep(0.3)
        return self

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.settings.web_port}{path}", timeout=3) as r:
                body: bytes = r.read()
                return body
        except OSError:
            return None

    def status(self) -> dict[str, int] | None:
        body = self._get("/status")
        if body is None:
            return None
        self.last_status = orjson.loads(body)
        return self.last_status

    def metrics_text(self) -> str:
        """The current /metrics text; when the worker cannot answer, the last text it served (a killed worker's
        counters are its last scrape)."""
        body = self._get("/metrics")
        if body:
            self.last_metrics = body.decode()
        return self.last_metrics

    def metrics(self) -> dict[str, float]:
        """The current /metrics, each metric summed over its labels (see metrics_text)."""
        return metric_totals(self.metrics_text())

    def check_alive(self) -> None:
        """Raise RuntimeError, with the diagnostics, when the process has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.diagnostics()}")

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rss_kb(self) -> int | None:
        """Resident memory of the worker process (VmRSS in /proc/<pid>/status), None when it is not running."""
        if not self.running or self.pid is None:
            return None
        return proc_status_kb(self.pid, "VmRSS")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self, scrape: bool = False) -> None:
        """SIGKILL (a crash). With scrape=True, /metrics and /status are read first, so the counters of the
        dead process are known up to the moment it died."""
        if self.process is not None and self.process.poll() is None:
            if scrape:
                self.metrics_text()
                self.status()
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the worker's log, without terminal control codes."""
        if not self.log_path.exists():
            return ""
        return plain_text(self.log_path.read_text(errors="replace"))[-chars:]

    def cpu_seconds(self) -> float | None:
        """CPU time the process used so far (user + system, /proc/<pid>/stat), None when it is not running: a
        worker that stopped using CPU while work is pending is stuck, not slow."""
        if not self.running or self.pid is None:
            return None
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def diagnostics(self, log_chars: int = 3000) -> str:
        """What a timed-out wait reports: the process state, /status, key metrics and the log tail."""
        lines = [f"--- {self.name} ({self.log_path})"]
        if self.process is None:
            lines.append("not started")
        elif self.running:
            cpu = self.cpu_seconds()
            answered = self.status() is not None
            self.metrics_text()
            lines.append(f"running, pid {self.pid}, cpu {cpu if cpu is None else round(cpu, 1)} s"
                         + ("" if answered else "; /status did not answer (event loop stuck?): last values"))
        else:
            lines.append(f"exited with code {self.process.returncode}; last values")
        lines.append(f"status: {orjson.dumps(self.last_status).decode()}")
        lines.append("metrics: " + metrics_summary(self.last_metrics))
        lines.append("log tail:")
        lines.append(self.log_tail(log_chars))
        return "\n".join(lines)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def proc_status_kb(pid: int, key: str) -> int | None:
    """A kB field of /proc/<pid>/status (VmRSS, VmHWM)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def diagnose(workers: Sequence[WorkerProcess], settings: Settings | None = None, log_chars: int = 3000) -> str:
    """Every worker's diagnostics and, with `settings`, the consumer group's lag as the broker sees it."""
    sections = [w.diagnostics(log_chars) for w in workers]
    if settings is not None:
        try:
            sections.insert(0, f"consumer group lag per topic (broker): {consumer_lag(settings)}")
        except Exception as exc:
            sections.insert(0, f"consumer group lag: unavailable ({type(exc).__name__}: {exc})")
    return "\n".join(sections)


def wait_until(condition: Callable[[], Any], timeout: float, message: str | Callable[[], str],
               interval: float = 0.5, workers: Sequence[WorkerProcess] = (), settings: Settings | None = None) -> None:
    """Poll `condition` until it holds. On timeout the error holds `message` (a callable is called then, so it can
    read the state at that moment) and the diagnostics of `workers` (see diagnose)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    text = message() if callable(message) else message
    if workers or settings is not None:
        text += f" (waited {timeout:g} s)\n" + diagnose(workers, settings)
    raise TimeoutError(text)


def run_module(module: str, *args: str, env: Mapping[str, str] | None = None,
               timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """`python -m module ARGS` in a child process with this environment plus `env`, the repository root on its
    path (devtools and tests are not installed); output captured as text."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", module, *args], env={**os.environ, "PYTHONPATH": path, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def run_cem(*args: str, env: Mapping[str, str] | None = None,
            timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """The `cem` command (`python -m cem.cli ARGS`) in a child process; see run_module."""
    return run_module("cem.cli", *args, env=env, timeout=timeout)

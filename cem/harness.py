"""Drive real `cem worker` processes from tests and benchmarks: start, watch, kill, and read what they wrote."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from cem.devservices import free_port
from cem.scrape import metric_value as metric_value  # re-exported: tests and bench read metrics through the harness
from cem.scrape import metrics_summary, plain_text
from cem.settings import Settings

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
    """One `cem worker` OS process with its own web port and log file. `command` replaces `python -m cem.cli
    worker`, e.g. by the fault-injection launcher (tests/faults/inject.py), which runs the same worker."""

    def __init__(self, settings: Settings, log_path: Path, name: str = "worker", state_dir: Path | None = None,
                 env: dict[str, str] | None = None, command: Sequence[str] | None = None) -> None:
        self.settings = replace(settings, web_port=free_port())
        if state_dir is not None:  # Faust's data directory: one per process when several run side by side
            self.settings = replace(self.settings, state_dir=str(state_dir))
        self.log_path = log_path
        self.name = name
        self.extra_env = dict(env or {})
        self.command = list(command or [sys.executable, "-m", "cem.cli", "worker"])
        self.process: subprocess.Popen[bytes] | None = None
        self.last_status: dict[str, int] = {}
        self.last_metrics = ""

    def start(self, wait: float = 90.0) -> WorkerProcess:
        env = {**os.environ, **self.settings.as_env(), **self.extra_env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + wait
        while self.status() is None:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.diagnostics()}")
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


def publish(settings: Settings, records: Sequence[tuple[Any, ...]]) -> None:
    """Records as (topic, key, value) or (topic, key, value, headers)."""
    from cem.cli import produce

    asyncio.run(produce(settings, records))


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        return self.headers.get("cem.reason", "")


def read_topic(settings: Settings, topic: str, idle_seconds: float = 3.0) -> list[DeadLetter]:
    """Every record of a topic, from the beginning, until nothing new arrives for idle_seconds."""

    async def read() -> list[DeadLetter]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        out: list[DeadLetter] = []
        try:
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < idle_seconds:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for m in messages:
                        headers = {k: v.decode("utf-8", "replace") for k, v in (m.headers or ())}
                        out.append(DeadLetter(m.key, m.value or b"", headers))
                    idle_since = time.monotonic()
        finally:
            await consumer.stop()
        return out

    return asyncio.run(read())


def group_offsets(settings: Settings, topics: Sequence[str] | None = None) -> dict[str, tuple[int, int]]:
    """Per topic, summed over its partitions: (end offset, offset the consumer group, i.e. the app id, committed).
    Raw topics and the resolver topic by default. A partition with no commit counts as committed at 0."""
    wanted = list(topics) if topics is not None else [*settings.raw_topics, settings.resolve_topic]

    async def offsets() -> dict[str, tuple[int, int]]:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                    enable_auto_commit=False, request_timeout_ms=10_000)
        await admin.start()
        await consumer.start()
        try:
            described = await admin.describe_topics(wanted)
            partitions = [TopicPartition(d["topic"], p["partition"]) for d in described if not d["error_code"]
                          for p in d["partitions"]]
            unknown = set(wanted) - {tp.topic for tp in partitions}
            if unknown:
                raise LookupError(f"no metadata for {sorted(unknown)}")
            ends = await consumer.end_offsets(partitions)
            committed = await admin.list_consumer_group_offsets(settings.app_id)
            out = dict.fromkeys(wanted, (0, 0))
            for tp in partitions:
                done = committed.get(tp)
                end, total = out[tp.topic]
                out[tp.topic] = (end + ends[tp], total + (done.offset if done is not None and done.offset >= 0 else 0))
            return out
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(offsets())


def consumer_lag(settings: Settings, topics: Sequence[str] | None = None) -> dict[str, int]:
    """Per topic: end offsets minus committed offsets of the consumer group (see group_offsets)."""
    return {topic: max(0, end - done) for topic, (end, done) in group_offsets(settings, topics).items()}


def drained(settings: Settings) -> bool:
    """True when every raw record and every resolver batch is committed: the raw topics are checked first, so a
    resolver batch that an ingested record became is already in the resolver topic's end offset."""
    try:
        raw = consumer_lag(settings, settings.raw_topics)
        if sum(raw.values()):
            return False
        return consumer_lag(settings, [settings.resolve_topic])[settings.resolve_topic] == 0
    except Exception:
        return False


class BackgroundPublisher:
    """Publishes records in chunks from a thread, pausing between chunks, so a stream is still arriving while a
    test injects a fault. `published` counts the records acknowledged by the broker so far.

    With through_outages=True one idempotent producer sends every chunk and waits out a broker that is down
    (its retries are deduplicated by the broker, so no record is written twice); otherwise each chunk is sent
    with `publish` and a failure ends the stream."""

    def __init__(self, settings: Settings, records: Sequence[tuple[str, bytes | None, bytes]], chunks: int = 10,
                 pause: float = 1.0, through_outages: bool = False) -> None:
        self.settings = settings
        self.records = list(records)
        self.chunks = max(1, chunks)
        self.pause = pause
        self.through_outages = through_outages
        self.published = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def start(self) -> BackgroundPublisher:
        self._thread.start()
        return self

    def _chunks(self) -> list[list[tuple[str, bytes | None, bytes]]]:
        size = -(-len(self.records) // self.chunks)
        return [self.records[i:i + size] for i in range(0, len(self.records), size)]

    def _run(self) -> None:
        try:
            if self.through_outages:
                asyncio.run(self._run_idempotent())
                return
            chunks = self._chunks()
            for i, chunk in enumerate(chunks):
                publish(self.settings, chunk)  # no retry: a retried chunk would re-send part of itself
                self.published += len(chunk)
                if i + 1 < len(chunks):
                    time.sleep(self.pause)
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    async def _run_idempotent(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, enable_idempotence=True,
                                    acks="all", request_timeout_ms=120_000, retry_backoff_ms=500, linger_ms=5)
        await producer.start()
        try:
            chunks = self._chunks()
            for i, chunk in enumerate(chunks):
                futures = [await producer.send(topic, value, key=key) for topic, key, value in chunk]
                await asyncio.gather(*futures)
                self.published += len(chunk)
                if i + 1 < len(chunks):
                    await asyncio.sleep(self.pause)
        finally:
            await producer.stop()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float = 300.0) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the publisher did not finish")
        if self.error is not None:
            raise self.error

"""Drive real `cem worker` processes from tests and benchmarks: start, watch, kill, and read what they wrote."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from cem.devservices import free_port
from cem.settings import Settings


class WorkerProcess:
    """One `cem worker` OS process with its own web port and log file."""

    def __init__(self, settings: Settings, log_path: Path, name: str = "worker") -> None:
        self.settings = replace(settings, web_port=free_port())
        self.log_path = log_path
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: float = 90.0) -> WorkerProcess:
        env = {**os.environ, **self.settings.as_env()}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "cem.cli", "worker"], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + wait
        while self.status() is None:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not serve /status within {wait} s:\n{self.log_tail()}")
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
        return None if body is None else orjson.loads(body)

    def metrics_text(self) -> str:
        return (self._get("/metrics") or b"").decode()

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if labels and not all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            continue
        total += float(value)
    return total


def wait_until(condition: Any, timeout: float, message: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(message)


def publish(settings: Settings, records: Sequence[tuple[str, bytes | None, bytes]]) -> None:
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

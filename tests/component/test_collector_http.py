"""The collector's HTTP behaviour without Kafka: 429 under overload, 503 while Kafka is unreachable (from a gate
that is not ready, a send that fails, and a real `cem collect` process whose broker does not exist), /health and
/status, and the refusal to start without a write key."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from cem.collector.app import COLLECTOR, build_app
from cem.collector.gate import KafkaUnavailable, Record
from cem.settings import Settings
from devtools.collector import CollectorProcess, post
from devtools.harness import wait_until
from devtools.scrape import metric_value
from devtools.services import free_port

T = "2025-11-14T10:00:00.000Z"
BODY = {"writeKey": "wk", "batch": [{"type": "track", "event": "X", "userId": "u", "messageId": "m1",
                                     "timestamp": T}]}


class FakeGate:
    """The KafkaGate interface: ready or not; sends held until released, or failing."""

    def __init__(self, ready: bool = True, fail: bool = False) -> None:
        self.ready = ready
        self.fail = fail
        self.down_since: float | None = None
        self.release = asyncio.Event()
        self.hold = False
        self.sent: list[Record] = []

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send_all(self, records: Sequence[Record]) -> None:
        if self.hold:
            await self.release.wait()
        if self.fail:
            raise KafkaUnavailable("Kafka did not acknowledge the records: KafkaTimeoutError")
        self.sent.extend(records)


def settings(**overrides: Any) -> Settings:
    return Settings.from_env({}, collect_write_keys="wk=web", **overrides)


async def serve(gate: FakeGate, **overrides: Any) -> TestServer:
    server = TestServer(build_app(settings(**overrides), gate))  # type: ignore[arg-type]
    await server.start_server()
    return server


async def answer(session: ClientSession, server: TestServer, path: str = "/v1/batch",
                 body: Any = BODY) -> tuple[int, dict[str, str], Any]:
    async with session.post(server.make_url(path), data=orjson.dumps(body)) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


def test_overload_is_429_with_retry_after_and_the_held_requests_succeed() -> None:
    async def scenario() -> None:
        gate = FakeGate()
        gate.hold = True
        server = await serve(gate, collect_max_inflight_requests=2, collect_retry_after_seconds=3)
        async with ClientSession() as session:
            held = [asyncio.create_task(answer(session, server)) for _ in range(2)]
            while server.app[COLLECTOR].admission.requests < 2:
                await asyncio.sleep(0.01)
            status, headers, body = await answer(session, server)
            assert (status, headers.get("Retry-After"), body["code"]) == (429, "3", "overloaded")
            gate.release.set()
            assert [(await task)[0] for task in held] == [200, 200]
            assert (await answer(session, server))[0] == 200  # admission is free again
            metrics = await metrics_text(session, server)
        assert len(gate.sent) == 3
        assert metric_value(metrics, "cem_collect_requests_total", {"status": "429", "code": "overloaded"}) == 1
        assert metric_value(metrics, "cem_collect_requests_total", {"status": "200"}) == 3
        assert metric_value(metrics, "cem_collect_events_total", {"channel": "web"}) == 3
        assert metric_value(metrics, "cem_collect_request_duration_seconds_count") == 3
        await server.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("gate", [FakeGate(ready=False), FakeGate(fail=True)], ids=["not ready", "send fails"])
def test_kafka_unavailable_is_503_with_retry_after(gate: FakeGate) -> None:
    async def scenario() -> None:
        server = await serve(gate)
        async with ClientSession() as session:
            status, headers, body = await answer(session, server)
            assert (status, headers.get("Retry-After"), body["code"]) == (503, "1", "kafka_unavailable")
            assert body["message"] == body["detail"]
            async with session.get(server.make_url("/status")) as response:
                assert (await response.json())["status_503"] == 1
            metrics = await metrics_text(session, server)
        assert metric_value(metrics, "cem_collect_requests_total", {"status": "503"}) == 1
        assert metric_value(metrics, "cem_collect_events_total") == 0
        assert metric_value(metrics, "cem_collect_kafka_up") == (1 if gate.ready else 0)
        assert gate.sent == []
        await server.close()

    asyncio.run(scenario())


async def metrics_text(session: ClientSession, server: TestServer) -> str:
    async with session.get(server.make_url("/metrics")) as response:
        return await response.text()


def test_unknown_path_is_404_and_health_follows_the_gate() -> None:
    async def scenario() -> None:
        gate = FakeGate()
        server = await serve(gate)
        async with ClientSession() as session:
            assert (await answer(session, server, "/v2/batch"))[0] == 404
            async with session.get(server.make_url("/health")) as response:
                assert response.status == 200
            gate.ready = False
            async with session.get(server.make_url("/health")) as response:
                assert response.status == 503
        await server.close()

    asyncio.run(scenario())


def test_a_real_collector_without_kafka_answers_503_at_once(tmp_path: Path) -> None:
    unreachable = f"127.0.0.1:{free_port()}"
    collector = CollectorProcess(settings(kafka_bootstrap=unreachable, collect_kafka_timeout_seconds=1.0),
                                 tmp_path / "collector.log")
    with collector:
        status, headers, body = post(collector.url + "/v1/batch", BODY, timeout=10)
        assert (status, headers.get("Retry-After"), body["code"]) == (503, "1", "kafka_unavailable")
        wait_until(lambda: (collector.status() or {}).get("kafka") == "down", 10, "no status")
        assert post(collector.url + "/v1/batch", {"batch": []}, timeout=10)[0] == 503


def test_collect_refuses_to_start_without_a_write_key() -> None:
    result = subprocess.run([sys.executable, "-m", "cem.cli", "collect"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "CEM_COLLECT_WRITE_KEYS": ""})
    assert result.returncode == 78
    assert "CEM_COLLECT_WRITE_KEYS" in result.stderr


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_reach_the_mapping_once_inflated(encoding: str) -> None:
    """aiohttp would inflate a body itself, unbounded, and the collector's own bounded inflation would then fail on
    plain JSON: the app turns aiohttp's off, so a compressed body is inflated exactly once."""
    import gzip
    import zlib

    async def scenario() -> None:
        gate = FakeGate()
        server = await serve(gate)
        raw = orjson.dumps(BODY)
        packed = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
        async with ClientSession() as session:
            async with session.post(server.make_url("/v1/batch"), data=packed,
                                    headers={"Content-Encoding": encoding}) as response:
                assert response.status == 200, await response.text()
        assert [orjson.loads(r[2])["event_id"] for r in gate.sent] == ["m1"]
        await server.close()

    asyncio.run(scenario())

"""The collector phase of `make bench`: a real `cem collect` process, Segment-shaped batches posted by concurrent
HTTP clients (as many SDK consumer threads would), each answered 200 only once its records are acknowledged by
Kafka. Measures requests/s, events/s and the latency of one batch post (p50, p99), then checks that the raw topics
hold exactly the events the collector accepted.

    python -m bench.collector    (standalone: starts its own Kafka; `make bench` runs it after the other phases)
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from cem.kafka import ensure_topics
from cem.settings import Settings
from devtools.collector import CollectorProcess
from devtools.topics import group_offsets

WRITE_KEY = "bench-key"


def batch_body(events: int, sent_at: str) -> bytes:
    """One request as segment-analytics-python sends it: a batch of track/identify/page messages."""
    kinds = ("track", "identify", "page")
    batch = []
    for i in range(events):
        kind = kinds[i % 3]
        message: dict[str, Any] = {
            "type": kind, "messageId": str(uuid.uuid4()), "userId": f"user-{i % 500}", "anonymousId": None,
            "timestamp": sent_at, "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
            "integrations": {}}
        if kind == "track":
            message.update(event="Order Completed", properties={"order_total": 12.5, "currency": "EUR"})
        elif kind == "identify":
            message["traits"] = {"email": f"user-{i % 500}@example.com"}
        else:
            message.update(name="Pricing", properties={"path": "/pricing"})
        batch.append(message)
    return orjson.dumps({"batch": batch, "sentAt": sent_at, "writeKey": WRITE_KEY})


async def _post_all(url: str, requests: int, events: int, concurrency: int) -> tuple[list[float], dict[int, int]]:
    from aiohttp import ClientSession, TCPConnector

    sent_at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    bodies = [batch_body(events, sent_at) for _ in range(requests)]  # built before the clock starts
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(bodies)

    async def client(session: ClientSession) -> None:
        for body in queue:
            began = time.perf_counter()
            async with session.post(url + "/v1/batch", data=body,
                                    headers={"Content-Type": "application/json"}) as answer:
                await answer.read()
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
            latencies.append(time.perf_counter() - began)

    async with ClientSession(connector=TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return latencies, statuses


def measure(settings: Settings, workdir: Path, requests: int = 2_000, events: int = 100,
            concurrency: int = 8) -> dict[str, Any]:
    settings = replace(settings, collect_write_keys=f"{WRITE_KEY}=web")
    asyncio.run(ensure_topics(settings))
    collector = CollectorProcess(settings, workdir / "collector.log")
    collector.start()
    try:
        while (collector.status() or {}).get("kafka") != "up":
            collector.check_alive()
            time.sleep(0.2)
        asyncio.run(_post_all(collector.url, max(1, concurrency), events, concurrency))  # warm-up
        warm = int((collector.status() or {}).get("events", 0))
        started = time.perf_counter()
        latencies, statuses = asyncio.run(_post_all(collector.url, requests, events, concurrency))
        seconds = time.perf_counter() - started
        accepted = int((collector.status() or {}).get("events", 0))
    finally:
        collector.stop()
    on_kafka = sum(end for end, _ in group_offsets(settings, settings.raw_topics).values())
    ordered = sorted(latencies)
    return {
        "requests": requests, "events_per_request": events, "concurrency": concurrency,
        "seconds": round(seconds, 2), "requests_per_s": round(requests / seconds, 1),
        "events_per_s": round(requests * events / seconds, 1), "statuses": {str(k): v for k, v in statuses.items()},
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "check": {"ok": statuses == {200: requests} and on_kafka == accepted == warm + requests * events,
                  "accepted": accepted, "on_kafka": on_kafka},
    }


def main() -> int:
    import tempfile

    from devtools.services import KafkaBroker

    workdir = Path(tempfile.mkdtemp(prefix="cem-bench-collect-"))
    with KafkaBroker(workdir / "kafka") as broker:
        settings = Settings.from_env({}, kafka_bootstrap=broker.bootstrap, topic_prefix="bench_collect")
        result = measure(settings, workdir)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0 if result["check"]["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

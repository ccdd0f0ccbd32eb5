"""Alert latency: from an event's send to its alert on the alerts topic, at a fixed rate (half of one worker's
throughput by default), on Apache Kafka and a ClickHouse server with one `cem worker`.

The benchmark's simulated traffic is produced at `--rate`, with a detractor survey (NPS 2, a furious comment; its
own person, so it raises exactly one alert) every `--every` records. Each record's send time is taken as it is
handed to the producer; a consumer of the alerts topic notes when each alert arrives, and the detractor's event id
(the alert's evidence) joins the two. Detractors fire on the event itself, so this is the path every alert takes:
ingest, the resolver hop, the resolver batch with its alert rows written to ClickHouse, and the publish.

    python -m bench.alert_latency [--events N] [--rate R] [--every K]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.traffic import produce_at_rate, simulated
from devtools.harness import WorkerProcess, isolated_settings, wait_until
from devtools.services import ClickHouseServer, KafkaBroker
from devtools.simulate import recent_base_ms
from devtools.topics import drained, publish
from schemas.alerts import decode_alert
from schemas.codec import encode_json

FURIOUS = "Terrible service, nobody helps and I am furious. Awful and useless."


def _with_detractors(records: list[tuple[str, bytes | None, bytes]], every: int, base_ms: int, name: str
                     ) -> tuple[list[tuple[str, bytes | None, bytes]], dict[int, str]]:
    """The records with a detractor survey after every `every`-th one; {index in the output: its event id}."""
    out: list[tuple[str, bytes | None, bytes]] = []
    detractors: dict[int, str] = {}
    for i, record in enumerate(records):
        out.append(record)
        if i % every == every - 1:
            event_id = f"{name}-detractor-{len(detractors)}"
            survey = {"event_id": event_id, "channel": "survey", "type": "survey_response",
                      "occurred_at": base_ms + len(detractors) * 1000, "text": FURIOUS,
                      "identifiers": {"email": f"{name}.{len(detractors)}@example.net"},
                      "survey": {"kind": "nps", "score": 2}}
            detractors[len(out)] = event_id
            out.append(("survey", event_id.encode(), encode_json(survey)))
    return out, detractors


def _follow_alerts(settings: Any, arrived: dict[str, float], stop: threading.Event) -> None:
    async def follow() -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.kafka_bootstrap,
                                    group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for messages in batch.values():
                    for message in messages:
                        alert = decode_alert(message.value)
                        for event_id in alert.get("evidence") or []:
                            arrived.setdefault(event_id, now)
        finally:
            await consumer.stop()

    asyncio.run(follow())


def measure(workdir: Path, events: int = 40_000, rate: float = 2_500.0, every: int = 200, seed: int = 11
            ) -> dict[str, Any]:
    with KafkaBroker(workdir / "kafka") as kafka, ClickHouseServer(workdir / "clickhouse") as clickhouse:
        settings = isolated_settings(kafka.bootstrap, clickhouse.url, "alert_latency", sink_flush_seconds=0.25,
                                     ingest_batch_seconds=0.05, log_level="WARNING")
        base_ms = recent_base_ms()
        raw = [(settings.raw_topic(channel), key, value)
               for channel, key, value in simulated(events, seed, 0, base_ms).records]
        records, detractors = _with_detractors(raw, every, base_ms, "latency")
        records = [(settings.raw_topic(topic) if topic == "survey" else topic, key, value)
                   for topic, key, value in records]
        arrived: dict[str, float] = {}
        stop = threading.Event()
        with WorkerProcess(settings, workdir / "worker.log", state_dir=workdir / "state") as worker:
            follower = threading.Thread(target=_follow_alerts, args=(settings, arrived, stop), daemon=True)
            follower.start()
            # Warm up as phase 3 of make bench does: the worker has joined, resolved and published before the clock
            # starts (its first publish reads the topic's tail and opens the alert producer).
            warm, warm_detractors = _with_detractors(
                [(settings.raw_topic(c), k, v) for c, k, v in simulated(2_000, seed + 1, 10_000_000, base_ms).records],
                1_000, base_ms, "warmup")
            publish(settings, [(settings.raw_topic(t) if t == "survey" else t, k, v) for t, k, v in warm])
            wait_until(lambda: drained(settings) and all(e in arrived for e in warm_detractors.values()), 300,
                       "the warm-up alerts did not arrive", workers=[worker])
            arrived.clear()
            sent_at: list[float] = []
            achieved = asyncio.run(produce_at_rate(settings, records, rate, sent_at))
            wait_until(lambda: drained(settings) and all(e in arrived for e in detractors.values()), 300,
                       "the detractors' alerts did not all arrive", workers=[worker])
            stop.set()
            follower.join(10)
    in_order = [arrived[event_id] - sent_at[index] for index, event_id in sorted(detractors.items())]
    latencies = sorted(in_order)
    quantiles = statistics.quantiles(latencies, n=100)
    quarter = max(1, len(in_order) // 4)
    return {"records": len(records), "rate_asked": rate, "rate_achieved": round(achieved), "alerts": len(latencies),
            "p50_s": round(quantiles[49], 3), "p95_s": round(quantiles[94], 3), "p99_s": round(quantiles[98], 3),
            "max_s": round(latencies[-1], 3),
            # a backlog shows as latency growing from the first quarter of the run to the last
            "median_first_quarter_s": round(statistics.median(in_order[:quarter]), 3),
            "median_last_quarter_s": round(statistics.median(in_order[-quarter:]), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.alert_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--rate", type=float, default=2_500.0, help="records/s (half of one worker's throughput)")
    parser.add_argument("--every", type=int, default=200, help="a detractor after every K records")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cem-alert-latency-") as workdir:
        result = measure(Path(workdir), args.events, args.rate, args.every)
    for name, value in result.items():
        print(f"{name:14} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

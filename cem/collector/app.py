"""The collector's HTTP side (aiohttp.web): admission, body, key, mapping, then Kafka; 200 only once every record
is acknowledged. The decisions themselves are pure (cem.domain.collect_request, cem.domain.collect_map)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cem.collector.gate import KafkaGate, KafkaUnavailable, Record
from cem.config import collect_rules
from cem.domain.collect_map import Mapped, MapRules, map_message
from cem.domain.collect_request import Envelope, Refusal, RequestRules, decoded_body, endpoint_of, read_envelope
from cem.domain.model import Rejection
from cem.metrics import CollectMetrics
from cem.settings import Settings
from streams.deadletters import dead_letter

log = logging.getLogger("cem.collect")
CORS = {"Access-Control-Allow-Origin": "*"}  # the browser library posts text/plain to avoid a preflight


@dataclass
class Admission:
    """Bounded work in flight: requests and body bytes. Past either bound a request is answered 429."""

    max_requests: int
    max_bytes: int
    requests: int = 0
    bytes: int = 0

    def enter(self, size: int) -> bool:
        if self.requests >= self.max_requests or (self.requests and self.bytes + size > self.max_bytes):
            return False
        self.requests += 1
        self.bytes += size
        return True

    def leave(self, size: int) -> None:
        self.requests -= 1
        self.bytes -= size


@dataclass
class Collector:
    settings: Settings
    gate: KafkaGate
    clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.request_rules: RequestRules
        self.map_rules: MapRules
        self.request_rules, self.map_rules = collect_rules(self.settings)
        self.admission = Admission(self.settings.collect_max_inflight_requests,
                                   self.settings.collect_max_inflight_bytes)
        self.metrics = CollectMetrics()
        self.metrics.kafka_up.set_function(lambda: 1.0 if self.gate.ready else 0.0)

    async def handle(self, request: web.Request) -> web.Response:
        began = time.perf_counter()
        endpoint = endpoint_of(request.path)
        if endpoint is None:
            return self.refuse(Refusal(404, "not_found", f"no endpoint {request.path[:80]}"))
        size = request.content_length or self.settings.collect_max_batch_bytes
        if not self.admission.enter(size):
            return self.refuse(Refusal(429, "overloaded", "too many requests in flight: retry later"))
        try:
            if not self.gate.ready:
                return self.refuse(Refusal(503, "kafka_unavailable", "the event log is unreachable: retry later"))
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return self.refuse(Refusal(413, "too_large", "the body is over "
                                           f"{self.settings.collect_max_batch_bytes} bytes"))
            decoded = decoded_body(body, request.headers.get("Content-Encoding", ""),
                                   self.settings.collect_max_batch_bytes)
            if isinstance(decoded, Refusal):
                return self.refuse(decoded)
            envelope = read_envelope(endpoint, decoded, request.headers.get("Authorization", ""),
                                     self.request_rules)
            if isinstance(envelope, Refusal):
                return self.refuse(envelope)
            return await self.accept(envelope, began)
        finally:
            self.admission.leave(size)

    async def accept(self, envelope: Envelope, began: float) -> web.Response:
        received_ms = self.clock_ms()
        records: list[Record] = []
        channels: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for message in envelope.messages:
            mapped = map_message(message, envelope.dialect, envelope.sent_at, received_ms,
                                 envelope.default_channel, self.map_rules)
            if isinstance(mapped, Rejection):
                records.append(self.dead_letter(message, mapped, received_ms))
                reasons[mapped.reason] += 1
            else:
                records.append(self.record(mapped, received_ms))
                channels[mapped.channel] += 1
        try:
            await self.gate.send_all(records)
        except KafkaUnavailable as exc:
            return self.refuse(Refusal(503, "kafka_unavailable", f"{exc}: retry later"))
        accepted, rejected = sum(channels.values()), sum(reasons.values())
        self.counts.update(events=accepted, dead_lettered=rejected, status_200=1)
        for channel, n in channels.items():
            self.metrics.events.labels(channel).inc(n)
        for reason, n in reasons.items():
            self.metrics.dead_letters.labels(reason).inc(n)
        self.metrics.requests.labels("200", "ok").inc()
        self.metrics.seconds.observe(time.perf_counter() - began)
        return web.json_response({"success": True, "status": 1, "accepted": accepted, "dead_lettered": rejected},
                                 headers=CORS)

    def record(self, mapped: Mapped, received_ms: int) -> Record:
        key = mapped.event_id.encode() if mapped.event_id else None
        return (self.settings.raw_topic(mapped.channel), key, orjson.dumps(mapped.event), None, received_ms)

    def dead_letter(self, message: Any, rejection: Rejection, received_ms: int) -> Record:
        """A message that cannot become an event on a channel topic: the dead-letter topic, as the SDK sent it."""
        value = orjson.dumps(message)
        source = "collect#" + hashlib.sha256(value).hexdigest()[:32]  # the same message always has the same key
        letter = dead_letter(source, value, rejection.reason, rejection.detail, received_ms,
                             self.settings.message_max_bytes)
        return (self.settings.deadletter_topic, letter.key, letter.value, letter.headers, received_ms)

    def refuse(self, refusal: Refusal) -> web.Response:
        self.counts[f"status_{refusal.status}"] += 1
        self.metrics.requests.labels(str(refusal.status), refusal.code).inc()
        headers = dict(CORS)
        if refusal.status in (429, 503):
            headers["Retry-After"] = str(self.settings.collect_retry_after_seconds)
        return web.json_response(refusal.body(), status=refusal.status, headers=headers)

    async def status(self, request: web.Request) -> web.Response:
        down = self.gate.down_since
        return web.json_response({
            "kafka": "up" if self.gate.ready else "down",
            "kafka_down_seconds": round(time.monotonic() - down, 1) if down is not None else 0,
            "in_flight_requests": self.admission.requests, "in_flight_bytes": self.admission.bytes,
            **dict(self.counts)})

    async def metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"kafka": "up" if self.gate.ready else "down"},
                                 status=200 if self.gate.ready else 503)


COLLECTOR = web.AppKey("collector", Collector)


def build_app(settings: Settings, gate: KafkaGate) -> web.Application:
    collector = Collector(settings, gate)
    # The compressed body can be no larger than the inflated limit; aiohttp refuses more before reading it. Bodies
    # are inflated by decoded_body, bounded by the limit, rather than by aiohttp.
    app = web.Application(client_max_size=settings.collect_max_batch_bytes,
                          handler_args={"auto_decompress": False})
    app.router.add_get("/status", collector.status)
    app.router.add_get("/health", collector.health)
    app.router.add_get("/metrics", collector.metrics_text)
    app.router.add_post("/{tail:.*}", collector.handle)

    async def start_gate(app: web.Application) -> None:
        gate.start()

    async def stop_gate(app: web.Application) -> None:
        await gate.stop()

    app.on_startup.append(start_gate)
    app.on_cleanup.append(stop_gate)
    app[COLLECTOR] = collector
    return app

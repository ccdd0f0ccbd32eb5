"""The resolve stage's dead letters from what the resolver service returns: events the warehouse rejected
(`warehouse_rejected`) and conflicting copies of an event (`duplicate_conflict`), each under a key a replay repeats.
The service runs on the in-memory warehouse (sinks.fake)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import orjson

from cem.domain.model import Interaction
from cem.service.resolver_service import ResolverService
from cem.settings import Settings
from sinks.fake import FakeWarehouseServer
from streams.deadletters import contract_record
from streams.resolve import DUPLICATE_CONFLICT, ResolveStage
from tests.unit.factories import DAY_MS, NOW_MS, event

T0 = NOW_MS - DAY_MS
EMAIL = ("email", "x@example.com")


def service_on(server: FakeWarehouseServer) -> ResolverService:
    return ResolverService(Settings(sink_retry_max_seconds=0.001), clock=lambda: NOW_MS / 1000,
                           open_warehouse=server.connect)


class RecordingTopic:
    """Stands in for a Faust topic: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **message: Any) -> asyncio.Future[None]:
        self.sent.append(message)
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)  # like Faust: awaiting send() gives the delivery, awaited in turn
        return delivered


def test_the_resolve_stage_dead_letters_conflicting_copies_under_a_key_naming_their_content() -> None:
    settings = Settings(topic_prefix="acme")
    first = event("e1", T0, [EMAIL], channel="email", type="email_reply", fingerprint="fp-email")
    other_channel = event("e1", T0, [EMAIL], channel="chat", type="chat_message", fingerprint="fp-chat")
    retry = event("e1", T0, [EMAIL], channel="email", type="email_reply", fingerprint="fp-email")
    topic = RecordingTopic()
    stage = ResolveStage(settings, service_on(FakeWarehouseServer()), topic, clock=lambda: 5.0)

    async def write(events: list[Interaction]) -> dict[str, int]:
        counts = {"resolved": 0, "written": 0, "warehouse_rejected": 0, DUPLICATE_CONFLICT: 0}
        await stage._write(asyncio.get_running_loop(), events, counts)
        return counts

    assert asyncio.run(write([first, other_channel, retry]))[DUPLICATE_CONFLICT] == 1
    assert asyncio.run(write([other_channel, retry]))[DUPLICATE_CONFLICT] == 1  # a replay: the same dead letter
    assert [m["key"] for m in topic.sent] == [b"acme.resolve#e1#fp-chat"] * 2
    assert topic.sent[0] == topic.sent[1]
    headers = dict(topic.sent[0]["headers"])
    assert (headers["cem.reason"], headers["cem.source"]) == (b"duplicate_conflict", b"acme.resolve#e1#fp-chat")
    assert orjson.loads(topic.sent[0]["value"]) == contract_record(other_channel)


def test_the_resolve_stage_dead_letters_rejected_events_as_contract_json_and_counts_the_rest() -> None:
    settings = Settings(topic_prefix="acme")
    server = FakeWarehouseServer()
    server.refuse_rows(lambda row: "POISON#" in row["text"])
    good = [replace(event(f"g{i}", T0 + i, [EMAIL]), text="fine") for i in range(5)]
    bad = [replace(event(f"b{i}", T0 + 10 + i, [EMAIL]), text="POISON# broken") for i in range(2)]
    topic = RecordingTopic()
    stage = ResolveStage(settings, service_on(server), topic, clock=lambda: 5.0)

    async def write(events: list[Interaction]) -> dict[str, int]:
        counts = {"resolved": 0, "written": 0, "warehouse_rejected": 0, DUPLICATE_CONFLICT: 0}
        await stage._write(asyncio.get_running_loop(), events, counts)
        return counts

    assert asyncio.run(write([*good[:3], bad[0], *good[3:], bad[1]])) == {
        "resolved": 7, "written": 5, "warehouse_rejected": 2, DUPLICATE_CONFLICT: 0}
    assert sorted(m["key"] for m in topic.sent) == [b"acme.resolve#b0", b"acme.resolve#b1"]
    for message in topic.sent:
        headers = dict(message["headers"])
        assert headers["cem.reason"] == b"warehouse_rejected" and b"395" in headers["cem.detail"]
    assert sorted(orjson.loads(m["value"])["event_id"] for m in topic.sent) == ["b0", "b1"]
    assert orjson.loads(topic.sent[0]["value"]) == contract_record(bad[int(topic.sent[0]["key"][-1:])])
    # A replay rejects them again, under the same keys; the good ones are duplicates.
    assert asyncio.run(write([*good, *bad]))["warehouse_rejected"] == 2
    assert [m["key"] for m in topic.sent[2:]] == [m["key"] for m in topic.sent[:2]]

"""The resolve stage's dead letters from what the resolver service returns: events the warehouse rejected
(`warehouse_rejected`) and conflicting copies of an event (`duplicate_conflict`), each under a key a replay repeats.
The service runs on the in-memory warehouse (sinks.fake)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import orjson

from cem.domain.model import Interaction
from cem.service.resolver_service import ResolverService
from cem.settings import Settings
from schemas.internal import encode_batch, signature_headers
from sinks.fake import FakeWarehouseServer
from streams.deadletters import contract_record
from streams.resolve import ResolveStage
from streams.status import WorkerStatus
from tests.unit.factories import DAY_MS, NOW_MS, event

T0 = NOW_MS - DAY_MS
EMAIL = ("email", "x@example.com")


def service_on(server: FakeWarehouseServer) -> ResolverService:
    return ResolverService(Settings(sink_retry_max_seconds=0.001, state_store="memory"), clock=lambda: NOW_MS / 1000,
                           open_warehouse=server.connect)


def counted(stage: ResolveStage, events: list[Interaction]) -> WorkerStatus:
    """Hands the stage one signed resolver message holding `events`; returns what its status counted for it."""
    payload = encode_batch(events)
    message = SimpleNamespace(topic=f"{stage.settings.topic_prefix}.resolve", partition=0, offset=0, value=payload,
                              headers=signature_headers(stage.settings.signing_key, payload))
    before = replace(stage.status)
    asyncio.run(stage.handle([SimpleNamespace(message=message)]))
    after = stage.status
    return WorkerStatus(resolved=after.resolved - before.resolved, written=after.written - before.written,
                        warehouse_rejected=after.warehouse_rejected - before.warehouse_rejected,
                        duplicate_conflict=after.duplicate_conflict - before.duplicate_conflict)


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
    assert counted(stage, [first, other_channel, retry]).duplicate_conflict == 1
    assert counted(stage, [other_channel, retry]).duplicate_conflict == 1  # a replay: the same dead letter
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
    assert counted(stage, [*good[:3], bad[0], *good[3:], bad[1]]) == WorkerStatus(
        resolved=7, written=5, warehouse_rejected=2, duplicate_conflict=0)
    assert sorted(m["key"] for m in topic.sent) == [b"acme.resolve#b0", b"acme.resolve#b1"]
    for message in topic.sent:
        headers = dict(message["headers"])
        assert headers["cem.reason"] == b"warehouse_rejected" and b"395" in headers["cem.detail"]
    assert sorted(orjson.loads(m["value"])["event_id"] for m in topic.sent) == ["b0", "b1"]
    assert orjson.loads(topic.sent[0]["value"]) == contract_record(bad[int(topic.sent[0]["key"][-1:])])
    # A replay rejects them again, under the same keys; the good ones are duplicates.
    assert counted(stage, [*good, *bad]).warehouse_rejected == 2
    assert [m["key"] for m in topic.sent[2:]] == [m["key"] for m in topic.sent[:2]]

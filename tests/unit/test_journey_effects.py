"""Journeys per customer in the resolver's effects, without a warehouse: the journey alias rows, and the resolve
stage's duplicate_conflict dead letter. (The views over them are tested on chdb in tests/component.)"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson

from cem.domain.model import Interaction
from cem.domain.resolver import Resolver, ResolverConfig
from cem.settings import Settings
from schemas.internal import encode_batch, signature_headers
from sinks.clickhouse import effect_columns
from streams.app import SinkResult
from streams.deadletters import contract_record
from streams.resolve import ResolveStage
from tests.unit.factories import DAY_MS, NOW_MS, cid, event, jid

T0 = NOW_MS - DAY_MS
EMAIL = ("email", "x@example.com")
PHONE = ("phone", "+14155550123")


def test_journey_alias_rows_one_per_id_and_never_also_live() -> None:
    resolver = Resolver(ResolverConfig())
    chat = {"channel": "chat", "type": "chat_message", "issue_ref": "7"}
    resolver.process([event("c", T0 + 3, [("anonymous_id", "a")], **chat),
                      event("b", T0 + 2, [PHONE], **chat), event("a", T0 + 1, [EMAIL], **chat)], NOW_MS)
    # One batch: c's journey is absorbed by b's, then b's (with c's) by a's: two alias rows for c, one written.
    order = {"channel": "commerce", "type": "purchase"}
    effects = resolver.process([event("bc", T0 + 4, [PHONE, ("anonymous_id", "a")], **order),
                                event("ab", T0 + 5, [EMAIL, PHONE], **order)], NOW_MS + 1)
    assert [(a.from_id, a.into_id) for a in effects.journey_aliases] == [
        (jid("7", "c"), jid("7", "b")), (jid("7", "b"), jid("7", "a")), (jid("7", "c"), jid("7", "a"))]
    journeys = effect_columns(effects, NOW_MS, 7 * DAY_MS)["journey_log"]
    rows = sorted(zip(journeys["journey_id"], journeys["merged_into"], journeys["customer_id"], strict=True))
    assert rows == sorted([(jid("7", "a"), "", cid("a")), (jid("7", "b"), jid("7", "a"), ""),
                           (jid("7", "c"), jid("7", "a"), "")])
    assert set(journeys["kind"]) == {"service"} and set(journeys["issue_ref"]) == {"7"}


class RecordingTopic:
    """Stands in for a Faust topic: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **message: Any) -> asyncio.Future[None]:
        self.sent.append(message)
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)  # like Faust: awaiting send() gives the delivery, awaited in turn
        return delivered


class ResolverOnlySink:
    """The ResolverSink's interface over a bare resolver: every event it keeps counts as written."""

    def __init__(self) -> None:
        self.resolver = Resolver(ResolverConfig())

    def process_and_write(self, events: list[Interaction]) -> SinkResult:
        effects = self.resolver.process(events, NOW_MS)
        return SinkResult(effects, len(effects.interactions))


def test_the_resolve_stage_dead_letters_conflicting_copies_under_a_key_naming_their_content() -> None:
    settings = Settings(topic_prefix="acme")
    first = event("e1", T0, [EMAIL], channel="email", type="email_reply", fingerprint="fp-email")
    other_channel = event("e1", T0, [EMAIL], channel="chat", type="chat_message", fingerprint="fp-chat")
    retry = event("e1", T0, [EMAIL], channel="email", type="email_reply", fingerprint="fp-email")
    topic = RecordingTopic()
    stage = ResolveStage(settings, ResolverOnlySink(), topic, clock=lambda: 5.0)

    async def write(events: list[Interaction]) -> int:
        payload = encode_batch(events)
        message = SimpleNamespace(topic="acme.resolve", partition=0, offset=0, value=payload,
                                  headers=signature_headers(settings.signing_key, payload))
        before = stage.status.duplicate_conflict
        await stage.handle([SimpleNamespace(message=message)])
        return stage.status.duplicate_conflict - before

    assert asyncio.run(write([first, other_channel, retry])) == 1
    assert asyncio.run(write([other_channel, retry])) == 1  # a replay: the same dead letter
    assert [m["key"] for m in topic.sent] == [b"acme.resolve#e1#fp-chat"] * 2
    assert topic.sent[0] == topic.sent[1]
    headers = dict(topic.sent[0]["headers"])
    assert (headers["cem.reason"], headers["cem.source"]) == (b"duplicate_conflict", b"acme.resolve#e1#fp-chat")
    assert orjson.loads(topic.sent[0]["value"]) == contract_record(other_channel)

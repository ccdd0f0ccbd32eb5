"""Journeys per customer in the warehouse (embedded ClickHouse): journey alias rows, the `interactions` view
resolving a stale journey_id, restore through load_snapshot; and the duplicate_conflict dead letter."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from cem.domain.model import Interaction, stable_id
from cem.domain.resolver import Resolver, ResolverConfig
from cem.settings import Settings
from schemas.internal import encode_batch, signature_headers
from sinks.clickhouse import effect_columns
from streams.app import ResolverSink, SinkResult
from streams.deadletters import contract_record
from streams.resolve import ResolveStage
from tests.unit.factories import DAY_MS, HOUR_MS, MINUTE_MS, NOW_MS, event

T0 = NOW_MS - DAY_MS
EMAIL = ("email", "x@example.com")
PHONE = ("phone", "+14155550123")
CHAT = {"channel": "chat", "type": "chat_message", "issue_ref": "1"}


def jid(issue_ref: str, event_id: str) -> str:
    return stable_id("j", issue_ref, event_id)


def cid(event_id: str) -> str:
    return stable_id("c", event_id)


BEFORE_MERGE = [
    event("u1", T0, [("email", "u1@example.com")], **CHAT),
    event("u2", T0 + 1, [("email", "u2@example.com")], **CHAT),
    event("u3", T0 + 2, [("email", "u3@example.com")], **CHAT),
    event("x0", T0, [EMAIL], channel="email", type="email_open"),
    event("x", T0 + HOUR_MS, [EMAIL], **CHAT),
    event("y", T0 + 30 * MINUTE_MS, [PHONE], channel="call_center", type="call_ended", issue_ref="1"),
    event("r", T0 + 2 * HOUR_MS, [PHONE], channel="support", type="ticket_resolved", issue_ref="1"),
]
MERGE = [event("link", T0 + 3 * HOUR_MS, [EMAIL, PHONE], channel="commerce", type="purchase")]
AFTER_RESTART = [event("x2", T0 + 4 * HOUR_MS, [EMAIL], **CHAT), *BEFORE_MERGE]


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


def _query(sink: ResolverSink, sql: str) -> list[tuple[Any, ...]]:
    db = sink._ensure_warehouse()
    return db.query(sql.format(db=db.database))


def test_views_resolve_merged_journeys_and_restore_rebuilds_them(tmp_path: Path) -> None:
    sink = ResolverSink(Settings(clickhouse_url=f"chdb://{tmp_path}/warehouse"), clock=lambda: NOW_MS / 1000)
    sink.process_and_write(BEFORE_MERGE)
    assert _query(sink, "SELECT count() FROM {db}.journeys WHERE kind = 'service'") == [(5,)]
    sink.process_and_write(MERGE)

    journeys = _query(sink, "SELECT journey_id, customer_id, issue_ref, contacts, resolved, fcr, "
                            "time_to_resolution_s FROM {db}.journeys WHERE kind = 'service' ORDER BY journey_id")
    assert sorted(journeys) == sorted([
        (jid("1", "u1"), cid("u1"), "1", 1, 0, 0, None), (jid("1", "u2"), cid("u2"), "1", 1, 0, 0, None),
        (jid("1", "u3"), cid("u3"), "1", 1, 0, 0, None), (jid("1", "y"), cid("x0"), "1", 2, 1, 0, 5400.0)])
    rows = {r[0]: r[1:] for r in _query(sink, "SELECT event_id, journey_id, origin_journey_id, customer_id "
                                              "FROM {db}.interactions WHERE issue_ref != ''")}
    assert rows["x"] == (jid("1", "y"), jid("1", "x"), cid("x0"))  # written before the merge, resolved now
    assert rows["y"] == rows["r"] == (jid("1", "y"), jid("1", "y"), cid("x0"))
    assert rows["u2"] == (jid("1", "u2"), jid("1", "u2"), cid("u2"))
    assert _query(sink, "SELECT count() FROM {db}.interactions_resolved") == [(8,)]

    # A restart: the resolver is rebuilt from these rows. The person's next contact joins the surviving journey,
    # and everything equals a resolver that never stopped.
    sink.invalidate()
    result = sink.process_and_write(AFTER_RESTART)
    assert result.effects.duplicates == len(BEFORE_MERGE)
    assert [(r.interaction.event_id, r.journey_id) for r in result.effects.interactions] == [("x2", jid("1", "y"))]
    never_stopped = Resolver(sink.config)
    for batch in (BEFORE_MERGE, MERGE, AFTER_RESTART):
        never_stopped.process(batch, NOW_MS)
    assert _state(sink.resolver) == _state(never_stopped)
    survivor = jid("1", "y")
    assert _query(sink, "SELECT contacts FROM {db}.journeys WHERE journey_id = '" + survivor + "'") == [(3,)]


def test_a_journey_only_refused_events_had_leaves_the_journeys_view(tmp_path: Path) -> None:
    """ClickHouse refuses an event's row: a journey that event had created is marked removed (not left behind
    with its contact counted), and the event published again once fixed brings it back under the same id."""
    sink = ResolverSink(Settings(clickhouse_url=f"chdb://{tmp_path}/warehouse"), clock=lambda: NOW_MS / 1000)
    _query(sink, "ALTER TABLE {db}.interaction_log ADD COLUMN refuse_guard UInt8 "
                 "DEFAULT throwIf(position(text, 'POISON#') > 0)")
    poison = replace(event("p", T0 + 1, [PHONE], **{**CHAT, "issue_ref": "9"}), text="POISON# broken")
    joined = replace(event("q", T0 + 2, [EMAIL], **CHAT), text="POISON# also broken")
    result = sink.process_and_write([poison, *BEFORE_MERGE[:5], joined])
    assert sorted(e.event_id for e, _ in result.refused) == ["p", "q"]
    journeys = _query(sink, "SELECT journey_id, issue_ref, contacts FROM {db}.journeys WHERE kind = 'service'")
    assert sorted(journeys) == sorted([(jid("1", e), "1", 1) for e in ("u1", "u2", "u3", "x")])
    assert _query(sink, "SELECT current_journey_id FROM {db}.journey_resolution WHERE journey_id = '"
                  + jid("9", "p") + "'") == [("-",)]

    fixed = replace(poison, text="fixed", fingerprint="fixed")
    assert sink.process_and_write([fixed]).refused == []
    journeys = _query(sink, "SELECT journey_id, customer_id, contacts FROM {db}.journeys WHERE issue_ref = '9'")
    assert journeys == [(jid("9", "p"), cid("p"), 1)]
    assert _query(sink, "SELECT journey_id FROM {db}.interactions WHERE event_id = 'p'") == [(jid("9", "p"),)]


def _state(resolver: Resolver | None) -> set[tuple[Any, ...]]:
    assert resolver is not None
    return {(j.journey_id, j.customer_id, frozenset(j.events.items()), frozenset(j.members))
            for refs in resolver.journeys.by_customer.values() for j in refs.values()}


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

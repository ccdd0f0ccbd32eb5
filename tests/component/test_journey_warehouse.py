"""Journeys per customer in the warehouse (embedded ClickHouse, chdb): the `interactions` view resolving a stale
journey_id, restore through load_snapshot, and a journey only refused events had."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from cem.domain.resolver import Resolver
from cem.settings import Settings
from streams.app import ResolverSink
from tests.unit.factories import DAY_MS, HOUR_MS, MINUTE_MS, NOW_MS, cid, event, jid

T0 = NOW_MS - DAY_MS
EMAIL = ("email", "x@example.com")
PHONE = ("phone", "+14155550123")
CHAT = {"channel": "chat", "type": "chat_message", "issue_ref": "1"}


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

"""The batch writer (sinks.writer): a batch's effects as columnar rows, one set per table, in the order the
exactly-once design needs, with the columns the migrations create."""

from __future__ import annotations

from cem.domain.model import identity_key
from cem.domain.resolver import Effects, Resolver, ResolverConfig
from sinks.clickhouse import migration_tables
from sinks.writer import JOURNEY_COLUMNS, SESSION_COLUMNS, TABLE_ORDER, effect_columns, override_rows
from tests.unit.factories import DAY_MS, HOUR_MS, MINUTE_MS, NOW_MS, cid, event, jid

T0 = NOW_MS - DAY_MS
EMAIL = ("email", "x@example.com")
PHONE = ("phone", "+14155550123")


def _busy_effects() -> Effects:
    """One batch with customers, links, merges, a refusal, a shared identifier, customer and session aliases,
    sessions, journeys."""
    t0 = NOW_MS - DAY_MS
    resolver = Resolver(ResolverConfig())
    return resolver.process(
        [
            event("a", t0, [("anonymous_id", "anon-1")], channel="web"),
            event("b", t0 + 10 * MINUTE_MS, [("device_id", "dev-1")], channel="mobile"),
            event("c", t0 + 20 * MINUTE_MS, [("anonymous_id", "anon-1"), ("device_id", "dev-1")]),
            event("d", t0 + 30 * MINUTE_MS, [("customer_ref", "CRM-1"), ("email", "a@x.org")], channel="commerce",
                  type="purchase"),
            event("e", t0 + 40 * MINUTE_MS, [("customer_ref", "CRM-2"), ("phone", "+14155550123")],
                  channel="store", type="purchase"),
            event("f", t0 + 50 * MINUTE_MS, [("customer_ref", "CRM-2"), ("email", "a@x.org")], channel="store",
                  type="purchase"),  # the email is shared by CRM-1 and CRM-2 now
            event("i", t0 + 52 * MINUTE_MS, [("customer_ref", "CRM-1"), ("phone", "+14155550999")]),
            event("j", t0 + 53 * MINUTE_MS, [("phone", "+14155550999"), ("anonymous_id", "anon-2")]),
            event("k", t0 + 54 * MINUTE_MS, [("customer_ref", "CRM-2"), ("anonymous_id", "anon-2")]),  # refused
            event("g", t0 + HOUR_MS, [("device_id", "dev-1")], channel="call_center", type="call_ended",
                  issue_ref="CASE-1"),
            event("h", t0 + 2 * HOUR_MS, [("device_id", "dev-1")], channel="support", type="ticket_resolved",
                  issue_ref="CASE-1"),
        ],
        NOW_MS,
    )


def test_effect_columns_shapes_and_order() -> None:
    effects = _busy_effects()
    assert effects.merges and effects.refused_merges and effects.shared and effects.session_aliases \
        and effects.journeys
    tables = effect_columns(effects, NOW_MS, 7 * DAY_MS)
    assert TABLE_ORDER[-2:] == ("interaction_log", "resolver_batches")  # the batch's mark comes last
    assert list(tables) == [t for t in TABLE_ORDER if t in tables]
    assert set(tables) == set(TABLE_ORDER)  # this batch touches every table
    for name, columns in tables.items():
        lengths = {column: len(values) for column, values in columns.items()}
        assert len(set(lengths.values())) == 1, (name, lengths)
        assert set(columns["version"]) == {effects.version}
    assert len(tables["interaction_log"]["event_id"]) == 11
    assert set(tables["interaction_log"]["ingested_ms"]) == {NOW_MS}
    assert list(tables["journey_log"]) == [*JOURNEY_COLUMNS, "version"]
    assert set(tables["journey_log"]["kind"]) == {"service"}  # sessions have a log of their own
    assert list(tables["session_log"]) == [*SESSION_COLUMNS, "version"]
    assert tables["customer_merges"]["seq"] == list(range(len(effects.merges)))


def test_effect_columns_match_the_migrations() -> None:
    schema = migration_tables()
    for name, columns in effect_columns(_busy_effects(), NOW_MS, 7 * DAY_MS).items():
        assert name in schema, name
        assert set(columns) <= set(schema[name]), (name, set(columns) - set(schema[name]))


def test_effect_columns_one_alias_row_per_id() -> None:
    tables = effect_columns(_busy_effects(), NOW_MS, 7 * DAY_MS)
    aliases = tables["id_aliases"]
    keys = list(zip(aliases["kind"], aliases["alias_id"], strict=True))
    assert len(keys) == len(set(keys))
    assert {k for k, _ in keys} == {"customer", "session"}


def test_session_rows_live_and_absorbed() -> None:
    """A live session is written with its customer and figures; an absorbed one names only the session that
    absorbed it (no customer: restore reads owners from rows that name one)."""
    effects = _busy_effects()
    sessions = effect_columns(effects, NOW_MS, 7 * DAY_MS)["session_log"]
    rows = {row[0]: row for row in zip(*(sessions[c] for c in SESSION_COLUMNS), strict=True)}
    absorbed = {a.from_id: a.into_id for a in effects.session_aliases}
    live = effects.sessions
    assert set(rows) == set(absorbed) | set(live) and not set(absorbed) & set(live)
    for session_id, into_id in absorbed.items():
        assert rows[session_id] == (session_id, "", 0, 0, 0, [], into_id)
    for session in live.values():
        assert rows[session.session_id] == (session.session_id, session.customer_id, session.start_ms,
                                            session.end_ms, session.events, sorted(session.channels), "")


def test_an_empty_batch_writes_only_its_mark() -> None:
    assert effect_columns(Effects(version=7, duplicates=3), NOW_MS, DAY_MS) == {
        "resolver_batches": {"version": [7], "interactions": [0], "duplicates": [3], "written_ms": [NOW_MS]}}


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


def test_customer_overrides_only_for_sets_whose_rows_may_carry_another_customer() -> None:
    """A set first seen in a batch, all of whose rows carry its final customer, needs no override; a set that
    moved (a merge) after its rows were written does, in the batch that moved it or in a later one."""
    resolver = Resolver(ResolverConfig())
    store = {"channel": "store", "type": "purchase"}
    first = resolver.process([event("e1", T0, [EMAIL], **store)], NOW_MS)
    assert override_rows(first) == []
    phone_only, both = [PHONE], [EMAIL, PHONE]
    second = resolver.process([event("e2", T0 + 1, phone_only, **store), event("e3", T0 + 2, both, **store)],
                              NOW_MS + 1)
    # e2's phone set was new and written with e2's own customer, then merged into e1's: its rows need the override.
    assert override_rows(second) == [("customer", identity_key(tuple(phone_only)), cid("e1"))]
    third = resolver.process([event("e4", T0 - 5, [("email", "b@example.com"), PHONE], **store)], NOW_MS + 2)
    moved = {key: owner for kind, key, owner in override_rows(third) if kind == "customer"}
    # A late event older than everything: its customer survives the merge, and every set that moved gets one.
    assert moved == {identity_key(s): owner for s, (owner, _) in third.identity_sets.items()
                     if s not in third.first_sets}
    assert moved and set(moved.values()) == {cid("e4")}


def test_a_stale_override_is_written_again_once_by_the_batch_or_with_its_sets_customer_as_restored() -> None:
    """A stale key the batch writes gets the batch's customer, once; one it leaves alone the customer given, if
    known."""
    batch = Resolver(ResolverConfig()).process([event("e1", NOW_MS, [("email", "a@x.io")])], NOW_MS)
    [(identifiers, (owner, _))] = batch.identity_sets.items()
    touched, untouched = identity_key(identifiers), identity_key((("phone", "+15550100"),))
    unknown = identity_key((("phone", "+15550199"),))  # a set only the cut batch made: left to the batch
    rows = override_rows(batch, {touched: "c_restored", untouched: "c_other", unknown: ""})
    assert sorted(r for r in rows if r[0] == "customer") == \
        sorted([("customer", touched, owner), ("customer", untouched, "c_other")])
    assert [r for r in override_rows(batch) if r[0] == "customer"] == []  # a first set needs none otherwise

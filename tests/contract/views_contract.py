"""The analysts' views over what the resolver service wrote, on the SQL engines (chdb in tests/component, a
ClickHouse 18.16 server in tests/integration, each binding `engine` in a subclass of `ViewsContract`; the fake has
no views): journey alias rows, the `interactions` view resolving a stale journey_id, a
journey only rejected events had leaving the `journeys` view, a restore that rebuilds merged journeys, and
sessions written before they had a log of their own."""

from __future__ import annotations

import random
import threading
from dataclasses import replace
from typing import Any

import pytest

from cem.domain.identity_owner import IdentityRequest
from cem.domain.identity_replica import identity_changes
from cem.domain.model import Interaction
from cem.domain.resolver import Resolver
from cem.domain.text import analyse
from cem.service.resolver_service import ResolverService
from cem.service.retry import Stopping
from cem.service.split_service import SplitWarehouse, owner_from
from cem.settings import Settings
from sinks.clickhouse import MIGRATIONS_DIR, split_statements, without_existing_columns
from sinks.fake import FakeWarehouseServer
from sinks.identity_reads import identity_changes_between, replica_start
from sinks.squash import squash
from sinks.timeline import customer_timeline_sql
from sinks.writer import EARLY_TABLES, effect_columns
from tests.contract.backends import Backend
from tests.unit.factories import DAY_MS, HOUR_MS, MINUTE_MS, NOW_MS, cid, event, jid, journey_state
from tests.unit.test_cut_batches import batches as cut_batches
from tests.unit.test_cut_batches import views as views_on_the_fake

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


def service_on(engine: Backend) -> ResolverService:
    return ResolverService(Settings(sink_retry_max_seconds=0.001, state_store="memory"), clock=lambda: NOW_MS / 1000,
                           open_warehouse=engine.open)


def _query(engine: Backend, sql: str) -> list[tuple[Any, ...]]:
    db = engine.open()
    return db.query(sql.format(db=db.database))


def _poisoned_batch(rng: random.Random) -> list[Interaction]:
    events = []
    for i in range(60):
        base = event(f"e{i:02d}", NOW_MS - i * 60_000, [("email", f"p{i % 7}@example.com")], channel="chat",
                     type="chat_message", issue_ref=f"CASE-{i % 5}")
        poison = i in (3, 17, 18, 41)
        events.append(replace(base, text=("POISON# " if poison else "") + f"message {i}"))
    rng.shuffle(events)
    return events


class ViewsContract:
    """The tests; a layer's subclass named Test... binds `engine` to its SQL engine."""

    @pytest.mark.parametrize("table", ["overrides", "alert_timers"])
    def test_a_batch_cut_short_shows_in_the_views_as_on_a_warehouse_never_cut(self, engine: Backend,
                                                                               table: str) -> None:
        """A worker killed after a batch's identity rows landed, before its overrides or after them: once the next
        one did the batch again (with the one after it), `interactions` and `journeys` show what they show on a
        warehouse never cut, as tests/unit/test_cut_batches.py reads that warehouse on the fake."""
        first, second, third = cut_batches()
        never_cut = FakeWarehouseServer()
        uncut = ResolverService(Settings(sink_retry_max_seconds=0.001, state_store="memory"),
                                clock=lambda: NOW_MS / 1000, open_warehouse=never_cut.connect)
        for batch in (first, second, third):
            uncut.process_and_write(batch)
        expected = views_on_the_fake(never_cut)

        service_on(engine).process_and_write(first)
        stopping = threading.Event()
        stopping.set()
        engine.faults.fail(table=table)
        with pytest.raises(Stopping):
            ResolverService(Settings(sink_retry_max_seconds=0.001, state_store="memory"), clock=lambda: NOW_MS / 1000,
                            open_warehouse=engine.open, stopping=stopping).process_and_write(second)
        service_on(engine).process_and_write([replace(e) for e in second] + third)

        interactions = {str(e): (str(c), str(s), str(j)) for e, c, s, j in _query(
            engine, "SELECT event_id, customer_id, session_id, journey_id FROM {db}.interactions")}
        assert interactions == expected["interactions"]
        sessions = {str(row[0]): (str(row[1]), *row[2:5], tuple(row[5])) for row in _query(
            engine, "SELECT journey_id, customer_id, started_ms, ended_ms, events, channels FROM {db}.journeys "
                    "WHERE kind = 'session'")}
        assert sessions == expected["sessions"]
        journeys = {str(row[0]): (str(row[1]), *row[2:4], tuple(row[4]), *row[5:]) for row in _query(
            engine, "SELECT journey_id, customer_id, events, contacts, channels, resolved, fcr FROM {db}.journeys "
                    "WHERE kind = 'service'")}
        assert journeys == expected["journeys"]
        assert len(_query(engine, "SELECT * FROM {db}.abandoned_batches")) == 1

    def test_views_resolve_merged_journeys_and_restore_rebuilds_them(self, engine: Backend) -> None:
        sink = service_on(engine)
        sink.process_and_write(BEFORE_MERGE)
        assert _query(engine, "SELECT count() FROM {db}.journeys WHERE kind = 'service'") == [(5,)]
        sink.process_and_write(MERGE)

        journeys = _query(engine, "SELECT journey_id, customer_id, issue_ref, contacts, resolved, fcr, "
                                "time_to_resolution_s FROM {db}.journeys WHERE kind = 'service' ORDER BY journey_id")
        assert sorted(journeys) == sorted([
            (jid("1", "u1"), cid("u1"), "1", 1, 0, 0, None), (jid("1", "u2"), cid("u2"), "1", 1, 0, 0, None),
            (jid("1", "u3"), cid("u3"), "1", 1, 0, 0, None), (jid("1", "y"), cid("x0"), "1", 2, 1, 0, 5400.0)])
        rows = {r[0]: r[1:] for r in _query(engine, "SELECT event_id, journey_id, origin_journey_id, customer_id "
                                                  "FROM {db}.interactions WHERE issue_ref != ''")}
        assert rows["x"] == (jid("1", "y"), jid("1", "x"), cid("x0"))  # written before the merge, resolved now
        assert rows["y"] == rows["r"] == (jid("1", "y"), jid("1", "y"), cid("x0"))
        assert rows["u2"] == (jid("1", "u2"), jid("1", "u2"), cid("u2"))
        assert _query(engine, "SELECT count() FROM {db}.interactions_resolved") == [(8,)]

        # A restart: the resolver is rebuilt from these rows. The person's next contact joins the surviving journey,
        # and everything equals a resolver that never stopped.
        sink.invalidate()
        result = sink.process_and_write(AFTER_RESTART)
        assert result.effects.duplicates == len(BEFORE_MERGE)
        assert [(r.interaction.event_id, r.journey_id) for r in result.effects.interactions] == [("x2", jid("1", "y"))]
        never_stopped = Resolver(sink.config)
        for batch in (BEFORE_MERGE, MERGE, AFTER_RESTART):
            never_stopped.process(batch, NOW_MS)
        assert sink.resolver is not None and journey_state(sink.resolver) == journey_state(never_stopped)
        survivor = jid("1", "y")
        assert _query(engine, "SELECT contacts FROM {db}.journeys WHERE journey_id = '" + survivor + "'") == [(3,)]

    def test_a_journey_only_rejected_events_had_leaves_the_journeys_view(self, engine: Backend) -> None:
        """ClickHouse refuses an event's row: a journey that event had created is marked removed (not left behind
        with its contact counted), and the event published again once fixed brings it back under the same id."""
        sink = service_on(engine)
        engine.reject_text("POISON#")
        poison = replace(event("p", T0 + 1, [PHONE], **{**CHAT, "issue_ref": "9"}), text="POISON# broken")
        joined = replace(event("q", T0 + 2, [EMAIL], **CHAT), text="POISON# also broken")
        result = sink.process_and_write([poison, *BEFORE_MERGE[:5], joined])
        assert sorted(e.event_id for e, _ in result.rejected) == ["p", "q"]
        journeys = _query(engine, "SELECT journey_id, issue_ref, contacts FROM {db}.journeys WHERE kind = 'service'")
        assert sorted(journeys) == sorted([(jid("1", e), "1", 1) for e in ("u1", "u2", "u3", "x")])
        assert _query(engine, "SELECT current_journey_id FROM {db}.journey_resolution WHERE journey_id = '"
                      + jid("9", "p") + "'") == [("-",)]

        fixed = replace(poison, text="fixed", fingerprint="fixed")
        assert sink.process_and_write([fixed]).rejected == []
        journeys = _query(engine, "SELECT journey_id, customer_id, contacts FROM {db}.journeys WHERE issue_ref = '9'")
        assert journeys == [(jid("9", "p"), cid("p"), 1)]
        assert _query(engine, "SELECT journey_id FROM {db}.interactions WHERE event_id = 'p'") == [(jid("9", "p"),)]

    def test_the_journeys_view_counts_no_rejected_event(self, engine: Backend) -> None:
        engine.reject_text("POISON#")
        result = service_on(engine).process_and_write(_poisoned_batch(random.Random(5)))
        assert sorted(e.event_id for e, _ in result.rejected) == ["e03", "e17", "e18", "e41"]
        assert _query(engine, "SELECT count(), uniqExact(event_id) FROM {db}.interaction_log") == [(56, 56)]
        # The journeys the rejected events had touched were written again without them. A journey is one customer's
        # events with one issue_ref: (email p<i % 7>, CASE-<i % 5>), two events each, one where a rejected one was.
        journeys = dict(_query(engine, "SELECT journey_id, contacts FROM {db}.journeys WHERE kind = 'service'"))
        contacts = {tuple(sorted(ids)): journeys[journey_id] for journey_id, ids in _query(
            engine, "SELECT journey_id, groupArray(event_id) FROM {db}.interactions GROUP BY journey_id")}
        expected: dict[tuple[str, ...], int] = {}
        for k in range(35):
            members = tuple(f"e{i:02d}" for i in (k, k + 35) if i < 60 and i not in (3, 17, 18, 41))
            expected[members] = len(members)
        assert contacts == expected
        assert _query(engine, "SELECT count() FROM {db}.journeys WHERE kind = 'service' AND contacts > 0") == [(35,)]

    def test_sessions_written_before_their_own_log_are_copied_by_its_migration(self, engine: Backend) -> None:
        """Sessions used to be journey_log rows of kind 'session': the migration that gives them session_log
        copies them, the journeys view lists them as before (an absorbed one not at all), and a second run of
        the copy changes nothing."""
        db = engine.open()
        old = [("s_old1", "c_1", T0, T0 + MINUTE_MS, 3, ["web"], ""),
               ("s_old2", "c_1", T0 + HOUR_MS, T0 + HOUR_MS, 1, ["mobile"], ""),
               ("s_gone", "", 0, 0, 0, [], "s_old1")]
        columns: dict[str, list[Any]] = {
            "journey_id": [r[0] for r in old], "kind": ["session"] * 3, "customer_id": [r[1] for r in old],
            "issue_ref": [""] * 3, "started_ms": [r[2] for r in old], "ended_ms": [r[3] for r in old],
            "events": [r[4] for r in old], "contacts": [r[4] for r in old], "channels": [r[5] for r in old],
            "resolved": [0] * 3, "resolved_ms": [0] * 3, "fcr": [0] * 3, "time_to_resolution_s": [None] * 3,
            "merged_into": [r[6] for r in old], "version": [5] * 3}
        db.insert("journey_log", columns)
        for _ in range(2):
            for statement in split_statements((MIGRATIONS_DIR / "0006_session_log.sql").read_text()):
                db.command(statement.format(db=db.database))
        rows = _query(engine, "SELECT journey_id, customer_id, started_ms, ended_ms, events, contacts, channels, "
                              "resolved, time_to_resolution_s FROM {db}.journeys WHERE kind = 'session' "
                              "ORDER BY journey_id")
        assert [tuple(row) for row in rows] == [
            ("s_old1", "c_1", T0, T0 + MINUTE_MS, 3, 3, ["web"], 0, None),
            ("s_old2", "c_1", T0 + HOUR_MS, T0 + HOUR_MS, 1, 1, ["mobile"], 0, None)]
        assert _query(engine, "SELECT count() FROM {db}.session_log") == [(6,)]  # copied twice, read once

    def test_the_baseline_mark_is_zero_on_a_new_warehouse_and_the_newest_row_on_one_from_before_the_marks(
            self, engine: Backend) -> None:
        """A migrated new warehouse has a mark at 0 (a first batch cut short is then found like any other); run
        on a warehouse with rows and no mark, the migration marks its newest row; run again, it adds nothing."""
        db = engine.open()
        assert _query(engine, "SELECT version FROM {db}.resolver_batches") == [(0,)]
        db.command(f"TRUNCATE TABLE {db.database}.resolver_batches")
        service = service_on(engine)
        service.process_and_write(BEFORE_MERGE)
        newest = db.newest_version_above(0, (*EARLY_TABLES, "interaction_log"))
        db.command(f"TRUNCATE TABLE {db.database}.resolver_batches")
        for _ in range(2):
            for statement in split_statements((MIGRATIONS_DIR / "0013_baseline_mark.sql").read_text()):
                db.command(statement.format(db=db.database))
        assert newest > 0 and _query(engine, "SELECT version FROM {db}.resolver_batches") == [(newest,)]

    def test_the_identity_catch_up_and_a_replicas_start_leave_an_abandoned_owner_batch_out(
            self, engine: Backend) -> None:
        """The split's owner cut short after its identity sets landed: once the next owner recorded the batch as
        abandoned, the catch-up it publishes and a replica's start read none of its rows; the batch done again is
        read by both."""
        owner_stage = SplitWarehouse(Settings(sink_retry_max_seconds=0.001, state_store="memory"), "owner",
                                     clock=lambda: NOW_MS / 1000, open_warehouse=engine.open)
        owner = owner_from(owner_stage.restored())
        owner_stage.write(owner.process(map(IdentityRequest.of, BEFORE_MERGE), NOW_MS))
        db = engine.open()
        marked = db.last_batch_version()
        cut = owner.process(map(IdentityRequest.of, MERGE), NOW_MS)
        for table, columns in effect_columns(cut, NOW_MS, 0).items():
            if table in ("identity_sets", "id_aliases", "customer_merges"):
                db.insert(table, columns)
        assert identity_changes_between(db, marked, None).size  # what a catch-up read before the fix
        redo_owner = owner_from(owner_stage.restored())
        assert db.abandoned_batches() == [(marked, cut.version)]
        assert identity_changes_between(db, marked, None).size == 0
        assert replica_start(db) == identity_changes_between(db, -1, marked)
        redone = redo_owner.process(map(IdentityRequest.of, MERGE), NOW_MS)
        owner_stage.write(redone)
        published = identity_changes_between(db, marked, None)
        assert published.version == redone.version
        assert published.sets == identity_changes(redone).sets and published.aliases == cut.customer_aliases
        assert replica_start(db).sets[(EMAIL, PHONE)] == published.sets[(EMAIL, PHONE)]

    def test_the_squash_job_keeps_every_view_and_empties_the_overrides(self, engine: Backend) -> None:
        """Merges write overrides; squashing applies them to the interaction rows and deletes them, and the views
        read the same before and after, and after later merges too."""
        sink = service_on(engine)
        sink.process_and_write(BEFORE_MERGE)
        sink.process_and_write(MERGE)
        views = ("SELECT event_id, customer_id, session_id, journey_id FROM {db}.interactions ORDER BY event_id",
                 "SELECT journey_id, kind, customer_id, contacts FROM {db}.journeys ORDER BY journey_id")
        before = [_query(engine, view) for view in views]
        kinds = dict(_query(engine, "SELECT kind, count() FROM {db}.overrides GROUP BY kind"))
        assert kinds.get("customer", 0) > 0 and kinds.get("journey", 0) > 0  # the merge moved sets and a journey
        moved = {row[0] for row in _query(engine, "SELECT event_id FROM {db}.interactions "
                                                  "WHERE customer_id != origin_customer_id")}
        assert moved  # rows written before the merge carry the absorbed customer until the squash

        result = squash(engine.open(), before_version=(NOW_MS + DAY_MS) * 1000)
        assert result.squashed["customer"] == kinds["customer"] and result.remaining == 0
        assert [_query(engine, view) for view in views] == before
        assert _query(engine, "SELECT count() FROM {db}.interactions WHERE customer_id != origin_customer_id "
                              "OR journey_id != origin_journey_id") == [(0,)]  # rewritten in place
        commands = [str(c) for (c,) in _query(engine, "SELECT command FROM system.mutations WHERE database = '{db}'")]
        assert any("UPDATE origin_customer_id" in c for c in commands)  # the squash's own mutations are there
        assert not [c for c in commands if "k_" in c]  # mutation texts are kept: they name no identity key

        # Later moves write overrides again; an override newer than the horizon is neither applied nor deleted.
        late = [event("link2", T0 + 5 * HOUR_MS, [("email", "u1@example.com"), PHONE], **CHAT)]
        sink.process_and_write(late)
        assert squash(engine.open(), before_version=NOW_MS * 1000).squashed == {"customer": 0, "session": 0,
                                                                                "journey": 0}
        assert sink.resolver is not None
        expected = {e.event_id: sink.resolver.graph.customer_of_set(e.identifiers)
                    for e in BEFORE_MERGE + MERGE + late}
        assert dict(_query(engine, "SELECT event_id, customer_id FROM {db}.interactions")) == expected

    def test_one_customers_timeline_read_past_the_overrides_is_the_views(self, engine: Backend) -> None:
        """For every customer, before and after a merge and a squash: the direct read gives the view's rows."""
        sink = service_on(engine)
        sink.process_and_write(BEFORE_MERGE)

        def agree() -> int:
            customers = [c for (c,) in _query(engine, "SELECT DISTINCT customer_id FROM {db}.interactions")]
            written = [c for (c,) in _query(engine, "SELECT DISTINCT origin_customer_id FROM {db}.interaction_log")]
            for customer in {*customers, *written}:  # a customer merged away has no rows left
                view = _query(engine, "SELECT event_id FROM {db}.interactions WHERE customer_id = "
                                      f"'{customer}' ORDER BY occurred_ms, event_id")
                direct = [(row[0],) for row in _query(engine, customer_timeline_sql("{db}", customer))]
                assert direct == view, customer
            return len(customers)

        assert agree() == 5
        sink.process_and_write(MERGE)  # x0, x, y, r and link become one customer: their rows carry two ids
        assert _query(engine, "SELECT count() FROM {db}.overrides WHERE kind = 'customer'") != [(0,)]
        assert agree() == 4
        squash(engine.open(), before_version=(NOW_MS + DAY_MS) * 1000)
        assert agree() == 4

    def test_interactions_carry_the_text_signals(self, engine: Backend) -> None:
        texts = {"t1": "Third time I call about my bill, I'm furious! Please refund me.",
                 "t2": "Delivered in two days, love it 😍", "t3": None}
        events = [replace(event(eid, T0 + i, [("email", f"{eid}@example.com")], **CHAT), text=text,
                          text_signals=analyse(text)) for i, (eid, text) in enumerate(texts.items())]
        service_on(engine).process_and_write(events)
        rows = {r[0]: r[1:] for r in _query(
            engine, "SELECT event_id, round(text_sentiment, 1), emotions, emotion_intensities, emotion_intensity, "
                    "round(effort, 1), actionability, topics, length(text_cues) > 0, sentence_count "
                    "FROM {db}.interactions")}
        for e in events[:2]:
            s = e.text_signals
            assert s is not None
            assert rows[e.event_id] == (s.sentiment, [label for label, _ in s.emotions], [i for _, i in s.emotions],
                                        s.emotion_intensity, s.effort, s.actionability, list(s.topics), 1,
                                        s.sentences)
        assert rows["t1"][5:7] == ("needs_response", ["billing"]) and rows["t1"][4] == -4.0
        assert rows["t3"] == (None, [], [], None, None, "", [], 0, 0)
        # Averages skip the events without an effort signal, as the effort scale requires.
        assert _query(engine, "SELECT round(avg(effort), 1) FROM {db}.interactions") == [(-4.0,)]

    def test_the_text_signals_migration_can_run_again(self, engine: Backend) -> None:
        db = engine.open()
        for statement in split_statements((MIGRATIONS_DIR / "0008_text_signals.sql").read_text()):
            pending = without_existing_columns(db, statement.format(db=db.database))
            assert not (pending or "").startswith("ALTER")  # every column exists: the ALTER is left out
            if pending:
                db.command(pending)
        assert _query(engine, "SELECT count() FROM {db}.interactions WHERE effort IS NULL") == [(0,)]

"""Late and corrected data in the experience views, on the SQL engines (chdb in tests/component, a ClickHouse 18.16
server in tests/integration, each binding `engine` in a subclass of `ExperienceContract`): a customer merge
attributes a survey that had nothing to rate and moves the lifecycle and attribution; a late contact revises its
journey's friction and a late page view its session's, each in one row; a replayed batch changes nothing; every
column of every view can be read alone."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cem.domain.model import Interaction
from cem.service.resolver_service import ResolverService
from cem.settings import Settings
from tests.contract.backends import Backend
from tests.unit.factories import DAY_MS, HOUR_MS, MINUTE_MS, NOW_MS, event, jid

T0 = NOW_MS - 2 * DAY_MS
EMAIL = ("email", "late@example.com")
PHONE = ("phone", "+14155550177")
VIEWS = ("experience_responses", "experience_daily", "journey_experience", "session_friction",
         "customer_lifecycle_history", "customer_lifecycle", "purchase_touchpoints", "purchase_attribution")


def _service(engine: Backend) -> ResolverService:
    return ResolverService(Settings(sink_retry_max_seconds=0.001, state_store="memory"), clock=lambda: NOW_MS / 1000,
                           open_warehouse=engine.open)


def _query(engine: Backend, sql: str) -> list[tuple[Any, ...]]:
    db = engine.open()
    return [tuple(list(v) if isinstance(v, list | tuple) else v for v in row)
            for row in db.query(sql.format(db=db.database))]


def _survey(event_id: str, at_ms: int, kind: str, score: int, **fields: Any) -> Interaction:
    return replace(event(event_id, at_ms, [PHONE], channel="survey", type="survey_response", **fields),
                   survey_kind=kind, survey_score=score)


def _view(event_id: str, at_ms: int, url: str) -> Interaction:
    return replace(event(event_id, at_ms, [EMAIL]), properties={"url": url})


class ExperienceContract:
    def test_a_merge_attributes_a_survey_and_moves_lifecycle_and_attribution(self, engine: Backend) -> None:
        sink = _service(engine)
        chat = event("chat1", T0, [EMAIL], channel="chat", type="chat_message", issue_ref="7")
        sink.process_and_write([chat, _survey("nps1", T0 + HOUR_MS, "nps", 3)])
        responses = "SELECT attributed_by, journey_type, journey_id, touchpoint_channels FROM {db}.experience_responses"
        assert _query(engine, responses) == [("none", "unattributed", "", [])]
        daily = "SELECT touchpoint_channel, journey_type, responses, detractors FROM {db}.experience_daily"
        assert _query(engine, daily) == [("(none)", "unattributed", 1, 1)]
        assert _query(engine, "SELECT count() FROM {db}.customer_lifecycle") == [(2,)]

        # An order carries the email and the phone: one customer, whose survey now rates her chat's journey.
        sink.process_and_write([event("order1", T0 + 2 * HOUR_MS, [EMAIL, PHONE], channel="commerce",
                                      type="purchase")])
        assert _query(engine, responses) == [("recent_contact", "service", jid("7", "chat1"), ["chat"])]
        assert _query(engine, daily) == [("chat", "service", 1, 1)]  # moved, not counted twice
        assert _query(engine, "SELECT count(), any(churn_drivers) FROM {db}.customer_lifecycle") == [
            (1, ["detractor"])]
        assert _query(engine, "SELECT path FROM {db}.purchase_touchpoints") == [(["chat"],)]
        assert _query(engine, "SELECT channel, first_touch, last_touch, linear FROM {db}.purchase_attribution") == [
            ("chat", 1, 1, 1.0)]

    def test_a_late_contact_revises_its_journey_once_and_a_replay_changes_nothing(self, engine: Backend) -> None:
        sink = _service(engine)
        call = event("call1", T0, [EMAIL], channel="call_center", type="call_ended", issue_ref="8")
        resolved = event("done1", T0 + 2 * HOUR_MS, [EMAIL], channel="support", type="ticket_resolved",
                         issue_ref="8")
        sink.process_and_write([call, resolved])
        measures = ("SELECT contacts, channel_path, channel_switches, repeat_contacts, contacts_to_resolution, "
                    "first_response_s, friction_score FROM {db}.journey_experience")
        assert _query(engine, measures) == [(1, ["call_center"], 0, 0, 1, 0.0, 0)]

        # A chat about the same issue half an hour before the call arrives late: the journey started on chat.
        late = event("chat2", T0 - 30 * MINUTE_MS, [EMAIL], channel="chat", type="chat_message", issue_ref="8")
        sink.process_and_write([late])
        assert _query(engine, measures) == [(2, ["chat", "call_center"], 1, 1, 2, 1800.0, 2)]
        sink.process_and_write([call, resolved, late])  # a replay
        assert _query(engine, measures) == [(2, ["chat", "call_center"], 1, 1, 2, 1800.0, 2)]

    def test_a_late_page_view_revises_its_session(self, engine: Backend) -> None:
        sink = _service(engine)
        view = _view("v1", T0, "/pay")
        other = _view("v2", T0 + 20_000, "/help")
        sink.process_and_write([view, other])
        friction = "SELECT events, page_views, repeat_views, friction_score FROM {db}.session_friction"
        assert _query(engine, friction) == [(2, 2, 0, 0)]
        sink.process_and_write([_view("v0", T0 - 4_000, "/pay")])
        assert _query(engine, friction) == [(3, 3, 1, 1)]  # /pay again 4 seconds later: one repeat view

    def test_every_column_of_every_view_can_be_selected_alone(self, engine: Backend) -> None:
        """ClickHouse 18.16 drops from a subquery a column only a lambda reads: each column alone must still run."""
        db = engine.open()
        names = ", ".join(f"'{v}'" for v in VIEWS)
        columns = db.query(f"SELECT table, name FROM system.columns WHERE database = '{db.database}' "
                           f"AND table IN ({names})")
        assert {table for table, _ in columns} == set(VIEWS)
        for table, column in [*columns, *((v, "count()") for v in VIEWS)]:
            assert db.query(f"SELECT {column} FROM {db.database}.{table}") == ([(0,)] if column == "count()" else [])

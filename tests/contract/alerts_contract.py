"""The alerts in the warehouse on a real engine (chdb in tests/component, ClickHouse 18.16 in tests/integration): the
migration's tables and view, the engine rebuilt from them (every read of sinks.alert_store), the outbox read, and a
case moved by actions with the time spent in each status."""

from __future__ import annotations

from typing import Any

from cem.domain.alerts import AlertEngine
from cem.service.resolver_service import ResolverService
from cem.settings import Settings
from sinks.alert_store import load_alert_snapshot
from tests.contract.backends import Backend
from tests.unit.alert_helpers import HOUR_MS, MINUTE_MS, NOW_MS, contact

T0 = NOW_MS - 50 * HOUR_MS
ANGRY = "This is terrible, I am furious with you."
HAPPY = "Great service, thank you!"


def traffic() -> list[Any]:
    hour = T0 - T0 % HOUR_MS
    angry = [contact(f"a{i}", hour + HOUR_MS + i * MINUTE_MS, f"a{i}", issue=None, text=ANGRY) for i in range(6)]
    return [contact("c1", T0, "ann", channel="web"), contact("c2", T0 + HOUR_MS, "ann", channel="call_center"),
            contact("s1", T0 + HOUR_MS, "ann", type="survey_response", text=ANGRY, survey=("nps", 2)),
            contact("k1", T0, "kim", channel="store", issue="K"),
            contact("m1", T0, "max", issue=None, text=HAPPY),
            contact("m2", T0 + HOUR_MS, "max", issue=None, text=ANGRY),
            *angry, contact("z", hour + 3 * HOUR_MS, "zed", issue=None)]


class AlertsContract:
    def service(self, backend: Backend, now_ms: int = NOW_MS) -> ResolverService:
        return ResolverService(Settings(sink_retry_max_seconds=5, state_store="memory"), clock=lambda: now_ms / 1000,
                               open_warehouse=backend.open)

    def test_alerts_land_once_and_the_engine_is_rebuilt_from_them(self, backend: Backend) -> None:
        first = self.service(backend)
        result = first.process_and_write(traffic())
        rules = sorted(a.rule for a in result.alerts)
        assert rules == ["channel_escalation", "detractor", "repeat_contact", "sentiment_drop"]  # the hour is open
        warehouse = backend.open()
        snapshot = load_alert_snapshot(warehouse, 7 * 24 * HOUR_MS, 24 * HOUR_MS)
        assert sorted(a.rule for a in snapshot.alerts) == rules
        timers = [(t.issue_ref, t.deadline_ms) for t in snapshot.timers if t.issue_ref == "K"]
        assert timers == [("K", T0 + 48 * HOUR_MS)]
        assert ("chat", T0 + HOUR_MS, "anger", 8) in snapshot.hourly  # six angry chats, s1 and m2
        assert sorted(ms for _, ms, _, _ in snapshot.texts)[:2] == [T0, T0 + HOUR_MS]
        assert {c for c, _, _ in snapshot.channel_clocks} >= {"web", "call_center", "chat", "store"}
        engine = AlertEngine(first.rules, idle_ms=60_000)
        engine.restore(snapshot, NOW_MS)
        # a restarted worker given the same events again (as if their interaction rows had not landed) raises nothing
        again = self.service(backend, NOW_MS + 1000)
        assert again.process_and_write(traffic()).alerts == []
        ordered = sorted((a.revision, a.alert_id) for a in result.alerts)
        assert [(a.revision, a.alert_id) for a in again.unpublished_alerts(*ordered[0])] == ordered[1:]

    def test_a_case_moves_through_its_statuses_with_the_time_in_each(self, backend: Backend) -> None:
        service = self.service(backend)
        result = service.process_and_write(traffic())
        acked, resolved = sorted(a.alert_id for a in result.alerts)[:2]
        raised_ms = NOW_MS
        service.record_alert_actions([action("1", acked, "ack", "amy", raised_ms + 60_000),
                                      action("2", resolved, "ack", "bo", raised_ms + 1000),
                                      action("3", resolved, "resolve", "cy", raised_ms + 5000)])
        service.record_alert_actions([action("1", acked, "ack", "amy", raised_ms + 60_000)])  # a replay
        warehouse = backend.open()
        rows = {r[0]: r[1:] for r in warehouse.query(
            "SELECT alert_id, status, open_seconds, acknowledged_by, resolved_by, acknowledged_seconds "
            f"FROM {warehouse.database}.alerts")}
        assert rows[acked][:3] == ("acknowledged", 60, "amy")
        assert rows[resolved] == ("resolved", 1, "bo", "cy", 4)
        assert sum(1 for status, *_ in rows.values() if status == "open") == len(result.alerts) - 2


def action(action_id: str, alert_id: str, kind: str, actor: str, at_ms: int) -> dict[str, Any]:
    return {"action_id": action_id, "alert_id": alert_id, "action": kind, "actor": actor, "note": "", "at_ms": at_ms}

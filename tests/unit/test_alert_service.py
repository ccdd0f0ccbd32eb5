"""Alerts through the resolver service on the in-memory warehouse: written in the batch before its interaction rows,
once each whatever the failures and restarts, read back as the publisher's outbox, and actions recorded once."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from cem.domain.alerts import RuleFileError
from cem.service.resolver_service import WRITE_ORDER, ResolverService
from cem.settings import Settings
from sinks.fake import FakeWarehouseServer
from tests.unit.alert_helpers import HOUR_MS, NOW_MS, contact

T0 = NOW_MS - 50 * HOUR_MS
ANGRY = "This is terrible, I am furious with you."


def service_on(server: FakeWarehouseServer, now_ms: int = NOW_MS, **settings: Any) -> ResolverService:
    config = Settings(sink_retry_max_seconds=0.001, state_store="memory", **settings)
    return ResolverService(config, clock=lambda: now_ms / 1000, open_warehouse=server.connect)


def traffic() -> list[Any]:
    return [contact("c1", T0, "ann", channel="web"), contact("c2", T0 + HOUR_MS, "ann", channel="call_center"),
            contact("s1", T0 + HOUR_MS, "ann", type="survey_response", text=ANGRY, survey=("nps", 2)),
            contact("k1", T0, "kim", channel="chat", issue="K")]


def raised(server: FakeWarehouseServer) -> Counter[tuple[str, str]]:
    return Counter((row["rule"], row["state"]) for row in server.rows("alert_log"))


EXPECTED = Counter({("channel_escalation", "open"): 1, ("repeat_contact", "open"): 1, ("detractor", "open"): 1})


def test_a_batch_writes_its_alerts_before_its_interaction_rows_and_returns_them() -> None:
    assert WRITE_ORDER.index("alert_log") < WRITE_ORDER.index("interaction_log")
    server = FakeWarehouseServer()
    result = service_on(server).process_and_write(traffic())
    assert raised(server) == EXPECTED
    assert sorted(a.rule for a in result.alerts) == sorted(rule for rule, _ in EXPECTED)
    assert {row["version"] for row in server.rows("alert_log")} == {result.effects.version}
    # neither issue is resolved: SLA timers, due 48 h after a web contact and 8 h after a chat (not passed yet)
    assert sorted((r["issue_ref"], r["deadline_ms"]) for r in server.rows("alert_timers")) == [
        ("K", T0 + 8 * HOUR_MS), ("T1", T0 + 48 * HOUR_MS)]


@pytest.mark.parametrize("fault", ["fail", "lose_reply"])
@pytest.mark.parametrize("table", ["alert_log", "interaction_log"])
def test_a_failed_write_or_a_restart_never_writes_an_alert_twice(fault: str, table: str) -> None:
    server = FakeWarehouseServer()
    getattr(server.faults, fault)(1, table)
    service_on(server).process_and_write(traffic())
    assert raised(server) == EXPECTED
    # a crash before the batch was acknowledged: another worker gets it again, and more
    again = service_on(server, now_ms=NOW_MS + 1000)
    again.process_and_write([*traffic(), contact("c3", T0 + 2 * HOUR_MS, "ann", channel="email")])
    assert raised(server) == EXPECTED


def test_the_outbox_lists_what_follows_the_last_revision_published() -> None:
    server = FakeWarehouseServer()
    service = service_on(server)
    result = service.process_and_write(traffic())
    ordered = sorted((a.revision, a.alert_id) for a in result.alerts)
    assert [(a.revision, a.alert_id) for a in service.unpublished_alerts(0, "")] == ordered
    assert [(a.revision, a.alert_id) for a in service.unpublished_alerts(*ordered[1])] == ordered[2:]
    assert service.unpublished_alerts(*ordered[-1]) == []


def test_actions_are_recorded_and_a_replayed_action_is_the_same_row() -> None:
    server = FakeWarehouseServer()
    service = service_on(server)
    action = {"action_id": "x1", "alert_id": "al_1", "action": "ack", "actor": "agent-7", "note": "", "at_ms": 5}
    service.record_alert_actions([action])
    service.record_alert_actions([action])
    assert {(r["action_id"], r["action"], r["at_ms"]) for r in server.rows("alert_actions")} == {("x1", "ack", 5)}


def test_a_bad_rule_file_stops_the_service_at_start(tmp_path: Any) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[rule]]\nname = "x"\nkind = "detractor"\nnps = 3\n')
    with pytest.raises(RuleFileError, match="unknown key 'nps'"):
        service_on(FakeWarehouseServer(), alert_rules=str(path))

"""Alerts end to end on Apache Kafka and ClickHouse: traffic with known alerts (devtools/alert_scenario.py), workers
SIGKILLed while they raise them, late events that raise or withdraw alerts, and the case lifecycle through the CLI
and the actions topic. Every alert must be on `cem.alerts` exactly once per revision, in revision order, and in the
`alerts` view with its expected state."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from cem.settings import Settings
from devtools import alert_scenario
from devtools.harness import WorkerProcess, isolated_settings, run_cem, wait_until
from devtools.scrape import metric_value
from devtools.topics import drained, publish, read_topic
from schemas.alerts import decode_alert, encode_action
from sinks.clickhouse import connect

pytestmark = [pytest.mark.faults, pytest.mark.integration]


def _topic_alerts(settings: Settings, idle: float = 2.0) -> list[dict[str, Any]]:
    return [decode_alert(m.value) for m in read_topic(settings, settings.alerts_topic, idle_seconds=idle)]


def _cli(settings: Settings, *args: str) -> str:
    done = run_cem(*args, env=settings.as_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _listed(settings: Settings, *args: str) -> dict[str, dict[str, Any]]:
    lines = _cli(settings, "alerts", "list", "--format", "jsonl", *args).splitlines()
    return {row["alert_id"]: row for row in map(orjson.loads, lines)}


def test_alerts_exactly_once_through_sigkills_late_events_and_the_case_lifecycle(kafka, clickhouse,
                                                                                tmp_path: Path) -> None:
    scenario = alert_scenario.build(seed=5)
    expected = {(a.rule, a.issue): a for a in scenario.expected()}
    rules = tmp_path / "rules.toml"
    rules.write_text(alert_scenario.RULES_TOML)
    settings = isolated_settings(kafka.bootstrap, clickhouse.url, "alerts", alert_rules=str(rules),
                                 alert_tick_seconds=1.0)
    workers: list[WorkerProcess] = []

    def start(name: str) -> WorkerProcess:
        workers.append(WorkerProcess(settings, tmp_path / f"{name}.log", name=name).start())
        return workers[-1]

    db = connect(settings.clickhouse_url)

    def alert_rows(rule: str | None = None) -> int:
        where = f" WHERE rule = '{rule}'" if rule else ""
        try:
            return int(db.query(f"SELECT count() FROM {db.database}.alert_log{where}")[0][0])
        except Exception:  # the worker has not created its tables yet
            return 0

    def killed_at_first_row(worker: WorkerProcess, rule: str | None) -> None:
        wait_until(lambda: alert_rows(rule) > 0, 120, f"no {rule or 'alert'} written", interval=0.05,
                   workers=workers, settings=settings)
        worker.kill()

    try:
        # Contacts: the first worker dies as soon as its first alert is written (before or after its publish).
        contacts = scenario.records(settings, "contacts")
        w1 = start("w1")
        publish(settings, contacts[: len(contacts) // 2])
        killed_at_first_row(w1, None)
        publish(settings, contacts[len(contacts) // 2:])
        w2 = start("w2")
        wait_until(lambda: drained(settings), 120, "contacts not drained", workers=workers, settings=settings)
        # The clock passes every deadline: the second worker dies as soon as the first SLA alert is written.
        publish(settings, scenario.records(settings, "clock"))
        killed_at_first_row(w2, "sla_breach")
        w3 = start("w3")
        sla = sum(1 for a in expected.values() if a.rule == "sla_breach")
        wait_until(lambda: sum(a["rule"] == "sla_breach" for a in _topic_alerts(settings, 1.0)) >= sla, 120,
                   "the SLA alerts were not published", workers=workers, settings=settings)
        # Late events: resolutions before the deadline withdraw, after it do not; late contacts and surveys raise.
        publish(settings, scenario.records(settings, "late"))
        revisions = sum(len(a.states) for a in expected.values())
        wait_until(lambda: drained(settings) and len(_topic_alerts(settings, 1.0)) >= revisions, 120,
                   "the late events' alerts were not published", workers=workers, settings=settings)
        published = _topic_alerts(settings, idle=3.0)
        # The metrics of the worker that applied the late events: it wrote and published every withdrawal, and
        # nothing waits to be published.
        withdrawals = sum(a.states[-1] == "withdrawn" for a in expected.values())
        text = w3.metrics_text()
        assert [metric_value(text, name, {"state": "withdrawn"}) for name in
                ("cem_alert_revisions_total", "cem_alerts_published_total")] == [withdrawals, withdrawals]
        assert metric_value(text, "cem_alert_publish_lag_seconds") == 0

        # On the topic: each revision once, in (revision, alert_id) order, each alert with its expected states.
        positions = [(a["revision"], a["alert_id"]) for a in published]
        assert positions == sorted(set(positions)), "a revision published twice or out of order"
        states: dict[tuple[str, str], list[str]] = defaultdict(list)
        ids: dict[tuple[str, str], set[str]] = defaultdict(set)
        for alert in published:
            states[(alert["rule"], alert["issue"])].append(alert["state"])
            ids[(alert["rule"], alert["issue"])].add(alert["alert_id"])
        assert {key: tuple(s) for key, s in states.items()} == {key: a.states for key, a in expected.items()}
        assert all(len(found) == 1 for found in ids.values()), ids
        # ... raised for the right customer: the id as raised, which may be one the person's earlier event later
        # replaced (events of several topics arrive in any order); customer_resolution maps it to the current one.
        customer_of_event = dict(db.query(f"SELECT event_id, customer_id FROM {db.database}.interactions"))
        customer_of_person = {scenario.person_of[e]: c for e, c in customer_of_event.items()}
        current = dict(db.query(f"SELECT customer_id, current_customer_id FROM {db.database}.customer_resolution"))
        assert {(a["rule"], a["issue"]): current.get(a["customer_id"], a["customer_id"]) for a in published} == \
            {key: customer_of_person[a.person] for key, a in expected.items()}

        # In ClickHouse: one case per alert, in its final state, as `cem alerts list` shows it.
        listed = _listed(settings)
        assert {(r["rule"], r["issue"]): r["status"] for r in listed.values()} == \
            {key: a.states[-1] for key, a in expected.items()}
        alert_id = {key: next(iter(found)) for key, found in ids.items()}
        assert set(listed) == set(alert_id.values())

        # The lifecycle: ack two and resolve one of them with the CLI; ack a third through the actions topic, with
        # a malformed action beside it (a dead letter; the worker carries on).
        open_keys = sorted(key for key, a in expected.items() if a.states == ("open",))
        acked, resolved, by_topic = open_keys[:2], open_keys[1:3], open_keys[3]
        _cli(settings, "alerts", "ack", *(alert_id[k] for k in acked), "--by", "agent-7", "--note", "on it")
        _cli(settings, "alerts", "resolve", *(alert_id[k] for k in resolved), "--by", "agent-9")
        action = {"action_id": "topic-ack-1", "alert_id": alert_id[by_topic], "action": "ack", "actor": "crm",
                  "note": "", "at_ms": int(time.time() * 1000)}
        publish(settings, [(settings.alert_actions_topic, b"bad", b"{not json"),
                           (settings.alert_actions_topic, alert_id[by_topic].encode(), encode_action(action)),
                           (settings.alert_actions_topic, alert_id[by_topic].encode(), encode_action(action))])
        want = {alert_id[acked[0]]: ("acknowledged", "agent-7", ""), alert_id[acked[1]]: ("resolved", "agent-7",
                "agent-9"), alert_id[resolved[1]]: ("resolved", "", "agent-9"),
                alert_id[by_topic]: ("acknowledged", "crm", "")}

        def moved() -> dict[str, tuple[str, str, str]]:
            rows = _listed(settings)
            return {a: (rows[a]["status"], rows[a]["acknowledged_by"], rows[a]["resolved_by"]) for a in want}

        wait_until(lambda: moved() == want, 90, lambda: f"actions not applied: {moved()}", interval=1.0,
                   workers=workers)
        dead = [m for m in read_topic(settings, settings.deadletter_topic)
                if m.headers.get("cem.source", "").startswith(settings.alert_actions_topic)]
        assert [(m.reason, m.value) for m in dead] == [("invalid_control", b"{not json")]
        untouched = set(listed) - set(want)
        assert {a: _listed(settings)[a]["status"] for a in untouched} == {a: listed[a]["status"] for a in untouched}

        # `cem alerts tail` prints the topic as published.
        tailed = _cli(settings, "alerts", "tail", "--from-beginning", "--idle-exit", "3").splitlines()
        assert [orjson.loads(line) for line in tailed] == published
    finally:
        for worker in workers:
            worker.kill()
        db.close()

"""The alert scenario of the end-to-end test (devtools/alert_scenario.py): its texts read as it says, and the
resolver and the alert engine, fed its phases in process, end with exactly the alerts it expects."""

from __future__ import annotations

from collections import defaultdict

import pytest

from cem.config import identifier_rules
from cem.domain.alerts import RuleSet, parse_rules
from cem.domain.model import Interaction
from cem.domain.text import analyse
from cem.settings import CHANNELS, Settings
from devtools import alert_scenario
from streams.ingest import build_interaction, limits_of
from tests.unit.alert_helpers import Pipeline
from tests.unit.factories import HOUR_MS, NOW_MS


def _rules() -> RuleSet:
    import tomllib

    return parse_rules(tomllib.loads(alert_scenario.RULES_TOML), CHANNELS)


def _phase(scenario: alert_scenario.AlertScenario, phase: str) -> list[Interaction]:
    settings = Settings()
    rules, limits = identifier_rules(settings), limits_of(settings)
    built = [build_interaction(record, channel, rules, limits, scenario.base_ms + 40 * HOUR_MS)
             for channel, record in scenario.events[phase]]
    assert all(isinstance(event, Interaction) for event in built), built
    return [event for event in built if isinstance(event, Interaction)]


def test_the_negative_comment_is_negative_and_the_kind_one_is_neither_negative_nor_effortful() -> None:
    negative, positive = analyse(alert_scenario.NEGATIVE), analyse(alert_scenario.POSITIVE)
    assert negative is not None and negative.sentiment <= -0.5
    assert positive is not None and positive.sentiment > -0.5
    assert positive.effort is None or positive.effort > -2


@pytest.mark.parametrize("copies", [1, 3])
def test_the_engine_on_the_phases_ends_with_exactly_the_expected_alerts(copies: int) -> None:
    scenario = alert_scenario.build(seed=2, copies=copies, base_ms=NOW_MS - 48 * HOUR_MS)
    pipeline = Pipeline(rules=_rules())
    for step, phase in enumerate(alert_scenario.PHASES):
        pipeline.batch(_phase(scenario, phase), now_ms=NOW_MS + step * 1000)
    states: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in sorted(pipeline.alerts, key=lambda r: r.revision):
        states[(row.rule, row.issue)].append(row.state)
    assert {key: tuple(s) for key, s in states.items()} == \
        {(a.rule, a.issue): a.states for a in scenario.expected()}


def test_the_expected_alerts_cover_every_rule_and_a_withdrawal() -> None:
    expected = alert_scenario.build(copies=1).expected()
    assert {a.rule for a in expected} == {"detractor", "repeat_contact", "channel_escalation", "sla_breach"}
    assert [a.rule for a in expected if a.states == ("open", "withdrawn")] == ["sla_breach", "sla_breach"]

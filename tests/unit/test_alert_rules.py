"""The alert rule file: the documented format parses, and every malformed file is refused with a clear error."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cem.config import DEFAULT_ALERT_RULES, alert_rules
from cem.domain.alerts import RuleFileError, parse_rules
from cem.domain.alerts.rules import ChannelTrend, SlaBreach
from cem.settings import CHANNELS, Settings


def test_the_built_in_rules_cover_every_kind() -> None:
    rules = alert_rules(Settings())
    assert sorted(rule.kind for rule in rules.rules) == ["channel_switch", "channel_trend", "customer_drop",
                                                         "detractor", "repeat_contact", "sla_breach"]
    sla = rules.of(SlaBreach)[0]
    assert sla.deadline_ms(0, "chat", "") == 8 * 3_600_000
    assert sla.deadline_ms(0, "chat", "urgent") == 4 * 3_600_000  # the priority beats the channel
    assert sla.deadline_ms(0, "web", "unknown") == 48 * 3_600_000


def test_the_rules_in_the_docs_parse() -> None:
    text = (Path(__file__).parents[2] / "docs" / "alerts.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    rules = parse_rules(tomllib.loads(block), CHANNELS)
    assert rules.rules


@pytest.mark.parametrize(("rule", "message"), [
    ({"name": "x", "kind": "nope"}, "`kind` must be one of"),
    ({"name": "x", "kind": "detractor", "nps_maxx": 5}, "unknown key 'nps_maxx'"),
    ({"name": "x", "kind": "detractor", "nps_max": "six"}, "`nps_max` must be an integer"),
    ({"name": "x", "kind": "detractor", "nps_max": True}, "must not be a boolean"),
    ({"name": "x", "kind": "detractor", "severity": "urgent"}, "severity must be one of"),
    ({"name": "x", "kind": "channel_switch", "phone_channels": ["phone"]}, "unknown channels ['phone']"),
    ({"name": "x", "kind": "channel_switch", "max_channels": 1}, "max_channels must be 2 or more"),
    ({"name": "x", "kind": "sla_breach", "hours_by_channel": {"chat": 0}}, "positive number of hours"),
    ({"name": "x", "kind": "sla_breach", "hours_by_channel": {"fax": 3}}, "unknown channels ['fax']"),
    ({"name": "x", "kind": "sla_breach", "hours_by_priority": {"high": "soon"}}, "must be a table of numbers"),
    ({"name": "x", "kind": "channel_trend", "emotion": "rage"}, "emotion must be one of"),
    ({"name": "x", "kind": "channel_trend", "factor": 1}, "factor must be above 1"),
    ({"name": "x", "kind": "repeat_contact", "min_contacts": 1}, "min_contacts must be 2 or more"),
    ({"name": "x", "kind": "customer_drop", "drop": -1}, "drop and window_hours must be positive"),
    ({"name": "bad name!", "kind": "detractor"}, "`name` must be letters"),
    ({"kind": "detractor"}, "`name` must be letters"),
])
def test_a_malformed_rule_is_refused_with_its_position_and_name(rule: dict, message: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        parse_rules({"rule": [{"name": "ok", "kind": "detractor"}, rule]}, CHANNELS)
    assert message in str(caught.value)
    assert "rule #2" in str(caught.value)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(RuleFileError) as caught:
        parse_rules({"rule": [{"name": "a", "kind": "nope"}, {"name": "b", "kind": "detractor", "x": 1}]}, CHANNELS)
    assert "rule #1 (a)" in str(caught.value) and "rule #2 (b)" in str(caught.value)


def test_a_name_used_twice_is_refused() -> None:
    with pytest.raises(RuleFileError, match="used twice"):
        parse_rules({"rule": [{"name": "a", "kind": "detractor"}, {"name": "a", "kind": "repeat_contact"}]},
                    CHANNELS)


def test_rules_written_as_a_table_instead_of_an_array_are_refused() -> None:
    with pytest.raises(RuleFileError, match=r"\[\[rule\]\]"):
        parse_rules({"rule": {"name": "a"}}, CHANNELS)
    with pytest.raises(RuleFileError, match="unknown top-level keys"):
        parse_rules({"rules": []}, CHANNELS)


def test_a_file_that_is_not_toml_or_missing_stops_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text("[[rule]\nname = ")
    with pytest.raises(RuleFileError, match="is not valid TOML") as caught:
        alert_rules(Settings(alert_rules=str(bad)))
    assert str(bad) in str(caught.value)
    with pytest.raises(RuleFileError, match="cannot read"):
        alert_rules(Settings(alert_rules=str(tmp_path / "missing.toml")))


def test_defaults_fill_what_a_rule_leaves_out(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[rule]]\nname = "anger"\nkind = "channel_trend"\nfactor = 3\n')
    (rule,) = alert_rules(Settings(alert_rules=str(path))).rules
    assert isinstance(rule, ChannelTrend)
    assert (rule.factor, rule.min_count, rule.emotion, rule.channels) == (3.0, 5, "anger", ())


def test_the_default_file_is_the_one_shipped_with_the_package() -> None:
    assert DEFAULT_ALERT_RULES.name == "alert_rules.toml" and DEFAULT_ALERT_RULES.exists()

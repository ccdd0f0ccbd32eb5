"""The alert rules on the resolved stream: each rule's trigger, deduplication, withdrawal and restore."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cem.domain.alerts import AlertEngine, alert_id_for, parse_rules
from cem.domain.alerts.signals import hour_label
from cem.domain.alerts.watermark import Watermark
from cem.settings import CHANNELS
from tests.unit.alert_helpers import HOUR_MS, MINUTE_MS, NOW_MS, Pipeline, contact, resolved

T0 = NOW_MS - 100 * HOUR_MS
ANGRY = "This is terrible, I am furious with you."
EFFORT = "I had to call three times and waited 40 minutes on hold."
HAPPY = "Great service, thank you!"


def only(kind: str) -> Pipeline:
    rules = parse_rules({"rule": [r for r in _default_rule_tables() if r["kind"] == kind]}, CHANNELS)
    return Pipeline(rules=rules)


def _default_rule_tables() -> list[dict]:
    import tomllib

    from cem.config import DEFAULT_ALERT_RULES
    return tomllib.loads(DEFAULT_ALERT_RULES.read_text())["rule"]


# ---- detractor ---------------------------------------------------------------------------------------
def test_a_detractor_with_a_negative_or_effortful_comment_raises_one_alert() -> None:
    p = only("detractor")
    p.batch([contact("s1", T0, "ann", channel="survey", type="survey_response", text=ANGRY, survey=("nps", 3)),
             contact("s2", T0, "bob", channel="survey", issue=None, type="survey_response", text=EFFORT,
                     survey=("csat", 2)),
             contact("s3", T0, "cid", channel="survey", type="survey_response", text=ANGRY, survey=("ces", 3))])
    assert p.open_rules() == [("detractor", "T1"), ("detractor", "T1"), ("detractor", "event:s2")]


def test_a_score_above_the_threshold_or_a_kind_comment_raises_nothing() -> None:
    p = only("detractor")
    p.batch([contact("s1", T0, "ann", type="survey_response", text=ANGRY, survey=("nps", 7)),
             contact("s2", T0, "bob", type="survey_response", text=HAPPY, survey=("nps", 0)),
             contact("s3", T0, "cid", type="survey_response", text=None, survey=("csat", 1)),
             contact("s4", T0, "dan", type="survey_response", text=ANGRY, survey=("csat", 3)),
             contact("s5", T0, "eve", type="survey_response", text=ANGRY, survey=("ces", 4))])
    assert p.alerts == []


def test_a_duplicate_or_a_second_detractor_on_the_issue_raises_no_second_alert() -> None:
    p = only("detractor")
    survey = contact("s1", T0, "ann", type="survey_response", text=ANGRY, survey=("nps", 2))
    p.batch([survey, survey])
    p.batch([survey])
    p.batch([contact("s2", T0 + HOUR_MS, "ann", type="survey_response", text=EFFORT, survey=("nps", 1))])
    assert len(p.alerts) == 1
    assert p.alerts[0].alert_id == alert_id_for("detractor", p.alerts[0].customer_id, "T1")


# ---- repeat contact ----------------------------------------------------------------------------------
def test_a_second_contact_within_the_window_raises_one_repeat_alert() -> None:
    p = only("repeat_contact")
    p.batch([contact("c1", T0, "ann")])
    assert p.alerts == []
    p.batch([contact("c2", T0 + 24 * HOUR_MS, "ann", channel="email")])
    p.batch([contact("c3", T0 + 25 * HOUR_MS, "ann")])
    assert p.open_rules() == [("repeat_contact", "T1")]
    assert p.alerts[0].evidence == ("c1", "c2")


def test_contacts_further_apart_than_the_window_or_on_other_issues_are_not_repeats() -> None:
    p = only("repeat_contact")
    p.batch([contact("c1", T0 - 200 * HOUR_MS, "ann"), contact("c2", T0, "ann"),
             contact("c3", T0, "ann", issue="T2"), resolved("r1", T0 + HOUR_MS, "ann", issue="T3")])
    assert p.alerts == []


# ---- channel switch ----------------------------------------------------------------------------------
def test_digital_then_phone_escalates() -> None:
    p = only("channel_switch")
    p.batch([contact("c1", T0, "ann", channel="web"), contact("c2", T0 + HOUR_MS, "ann", channel="call_center")])
    assert p.open_rules() == [("channel_escalation", "T1")]
    assert "to the phone" in p.alerts[0].detail


def test_phone_then_digital_is_no_escalation_but_a_third_channel_is() -> None:
    p = only("channel_switch")
    p.batch([contact("c1", T0, "ann", channel="call_center"), contact("c2", T0 + HOUR_MS, "ann", channel="store")])
    assert p.alerts == []
    p.batch([contact("c3", T0 + 2 * HOUR_MS, "ann", channel="store")])
    assert p.alerts == []
    p.batch([contact("c4", T0 + 3 * HOUR_MS, "ann", channel="social")])
    assert p.open_rules() == [("channel_escalation", "T1")]


def test_a_late_digital_contact_before_the_call_escalates_once() -> None:
    p = only("channel_switch")
    p.batch([contact("c2", T0 + HOUR_MS, "ann", channel="call_center")])
    p.batch([contact("c1", T0, "ann", channel="chat")])  # late: it happened before the call
    p.batch([contact("c3", T0 + 2 * HOUR_MS, "ann", channel="call_center")])
    assert p.open_rules() == [("channel_escalation", "T1")] and len(p.alerts) == 1


# ---- SLA breach --------------------------------------------------------------------------------------
def test_an_unresolved_journey_breaches_once_the_watermark_passes_its_deadline() -> None:
    p = only("sla_breach")
    p.batch([contact("c1", T0, "ann", channel="chat")])  # chat: 8 h
    assert p.alerts == [] and len(p.timers) == 1
    p.batch([contact("x1", T0 + 7 * HOUR_MS, "bob", channel="chat", issue=None)])
    assert p.alerts == []
    p.batch([contact("x2", T0 + 8 * HOUR_MS, "bob", channel="chat", issue=None)])
    assert p.open_rules() == [("sla_breach", "T1")]
    assert p.alerts[0].due_ms == T0 + 8 * HOUR_MS
    assert p.timers[-1].cleared


def test_a_late_resolution_before_the_deadline_withdraws_the_alert_with_a_revision() -> None:
    p = only("sla_breach")
    p.batch([contact("c1", T0, "ann", channel="chat"), contact("x1", T0 + 9 * HOUR_MS, "bob", channel="chat",
                                                                issue=None)])
    (raised,) = p.alerts
    p.batch([resolved("r1", T0 + 7 * HOUR_MS, "ann", channel="chat")], now_ms=NOW_MS + 1)
    withdrawn = p.alerts[-1]
    assert (withdrawn.alert_id, withdrawn.state) == (raised.alert_id, "withdrawn")
    assert withdrawn.revision > raised.revision
    assert p.open_rules() == []


def test_a_resolution_after_the_deadline_leaves_the_breach_standing() -> None:
    p = only("sla_breach")
    p.batch([contact("c1", T0, "ann", channel="chat"), contact("x1", T0 + 9 * HOUR_MS, "bob", channel="chat",
                                                                issue=None)])
    p.batch([resolved("r1", T0 + 8 * HOUR_MS + 1, "ann", channel="chat")])
    assert p.open_rules() == [("sla_breach", "T1")] and len(p.alerts) == 1


def test_a_resolution_in_time_clears_the_timer_and_nothing_is_raised() -> None:
    p = only("sla_breach")
    p.batch([contact("c1", T0, "ann", channel="chat"), resolved("r1", T0 + HOUR_MS, "ann")])
    p.batch([contact("x1", T0 + 100 * HOUR_MS, "bob", channel="chat", issue=None)])
    assert p.alerts == []


def test_the_priority_property_sets_a_shorter_deadline() -> None:
    p = only("sla_breach")
    p.batch([contact("c1", T0, "ann", channel="web", properties={"priority": "urgent"}),
             contact("x1", T0 + 5 * HOUR_MS, "bob", channel="web", issue=None)])
    assert p.alerts[0].due_ms == T0 + 4 * HOUR_MS


def test_a_quiet_channel_stops_holding_the_watermark_back_after_the_idle_timeout() -> None:
    p = only("sla_breach")
    p.batch([contact("c1", T0, "ann", channel="chat"), contact("e1", T0, "bob", channel="email", issue=None)])
    # email goes quiet; chat traffic moves on past the deadline
    p.batch([contact("x1", T0 + 9 * HOUR_MS, "cid", channel="chat", issue=None)], now_ms=NOW_MS + MINUTE_MS)
    assert p.alerts == []  # email still active: it may deliver the resolution
    p.batch([contact("x2", T0 + 9 * HOUR_MS, "cid", channel="chat", issue=None)], now_ms=NOW_MS + 11 * MINUTE_MS)
    assert p.open_rules() == [("sla_breach", "T1")]


def test_with_all_input_quiet_a_tick_fires_the_deadline_on_the_wall_clock() -> None:
    p = only("sla_breach")
    p.batch([contact("c1", T0, "ann", channel="chat")])
    p.batch([], now_ms=NOW_MS + 10 * MINUTE_MS + 7 * HOUR_MS)
    assert p.alerts == []
    p.batch([], now_ms=NOW_MS + 10 * MINUTE_MS + 8 * HOUR_MS)
    assert p.open_rules() == [("sla_breach", "T1")]


def test_a_tick_is_due_only_when_a_deadline_passed_or_the_watermark_entered_another_hour() -> None:
    p = only("sla_breach")
    assert p.engine is not None
    p.batch([contact("c1", T0, "ann", channel="chat")])  # deadline T0 + 8 h
    quiet = NOW_MS + 10 * MINUTE_MS  # past the idle timeout: the watermark follows the wall clock from here
    p.batch([], now_ms=quiet)
    assert not p.engine.has_due(quiet + MINUTE_MS)  # same hour, no deadline passed: an empty batch is not needed
    hour_later = quiet + HOUR_MS
    assert p.engine.has_due(hour_later)  # another hour: the hourly rules compare the one that closed
    p.batch([], now_ms=hour_later)
    assert not p.engine.has_due(hour_later + MINUTE_MS)
    assert p.engine.has_due(quiet + 8 * HOUR_MS)  # the deadline passed (and hours too)
    p.batch([], now_ms=quiet + 8 * HOUR_MS)
    assert p.open_rules() == [("sla_breach", "T1")]


def test_watermark_never_goes_back() -> None:
    mark = Watermark(idle_ms=1000)
    mark.observe("chat", 5000, 0)
    assert mark.current(0) == 5000
    mark.observe("email", 100, 10)
    assert mark.current(10) == 5000  # a new slow channel does not move it back
    assert mark.current(5000) == 5000 + (5000 - 1010)  # both idle: the wall clock moves it on


# ---- trends ------------------------------------------------------------------------------------------
def _angry_chats(prefix: str, n: int, hour_ms: int) -> list:
    return [contact(f"{prefix}{i}", hour_ms + i * MINUTE_MS, f"{prefix}{i}", issue=None, text=ANGRY)
            for i in range(n)]


def test_anger_on_chat_doubling_hour_over_hour_raises_when_the_hour_closes() -> None:
    p = only("channel_trend")
    h = T0 - T0 % HOUR_MS
    p.batch(_angry_chats("a", 3, h) + _angry_chats("b", 6, h + HOUR_MS))
    assert p.alerts == []  # the second hour is still open
    p.batch([contact("z", h + 2 * HOUR_MS, "zed", issue=None)])
    (alert,) = p.alerts
    assert alert.rule == "chat_anger_spike" and alert.customer_id == "" and alert.channel == "chat"
    assert "6 events in the hour, 3 the hour before" in alert.detail
    # late angry chats in the hour before: no longer a doubling -> withdrawn
    p.batch(_angry_chats("c", 1, h + 30 * MINUTE_MS))
    assert p.alerts[-1].state == "withdrawn" and p.open_rules() == []


@pytest.mark.parametrize("jump_hours", [2, 3, 7, 30])
def test_an_hour_closed_by_a_watermark_jumping_several_hours_at_once_is_evaluated_once(jump_hours: int) -> None:
    p = only("channel_trend")
    h = T0 - T0 % HOUR_MS
    p.batch(_angry_chats("a", 3, h) + _angry_chats("b", 6, h + HOUR_MS))
    p.batch([contact("z", h + jump_hours * HOUR_MS, "zed", issue=None)])
    assert [a.issue for a in p.alerts] == [f"chat@{hour_label(h + HOUR_MS)}"]
    p.batch([contact("y", h + (jump_hours + 1) * HOUR_MS, "yan", issue=None)], now_ms=NOW_MS + 1)
    assert len(p.alerts) == 1


def test_anger_below_the_minimum_or_on_another_channel_raises_nothing() -> None:
    p = only("channel_trend")
    h = T0 - T0 % HOUR_MS
    email = [contact(f"e{i}", h + HOUR_MS + i, f"e{i}", channel="email", issue=None, text=ANGRY) for i in range(9)]
    p.batch(_angry_chats("b", 4, h + HOUR_MS) + email + [contact("z", h + 3 * HOUR_MS, "z", issue=None)])
    assert p.alerts == []


# ---- customer drop -----------------------------------------------------------------------------------
FINE, NOT_GREAT, SLOW = "Fine, thanks.", "Not great.", "Slow delivery."  # +2.4, -2.3, 0.0


@pytest.mark.parametrize("arrival", [["m1", "m3", "m2"], ["m3", "m1", "m2"], ["m1", "m2", "m3"]])
def test_a_drop_raised_and_withdrawn_in_one_batch_leaves_no_revision(arrival: list[str]) -> None:
    texts = {"m1": (T0, FINE), "m2": (T0 + HOUR_MS, SLOW), "m3": (T0 + 2 * HOUR_MS, NOT_GREAT)}
    p = only("customer_drop")
    p.batch([contact(e, texts[e][0], "ann", issue=None, text=texts[e][1]) for e in arrival])
    assert p.alerts == []
    assert p.engine is not None and p.engine.state.alerts == {}
    # the same texts over two batches: raised, then withdrawn with a later revision
    q = only("customer_drop")
    q.batch([contact(e, texts[e][0], "ann", issue=None, text=texts[e][1]) for e in ("m1", "m3")])
    q.batch([contact("m2", texts["m2"][0], "ann", issue=None, text=SLOW)], now_ms=NOW_MS + 1)
    assert [(a.issue, a.state) for a in q.alerts] == [("event:m3", "open"), ("event:m3", "withdrawn")]


def test_an_alert_withdrawn_raised_and_withdrawn_again_in_one_batch_stays_as_it_was() -> None:
    texts = {"m1": (T0, FINE), "m2": (T0 + HOUR_MS, SLOW), "m3": (T0 + 2 * HOUR_MS, NOT_GREAT)}
    p = only("customer_drop")
    p.batch([contact(e, texts[e][0], "ann", issue=None, text=texts[e][1]) for e in ("m1", "m3")])
    p.batch([contact("m2", texts["m2"][0], "ann", issue=None, text=SLOW)], now_ms=NOW_MS + 1)
    withdrawn = p.latest()
    # two late texts before m3: the first raises m3's drop again, the second withdraws it again
    p.batch([contact("m4", T0 + 90 * MINUTE_MS, "ann", issue=None, text=FINE),
             contact("m5", T0 + 100 * MINUTE_MS, "ann", issue=None, text=SLOW)], now_ms=NOW_MS + 2)
    assert {a: (r.state, r.revision) for a, r in p.latest().items()} == \
        {a: (r.state, r.revision) for a, r in withdrawn.items()}
    assert len(p.alerts) == 2


def test_a_sharp_drop_of_a_customers_sentiment_raises_and_a_text_in_between_moves_it() -> None:
    p = only("customer_drop")
    p.batch([contact("m1", T0, "ann", issue=None, text=HAPPY)])
    p.batch([contact("m3", T0 + 2 * HOUR_MS, "ann", issue=None, text=ANGRY)])
    assert p.open_rules() == [("sentiment_drop", "event:m3")]
    # a late text in between: the drop happened before it, not at m3
    p.batch([contact("m2", T0 + HOUR_MS, "ann", issue=None, text="It is still broken and I am annoyed.")])
    assert p.open_rules() == [("sentiment_drop", "event:m2")]
    assert [(a.issue, a.state) for a in p.alerts[-2:]] == [("event:m2", "open"), ("event:m3", "withdrawn")]


def test_a_drop_over_a_longer_time_than_the_window_is_not_sharp() -> None:
    p = only("customer_drop")
    p.batch([contact("m1", T0, "ann", issue=None, text=HAPPY),
             contact("m2", T0 + 25 * HOUR_MS, "ann", issue=None, text=ANGRY)])
    assert p.alerts == []


# ---- restore and order -------------------------------------------------------------------------------
def test_a_restored_engine_raises_nothing_twice() -> None:
    p = Pipeline()
    p.batch([contact("c1", T0, "ann", channel="web"), contact("c2", T0 + HOUR_MS, "ann", channel="call_center"),
             contact("s1", T0 + HOUR_MS, "ann", type="survey_response", text=ANGRY, survey=("nps", 1)),
             contact("k1", T0, "kim", channel="chat", issue="K")])
    before = list(p.alerts)
    assert {a.rule for a in before} == {"channel_escalation", "repeat_contact", "detractor"}
    restarted = p.restarted()
    # the resolver is rebuilt too: the replayed events are new to it, as after a crash before the interaction rows
    restarted.resolver = type(p.resolver)(p.resolver.config)
    restarted.batch([contact("c1", T0, "ann", channel="web"), contact("c2", T0 + HOUR_MS, "ann",
                                                                      channel="call_center"),
                     contact("s1", T0 + HOUR_MS, "ann", type="survey_response", text=ANGRY, survey=("nps", 1))])
    assert restarted.alerts == before
    # the restored timer of K still fires
    restarted.batch([contact("x", T0 + 9 * HOUR_MS, "bob", channel="chat", issue=None)],
                    now_ms=NOW_MS + 11 * MINUTE_MS)  # web and call_center went quiet
    assert [a.rule for a in restarted.alerts[len(before):]] == ["sla_breach"]


def test_the_engine_forgets_alerts_older_than_the_retention() -> None:
    engine = AlertEngine(parse_rules({"rule": [{"name": "r", "kind": "repeat_contact"}]}, CHANNELS),
                         idle_ms=1, retention_ms=10 * HOUR_MS)
    p = Pipeline(rules=engine.rules, engine=engine)
    p.batch([contact("c1", T0, "ann"), contact("c2", T0 + HOUR_MS, "ann")])
    assert len(engine.state.alerts) == 1
    p.batch([contact("x", T0 + 20 * HOUR_MS, "bob", issue=None)], now_ms=NOW_MS + 1)
    assert engine.state.alerts == {}
    p.batch([contact("c3", T0 + 2 * HOUR_MS, "ann")], now_ms=NOW_MS + 2)  # too old: never raised again
    assert len(p.alerts) == 1


TRAFFIC = [
    contact("c1", T0, "ann", channel="web"),
    contact("c2", T0 + HOUR_MS, "ann", channel="call_center"),
    contact("c3", T0 + 2 * HOUR_MS, "ann", channel="email"),
    contact("s1", T0 + 3 * HOUR_MS, "ann", type="survey_response", text=ANGRY, survey=("nps", 1)),
    contact("d1", T0 - 170 * HOUR_MS, "dan", channel="chat", issue="D"),
    contact("d2", T0, "dan", channel="chat", issue="D"),
    contact("e1", T0, "eve", channel="store", issue="E"),
    contact("e2", T0 + HOUR_MS, "eve", channel="social", issue="E"),
    contact("e3", T0 + 2 * HOUR_MS, "eve", channel="web", issue="E"),
    contact("s2", T0, "eve", type="survey_response", issue=None, text=EFFORT, survey=("csat", 1)),
]


@settings(max_examples=60, deadline=None)
@given(st.permutations(TRAFFIC), st.lists(st.integers(1, 4), min_size=1, max_size=10))
def test_order_and_batching_do_not_change_the_alerts_of_order_free_rules(order: list, sizes: list[int]) -> None:
    rules = parse_rules({"rule": [r for r in _default_rule_tables()
                                  if r["kind"] in ("detractor", "repeat_contact", "channel_switch")]}, CHANNELS)
    p = Pipeline(rules=rules)
    index, step = 0, 0
    while index < len(order):
        size = sizes[step % len(sizes)]
        p.batch(order[index:index + size], now_ms=NOW_MS + step)
        index, step = index + size, step + 1
    assert len(p.alerts) == len(p.latest())  # each raised once
    assert p.open_rules() == [("channel_escalation", "E"), ("channel_escalation", "T1"), ("detractor", "T1"),
                              ("detractor", "event:s2"), ("repeat_contact", "E"), ("repeat_contact", "T1")]

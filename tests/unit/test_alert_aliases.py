"""An absorbed journey's alerts and timers follow the journey that absorbed it, whatever the chain of absorptions
in one batch: the engine's single pass over its state gives what following each alias in turn gives."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from cem.domain.alerts import AlertEngine, parse_rules
from cem.domain.alerts.emit import AlertState, Emit
from cem.domain.alerts.model import TimerRow
from cem.settings import CHANNELS

JOURNEYS = ["j1", "j2", "j3", "j4", "j5"]
RULES = ["sla", "repeat", "switch"]


def follow_each_alias(state: AlertState, aliases: list[tuple[str, str]], emit: Emit) -> None:
    """The specification: each alias in turn, over the whole state as the aliases before it left it."""
    for from_id, into_id in aliases:
        for (rule, journey_id), alert_id in list(state.by_journey.items()):
            if journey_id == from_id:
                state.by_journey.setdefault((rule, into_id), alert_id)
        for rule, journey_id in [key for key in state.timers if key[1] == from_id]:
            timer = state.timers[(rule, journey_id)]
            emit.clear_timer(rule, journey_id)
            if (rule, into_id) not in state.timers:
                emit.set_timer(replace(timer, journey_id=into_id))


def timer(rule: str, journey_id: str, deadline_ms: int) -> TimerRow:
    return TimerRow(rule, journey_id, "c1", "T1", "web", "", 1_000, deadline_ms)


def state_of(alerts: list[tuple[str, str, int]], timers: list[tuple[str, str, int]]) -> AlertState:
    state = AlertState()
    for rule, journey_id, n in alerts:
        state.by_journey[(rule, journey_id)] = f"a{n}"
    for rule, journey_id, deadline in timers:
        state.timers[(rule, journey_id)] = timer(rule, journey_id, deadline)
    return state


keys = st.tuples(st.sampled_from(RULES), st.sampled_from(JOURNEYS))


@settings(max_examples=300, deadline=None)
@given(alerts=st.lists(st.tuples(st.sampled_from(RULES), st.sampled_from(JOURNEYS), st.integers(0, 9)),
                       max_size=10),
       timers=st.lists(st.tuples(st.sampled_from(RULES), st.sampled_from(JOURNEYS), st.integers(0, 9)),
                       max_size=10),
       aliases=st.lists(st.tuples(st.sampled_from(JOURNEYS), st.sampled_from(JOURNEYS)), max_size=8))
def test_alerts_and_timers_follow_chains_of_absorbed_journeys_as_alias_by_alias(
        alerts: list[tuple[str, str, int]], timers: list[tuple[str, str, int]],
        aliases: list[tuple[str, str]]) -> None:
    engine = AlertEngine(parse_rules({"rule": []}, CHANNELS), idle_ms=60_000)
    engine.state = state_of(alerts, timers)
    expected_state = state_of(alerts, timers)
    expected = Emit(7, 1_000, expected_state)
    follow_each_alias(expected_state, aliases, expected)

    found = Emit(7, 1_000, engine.state)
    engine._follow_aliases(aliases, found)

    assert engine.state.by_journey == expected_state.by_journey
    assert engine.state.timers == expected_state.timers
    assert found.changes.timers == expected.changes.timers


def test_a_chain_absorbed_in_one_batch_hands_the_first_journeys_alert_and_timer_to_the_last() -> None:
    engine = AlertEngine(parse_rules({"rule": []}, CHANNELS), idle_ms=60_000)
    engine.state = state_of([("sla", "j1", 1)], [("sla", "j1", 5_000)])
    emit = Emit(7, 1_000, engine.state)
    engine._follow_aliases([("j1", "j2"), ("j2", "j3")], emit)
    assert engine.state.by_journey == {("sla", "j1"): "a1", ("sla", "j2"): "a1", ("sla", "j3"): "a1"}
    assert list(engine.state.timers) == [("sla", "j3")]
    assert engine.state.timers[("sla", "j3")].deadline_ms == 5_000

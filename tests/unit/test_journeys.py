"""cem.domain.journeys: session gap semantics, bridging, order independence, customer moves; service journeys per
customer and issue_ref, their merges, and their metrics (contacts, resolution, FCR, time to resolution)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cem.domain.journeys import JourneyAlias, JourneyBook, ServiceJourney, SessionAlias, SessionBook, journey_id_for
from cem.domain.model import stable_id
from tests.unit.factories import DAY_MS, HOUR_MS, MINUTE_MS

GAP = 30 * MINUTE_MS
T0 = 1_794_823_200_000


def sid(event_id: str) -> str:
    return stable_id("s", event_id)


# ---- gap semantics ------------------------------------------------------------------------------------
def test_gap_exactly_joins() -> None:
    book = SessionBook(GAP)
    first, _ = book.add("c", "e1", T0, "web")
    second, aliases = book.add("c", "e2", T0 + GAP, "mobile")
    assert second is first and aliases == []
    assert (first.session_id, first.start_ms, first.end_ms, first.events) == (sid("e1"), T0, T0 + GAP, 2)
    assert first.channels == {"web", "mobile"}
    before, _ = book.add("c", "e0", T0 - GAP, "web")
    assert before is first and (first.start_ms, first.events) == (T0 - GAP, 3)
    assert len(book.by_customer["c"]) == 1


def test_gap_plus_one_millisecond_splits() -> None:
    book = SessionBook(GAP)
    first, _ = book.add("c", "e1", T0, "web")
    second, aliases = book.add("c", "e2", T0 + GAP + 1, "web")
    third, _ = book.add("c", "e3", T0 - GAP - 1, "web")
    assert aliases == []
    assert len({first.session_id, second.session_id, third.session_id}) == 3
    assert [(s.start_ms, s.end_ms) for s in book.by_customer["c"]] == [
        (T0 - GAP - 1, T0 - GAP - 1), (T0, T0), (T0 + GAP + 1, T0 + GAP + 1)
    ]


def test_event_inside_a_session_only_counts() -> None:
    book = SessionBook(GAP)
    book.add("c", "e1", T0, "web")
    book.add("c", "e2", T0 + 20 * MINUTE_MS, "web")
    session, aliases = book.add("c", "e3", T0 + 10 * MINUTE_MS, "web")
    assert (session.start_ms, session.end_ms, session.events, aliases) == (T0, T0 + 20 * MINUTE_MS, 3, [])


def test_customers_have_separate_sessions() -> None:
    book = SessionBook(GAP)
    a, _ = book.add("c1", "e1", T0, "web")
    b, _ = book.add("c2", "e2", T0, "web")
    assert a is not b and a.customer_id == "c1" and b.customer_id == "c2"


@pytest.mark.parametrize("order", [("e1", "e2", "bridge"), ("e2", "e1", "bridge")])
def test_bridging_event_merges_two_sessions_keeping_the_earliest(order: tuple[str, ...]) -> None:
    times = {"e1": T0, "e2": T0 + 2 * GAP, "bridge": T0 + GAP}
    channels = {"e1": "web", "e2": "mobile", "bridge": "web"}
    book = SessionBook(GAP)
    results = [book.add("c", e, times[e], channels[e]) for e in order]
    session, aliases = results[-1]
    assert aliases == [SessionAlias(sid("e2"), sid("e1"))]
    assert (session.session_id, session.start_ms, session.end_ms, session.events) == (
        sid("e1"), T0, T0 + 2 * GAP, 3)
    assert session.channels == {"web", "mobile"}
    assert session.members == [sid("e2")]
    assert book.by_customer["c"] == [session]


def test_alias_chains_cover_absorbed_members() -> None:
    book = SessionBook(GAP)
    book.add("c", "late", T0 + 10 * GAP, "web")
    book.add("c", "mid", T0 + 8 * GAP, "web")
    _, aliases = book.add("c", "b1", T0 + 9 * GAP, "web")
    assert aliases == [SessionAlias(sid("late"), sid("mid"))]
    book.add("c", "early", T0 + 6 * GAP, "web")
    session, aliases = book.add("c", "b2", T0 + 7 * GAP, "web")
    assert session.session_id == sid("early")
    assert aliases == [SessionAlias(sid("mid"), sid("early")), SessionAlias(sid("late"), sid("early"))]
    assert sorted(session.members) == sorted([sid("mid"), sid("late")])
    assert (session.start_ms, session.end_ms, session.events) == (T0 + 6 * GAP, T0 + 10 * GAP, 5)


# ---- order independence -----------------------------------------------------------------------------
def _expected_sessions(times: dict[str, int], gap: int) -> set[frozenset[str]]:
    """Independent oracle: sort by time, split where consecutive events are more than `gap` apart."""
    ordered = sorted(times, key=times.__getitem__)
    groups: list[set[str]] = []
    last = None
    for event_id in ordered:
        if last is None or times[event_id] - last > gap:
            groups.append(set())
        groups[-1].add(event_id)
        last = times[event_id]
    return {frozenset(g) for g in groups}


def _follow(alias: dict[str, str], key: str) -> str:
    seen = set()
    while key in alias:
        assert key not in seen, "alias cycle"
        seen.add(key)
        key = alias[key]
    return key


def _partition(book: SessionBook, session_of: dict[str, str], alias: dict[str, str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for event_id, session_id in session_of.items():
        groups.setdefault(_follow(alias, session_id), set()).add(event_id)
    live = {s.session_id for sessions in book.by_customer.values() for s in sessions}
    assert set(groups) == live, "every live session holds events and every event's session is live"
    return {frozenset(g) for g in groups.values()}


def _book_state(book: SessionBook) -> list[tuple[int, int, int]]:
    return sorted((s.start_ms, s.end_ms, s.events) for sessions in book.by_customer.values() for s in sessions)


def _check_sorted_disjoint(book: SessionBook) -> None:
    for sessions in book.by_customer.values():
        for a, b in zip(sessions, sessions[1:], strict=False):
            assert a.end_ms + book.gap_ms < b.start_ms


_times = st.lists(st.integers(min_value=0, max_value=6 * HOUR_MS), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(_times, st.randoms(use_true_random=False))
def test_sessions_do_not_depend_on_arrival_order(stamps: list[int], rnd: random.Random) -> None:
    times = {f"e{i}": t for i, t in enumerate(stamps)}
    expected = _expected_sessions(times, GAP)
    states = []
    for attempt in range(3):
        order = sorted(times) if attempt == 0 else rnd.sample(sorted(times), len(times))
        book = SessionBook(GAP)
        session_of: dict[str, str] = {}
        alias: dict[str, str] = {}
        for event_id in order:
            session, aliases = book.add("c", event_id, times[event_id], "web")
            session_of[event_id] = session.session_id
            for a in aliases:
                alias[a.from_id] = a.into_id
        _check_sorted_disjoint(book)
        assert _partition(book, session_of, alias) == expected
        states.append(_book_state(book))
    assert states[0] == states[1] == states[2]
    expected_state = sorted((min(times[e] for e in g), max(times[e] for e in g), len(g)) for g in expected)
    assert states[0] == expected_state


@settings(max_examples=150, deadline=None)
@given(_times, st.lists(st.booleans(), min_size=30, max_size=30), st.integers(min_value=0, max_value=30),
       st.randoms(use_true_random=False))
def test_move_customer_gives_the_sessions_of_the_union(
    stamps: list[int], owners: list[bool], move_at: int, rnd: random.Random
) -> None:
    times = {f"e{i}": t for i, t in enumerate(stamps)}
    order = rnd.sample(sorted(times), len(times))
    book = SessionBook(GAP)
    session_of: dict[str, str] = {}
    alias: dict[str, str] = {}
    moved = False
    for n, event_id in enumerate(order):
        if n == move_at:
            changed, aliases = book.move_customer("x", "y")
            moved = True
            for a in aliases:
                alias[a.from_id] = a.into_id
            assert all(s.customer_id == "y" for s in changed)
            assert not {a.from_id for a in aliases} & {s.session_id for s in changed}
        customer = "x" if owners[int(event_id[1:])] and not moved else "y"
        session, aliases = book.add(customer, event_id, times[event_id], "web")
        session_of[event_id] = session.session_id
        for a in aliases:
            alias[a.from_id] = a.into_id
    if not moved:
        _, aliases = book.move_customer("x", "y")
        for a in aliases:
            alias[a.from_id] = a.into_id
    assert "x" not in book.by_customer
    _check_sorted_disjoint(book)
    assert _partition(book, session_of, alias) == _expected_sessions(times, GAP)
    assert all(s.customer_id == "y" for s in book.by_customer["y"])


def test_move_customer_merges_overlapping_sessions() -> None:
    book = SessionBook(GAP)
    book.add("x", "x1", T0, "web")
    book.add("x", "x2", T0 + 10 * MINUTE_MS, "mobile")
    book.add("x", "x3", T0 + 10 * HOUR_MS, "web")
    book.add("y", "y1", T0 + 20 * MINUTE_MS, "web")
    book.add("y", "y2", T0 + 25 * MINUTE_MS, "web")
    book.add("y", "y3", T0 + 5 * HOUR_MS, "web")
    changed, aliases = book.move_customer("x", "y")
    assert aliases == [SessionAlias(sid("y1"), sid("x1"))]
    assert sorted((s.session_id, s.customer_id, s.start_ms, s.end_ms, s.events) for s in changed) == sorted([
        (sid("x1"), "y", T0, T0 + 25 * MINUTE_MS, 4),
        (sid("x3"), "y", T0 + 10 * HOUR_MS, T0 + 10 * HOUR_MS, 1),
    ])
    assert [s.session_id for s in book.by_customer["y"]] == [sid("x1"), sid("y3"), sid("x3")]
    assert book.by_customer["y"][0].channels == {"web", "mobile"}
    assert "x" not in book.by_customer


def test_move_customer_bridging_two_target_sessions() -> None:
    book = SessionBook(GAP)
    book.add("y", "y1", T0, "web")
    book.add("y", "y2", T0 + 2 * GAP, "web")
    book.add("x", "x1", T0 + GAP, "web")
    changed, aliases = book.move_customer("x", "y")
    assert [s.session_id for s in changed] == [sid("y1")]
    assert sorted(aliases, key=lambda a: a.from_id) == sorted(
        [SessionAlias(sid("x1"), sid("y1")), SessionAlias(sid("y2"), sid("y1"))], key=lambda a: a.from_id)
    assert [(s.start_ms, s.end_ms, s.events) for s in book.by_customer["y"]] == [(T0, T0 + 2 * GAP, 3)]


def test_move_unknown_customer_is_a_no_op() -> None:
    book = SessionBook(GAP)
    book.add("y", "y1", T0, "web")
    assert book.move_customer("nobody", "y") == ([], [])
    assert len(book.by_customer["y"]) == 1


# ---- service journeys ---------------------------------------------------------------------------------
WINDOW = 7 * DAY_MS


def journey(*events: tuple[str, int, str, str]) -> ServiceJourney:
    j = ServiceJourney(journey_id_for("CASE-1", events[0][0]), "CASE-1", "c1")
    for event_id, ms, channel, event_type in events:
        j.add(event_id, ms, channel, event_type)
    return j


def test_journey_id_is_stable() -> None:
    assert journey_id_for("CASE-1", "e1") == stable_id("j", "CASE-1", "e1") == journey_id_for("CASE-1", "e1")
    assert len({journey_id_for("CASE-1", "e1"), journey_id_for("CASE-2", "e1"), journey_id_for("CASE-1", "e2")}) == 3


def test_metrics_multi_contact_resolved() -> None:
    j = journey(
        ("a", T0 + HOUR_MS, "chat", "chat_message"),
        ("b", T0, "call_center", "call_ended"),
        ("c", T0 + 2 * HOUR_MS, "support", "ticket_resolved"),
        ("d", T0 + 3 * HOUR_MS, "survey", "survey_response"),
        ("e", T0 + 90 * MINUTE_MS, "chat", "chat_message"),
    )
    m = j.metrics(WINDOW)
    assert m.contacts == 3
    assert m.channels == ("call_center", "chat")
    assert (m.resolved, m.resolved_ms, m.fcr) == (True, T0 + 2 * HOUR_MS, False)
    assert m.time_to_resolution_s == 7200.0
    assert (m.started_ms, m.ended_ms) == (T0, T0 + 3 * HOUR_MS)


def test_metrics_first_contact_resolution() -> None:
    j = journey(
        ("a", T0, "call_center", "call_ended"),
        ("r", T0 + HOUR_MS + 500, "support", "ticket_resolved"),
        ("s", T0 + 2 * HOUR_MS, "survey", "survey_response"),
    )
    m = j.metrics(WINDOW)
    assert (m.contacts, m.channels, m.resolved, m.fcr) == (1, ("call_center",), True, True)
    assert m.time_to_resolution_s == 3600.5


@pytest.mark.parametrize(
    ("repeat_after_resolution_ms", "fcr"),
    [(1, False), (WINDOW, False), (WINDOW + 1, True)],
)
def test_metrics_repeat_contact_window(repeat_after_resolution_ms: int, fcr: bool) -> None:
    resolved = T0 + HOUR_MS
    j = journey(
        ("a", T0, "chat", "chat_message"),
        ("r", resolved, "support", "ticket_resolved"),
        ("again", resolved + repeat_after_resolution_ms, "call_center", "call_ended"),
    )
    m = j.metrics(WINDOW)
    assert m.fcr is fcr
    assert m.contacts == 2
    assert m.channels == ("call_center", "chat")
    assert m.time_to_resolution_s == 3600.0


def test_metrics_contact_at_resolution_time_counts_before() -> None:
    j = journey(("a", T0, "chat", "chat_message"), ("b", T0 + HOUR_MS, "email", "email_reply"),
                ("r", T0 + HOUR_MS, "support", "ticket_resolved"))
    assert j.metrics(WINDOW).fcr is False


def test_metrics_unresolved() -> None:
    m = journey(("a", T0, "chat", "chat_message")).metrics(WINDOW)
    assert (m.resolved, m.resolved_ms, m.fcr, m.time_to_resolution_s) == (False, None, False, None)
    assert (m.contacts, m.started_ms, m.ended_ms) == (1, T0, T0)


def test_metrics_earliest_resolution_counts() -> None:
    j = journey(("a", T0, "chat", "chat_message"), ("r2", T0 + 5 * HOUR_MS, "support", "ticket_resolved"),
                ("r1", T0 + 2 * HOUR_MS, "support", "ticket_resolved"))
    m = j.metrics(WINDOW)
    assert (m.resolved_ms, m.time_to_resolution_s, m.fcr, m.contacts) == (T0 + 2 * HOUR_MS, 7200.0, True, 1)


def test_metrics_without_contacts() -> None:
    m = journey(("r", T0, "support", "ticket_resolved"), ("s", T0 + HOUR_MS, "survey", "survey_response")).metrics(
        WINDOW)
    assert (m.contacts, m.channels, m.resolved, m.fcr) == (0, (), True, False)
    assert (m.started_ms, m.ended_ms, m.time_to_resolution_s) == (T0, T0 + HOUR_MS, 0.0)


def test_journey_add_is_idempotent() -> None:
    events = [("a", T0, "chat", "chat_message"), ("b", T0 + HOUR_MS, "call_center", "call_ended"),
              ("r", T0 + 2 * HOUR_MS, "support", "ticket_resolved")]
    once = journey(*events)
    twice = journey(*events, *events)
    assert twice.events == once.events
    assert twice.metrics(WINDOW) == once.metrics(WINDOW)
    assert twice.metrics(WINDOW).contacts == 2


def jid(issue_ref: str, event_id: str) -> str:
    return stable_id("j", issue_ref, event_id)


def test_one_issue_ref_used_by_unrelated_customers_makes_one_journey_each() -> None:
    book = JourneyBook()
    a = book.add("c-a", "1", "a1", T0, "chat", "chat_message")
    b = book.add("c-b", "1", "b1", T0 - HOUR_MS, "call_center", "call_ended")
    a2 = book.add("c-a", "1", "a2", T0 + HOUR_MS, "support", "ticket_resolved")
    c = book.add("c-a", "2", "a3", T0, "email", "email_reply")
    assert a2 is a and len({a.journey_id, b.journey_id, c.journey_id}) == 3
    assert (a.journey_id, b.journey_id, c.journey_id) == (jid("1", "a1"), jid("1", "b1"), jid("2", "a3"))
    assert (a.customer_id, set(a.events), b.customer_id, set(b.events)) == ("c-a", {"a1", "a2"}, "c-b", {"b1"})
    assert a.metrics(WINDOW).fcr is True and b.metrics(WINDOW).resolved is False


@pytest.mark.parametrize("earlier", ["x", "y"])
def test_customer_merge_joins_journeys_of_one_issue_ref_keeping_the_first_started(earlier: str) -> None:
    times = {"x": T0, "y": T0 + HOUR_MS} if earlier == "x" else {"x": T0 + HOUR_MS, "y": T0}
    book = JourneyBook()
    book.add("cx", "7", "x1", times["x"], "chat", "chat_message")
    book.add("cy", "7", "y1", times["y"], "call_center", "call_ended")
    book.add("cy", "8", "y2", T0, "email", "email_reply")
    book.add("cy", "7", "r", T0 + 2 * HOUR_MS, "support", "ticket_resolved")
    changed, aliases = book.move_customer("cy", "cx")
    survivor, absorbed = (jid("7", "x1"), jid("7", "y1")) if earlier == "x" else (jid("7", "y1"), jid("7", "x1"))
    assert aliases == [JourneyAlias(absorbed, survivor, "7")]
    assert sorted((j.journey_id, j.customer_id, tuple(sorted(j.events))) for j in changed) == sorted([
        (survivor, "cx", ("r", "x1", "y1")), (jid("8", "y2"), "cx", ("y2",))])
    assert "cy" not in book.by_customer
    assert {ref: j.journey_id for ref, j in book.by_customer["cx"].items()} == {"7": survivor, "8": jid("8", "y2")}
    merged = book.by_customer["cx"]["7"]
    assert merged.members == [absorbed]
    m = merged.metrics(WINDOW)
    assert (m.contacts, m.channels, m.fcr, m.time_to_resolution_s) == (2, ("call_center", "chat"), False, 7200.0)


def test_same_start_is_broken_by_journey_id() -> None:
    book = JourneyBook()
    book.add("cx", "7", "x1", T0, "chat", "chat_message")
    book.add("cy", "7", "y1", T0, "chat", "chat_message")
    _, aliases = book.move_customer("cx", "cy")
    keep, gone = sorted([jid("7", "x1"), jid("7", "y1")])
    assert aliases == [JourneyAlias(gone, keep, "7")]


def test_absorbed_journeys_alias_to_the_latest_survivor() -> None:
    book = JourneyBook()
    book.add("c3", "7", "e3", T0 + 3 * HOUR_MS, "chat", "chat_message")
    book.add("c2", "7", "e2", T0 + 2 * HOUR_MS, "chat", "chat_message")
    book.add("c1", "7", "e1", T0 + HOUR_MS, "chat", "chat_message")
    _, first = book.move_customer("c3", "c2")
    assert first == [JourneyAlias(jid("7", "e3"), jid("7", "e2"), "7")]
    changed, second = book.move_customer("c2", "c1")
    assert second == [JourneyAlias(jid("7", "e2"), jid("7", "e1"), "7"),
                      JourneyAlias(jid("7", "e3"), jid("7", "e1"), "7")]
    assert [j.journey_id for j in changed] == [jid("7", "e1")] and set(changed[0].events) == {"e1", "e2", "e3"}
    assert book.containing({jid("7", "e3")}) == changed and book.containing({"j_other"}) == []


def test_move_of_a_customer_without_journeys_is_a_no_op() -> None:
    book = JourneyBook()
    book.add("y", "7", "y1", T0, "chat", "chat_message")
    assert book.move_customer("nobody", "y") == ([], [])
    assert list(book.by_customer) == ["y"]

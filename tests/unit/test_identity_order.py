"""Property tests of the identity graph's contract (docs/identity.md).

1. Without guards in play, the grouping is exactly the connected components of "shares a normalised identifier".
2. With guards, no customer ever holds two customer_refs or more values of a type than its limit, and every
   customer lies inside one connected component (guards only ever refuse links).
3. Whatever the arrival order, the grouping is the same as folding the events in event-time order.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from cem.domain.identifiers import IdentifierRules, normalise_all
from cem.domain.identity import IdentityGraph
from devtools.simulate import groups
from tests.unit.factories import components as connected_components
from tests.unit.strategies import NO_GUARDS, POOL, TIGHT, Event, event_lists


def grouping(events: list[Event], order: Iterable[int], limits: dict[str, int] | None = None,
             graph: IdentityGraph | None = None) -> set[frozenset[str]]:
    graph = graph or IdentityGraph(limits)
    for i in order:
        graph.attribute(*events[i])
    return groups((event_id, graph.customer_of_set(ids)) for event_id, _, ids in events)


def components(events: list[Event]) -> set[frozenset[str]]:
    """Connected components of "shares an identifier" (tests/unit/factories.py: a union-find independent of cem)."""
    return connected_components((event_id, ids) for event_id, _, ids in events)


@settings(max_examples=300, deadline=None)
@given(event_lists(["email", "phone", "anonymous_id", "device_id"]), st.randoms(use_true_random=False))
def test_without_guards_grouping_is_the_connected_components(events: list[Event], rng) -> None:
    order = list(range(len(events)))
    rng.shuffle(order)
    assert grouping(events, order, NO_GUARDS) == components(events)


@settings(max_examples=400, deadline=None)
@given(event_lists(POOL), st.randoms(use_true_random=False))
def test_grouping_is_independent_of_arrival_order_with_guards(events: list[Event], rng) -> None:
    in_time_order = sorted(range(len(events)), key=lambda i: (events[i][1], events[i][0]))
    expected = grouping(events, in_time_order, TIGHT)
    for _ in range(3):
        order = list(range(len(events)))
        rng.shuffle(order)
        assert grouping(events, order, TIGHT) == expected


@settings(max_examples=300, deadline=None)
@given(event_lists(POOL), st.randoms(use_true_random=False))
def test_guards_hold_and_only_refuse_links(events: list[Event], rng) -> None:
    order = list(range(len(events)))
    rng.shuffle(order)
    graph = IdentityGraph(TIGHT)
    grouped = grouping(events, order, TIGHT, graph)
    comps = components(events)
    assert all(any(group <= comp for comp in comps) for group in grouped)
    held: dict[str, dict[str, set[str]]] = {}
    for ident, owner in graph.owner.items():
        held.setdefault(graph.find(owner), {}).setdefault(ident[0], set()).add(ident[1])
    for by_type in held.values():
        for id_type, values in by_type.items():
            assert len(values) <= TIGHT[id_type]


def test_two_customer_refs_on_one_email_never_merge() -> None:
    graph = IdentityGraph()
    first = graph.attribute("e1", 100, (("customer_ref", "R1"), ("email", "x@example.com")))
    second = graph.attribute("e2", 200, (("customer_ref", "R2"), ("email", "x@example.com")))
    assert first.customer_id != second.customer_id
    assert [r.reason for r in second.refused] == ["conflicting_customer_ref"]
    # The email stays with the first customer; an event with only the email goes there.
    assert graph.attribute("e3", 300, (("email", "x@example.com"),)).customer_id == first.customer_id


def test_a_shared_kiosk_device_does_not_glue_200_customers() -> None:
    graph = IdentityGraph()
    customers = set()
    for i in range(200):
        ids = (("customer_ref", f"CRM-{i}"), ("device_id", "kiosk-7"), ("email", f"c{i}@example.com"))
        customers.add(graph.attribute(f"e{i}", 1_000 + i, ids).customer_id)
    assert len(customers) == 200
    # Without CRM ids the email limit (5 per customer) still caps what one device can glue.
    graph = IdentityGraph()
    glued: dict[str, int] = {}
    for i in range(200):
        ids = (("device_id", "kiosk-8"), ("email", f"d{i}@example.com"))
        customer = graph.attribute(f"f{i}", 1_000 + i, ids).customer_id
        glued[customer] = glued.get(customer, 0) + 1
    assert max(glued.values()) <= 5
    assert sum(glued.values()) == 200


def test_a_flood_of_placeholder_values_links_nobody() -> None:
    rules = IdentifierRules()
    graph = IdentityGraph()
    placeholders = ["null", "NULL", '"null"', "undefined", "anonymous", "unknown", "guest", "0", "-1", "n/a", "",
                    "00000000-0000-0000-0000-000000000000", "[object Object]", "NaN", "none"]
    customers = set()
    for i in range(300):
        raw = {"anonymous_id": placeholders[i % len(placeholders)], "device_id": placeholders[(i + 3) % 15],
               "email": f"person{i}@example.com"}
        ids = normalise_all(raw, rules)
        assert ids == (("email", f"person{i}@example.com"),)
        customers.add(graph.attribute(f"n{i}", i, ids).customer_id)
    assert len(customers) == 300


def test_late_event_that_would_have_been_refused_splits_the_glued_customer() -> None:
    """In time order, ev3 bridging two CRM ids is refused; arriving last, it must give the same grouping."""
    r1, r2, email, phone = ("customer_ref", "R1"), ("customer_ref", "R2"), ("email", "x@e.com"), ("phone", "+1555")
    events: list[Event] = [
        ("ev1", 10, (r1, email)),
        ("ev2", 20, (r2, phone)),
        ("ev3", 5, (email, phone)),  # earliest: links email and phone first
    ]
    expected = grouping(events, [2, 0, 1])
    assert grouping(events, [0, 1, 2]) == expected
    assert grouping(events, [1, 2, 0]) == expected

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
from cem.domain.model import Identifier

Event = tuple[str, int, tuple[Identifier, ...]]

POOL = {
    "customer_ref": ["r0", "r1", "r2"],
    "email": ["e0", "e1", "e2", "e3"],
    "phone": ["p0", "p1", "p2"],
    "device_id": ["d0", "d1"],
    "anonymous_id": ["a0", "a1", "a2"],
}


def identifier_sets(types: Iterable[str]) -> st.SearchStrategy[tuple[Identifier, ...]]:
    pool = [(t, v) for t in types for v in POOL[t]]
    return st.lists(st.sampled_from(pool), min_size=1, max_size=4).map(lambda ids: tuple(sorted(set(ids))))


def event_lists(types: Iterable[str]) -> st.SearchStrategy[list[Event]]:
    return st.lists(st.tuples(st.integers(0, 6), identifier_sets(list(types))), min_size=1, max_size=24).map(
        lambda items: [(f"ev{i}", ms, ids) for i, (ms, ids) in enumerate(items)]
    )


def grouping(events: list[Event], order: Iterable[int], limits: dict[str, int] | None = None,
             graph: IdentityGraph | None = None) -> set[frozenset[str]]:
    graph = graph or IdentityGraph(limits)
    for i in order:
        graph.attribute(*events[i])
    by_customer: dict[str | None, set[str]] = {}
    for event_id, _, ids in events:
        by_customer.setdefault(graph.customer_of_set(ids), set()).add(event_id)
    return {frozenset(v) for v in by_customer.values()}


def components(events: list[Event]) -> set[frozenset[str]]:
    """Connected components of "shares an identifier", by a union-find written here, independent of cem."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    first_with: dict[Identifier, str] = {}
    for event_id, _, ids in events:
        find(event_id)
        for ident in ids:
            if ident in first_with:
                parent[find(event_id)] = find(first_with[ident])
            else:
                first_with[ident] = event_id
    groups: dict[str, set[str]] = {}
    for event_id, _, _ in events:
        groups.setdefault(find(event_id), set()).add(event_id)
    return {frozenset(v) for v in groups.values()}


NO_GUARDS = {t: 1_000_000 for t in POOL}
TIGHT = {"customer_ref": 1, "email": 2, "phone": 2, "device_id": 1, "anonymous_id": 2}


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
    groups = grouping(events, order, TIGHT, graph)
    comps = components(events)
    assert all(any(group <= comp for comp in comps) for group in groups)
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
    # The email is shared by the two: an event with only the email belongs to neither.
    assert [s.reason for s in second.shared] == ["limit:customer_ref"]
    assert graph.attribute("e3", 300, (("email", "x@example.com"),)).customer_id not in (
        graph.find(first.customer_id), graph.find(second.customer_id))


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

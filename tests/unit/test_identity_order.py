"""Property tests of the identity graph's contract (docs/identity.md).

1. Without guards in play, the grouping is exactly the connected components of "shares a normalised identifier".
2. With guards, no customer ever holds two customer_refs or more values of a type than its limit, and every
   customer lies inside one connected component (guards only ever refuse links).
3. Whatever the arrival order, the grouping is the same as folding the events in event-time order.
4. Whatever the arrival order, the grouping is the event-time fold of the identifier sets with the shared
   identifiers (as determined over all events) left out, computed here by a reference written from
   docs/identity.md; an identifier set made only of shared identifiers is a customer of its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from cem.domain.identifiers import IdentifierRules, normalise_all
from cem.domain.identity import IdentityGraph
from cem.domain.model import Identifier
from devtools.simulate import groups
from tests.unit.factories import components as connected_components
from tests.unit.strategies import NO_GUARDS, POOL, TIGHT, WEAK, Event, event_lists, reference_shared


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


# ---- 4. shared identifiers: a reference written from the documentation, not from the product code -------------
RANK = {"customer_ref": 0, "email": 1, "phone": 2, "social_handle": 3, "device_id": 4, "anonymous_id": 5}
def reference_fold(events: list[Event], limits: dict[str, int], weak: frozenset[str] = WEAK,
                   weak_threshold: int = 200) -> set[frozenset[str]]:
    """Fold the distinct identifier sets, each at its earliest event, in event-time order, shared ones left out:
    the strongest identifier anchors; the other owners join oldest first unless the merged customer would hold
    more of a type than its limit; unowned identifiers link while under the limit; the first seen survives."""
    shared = reference_shared(events, limits, weak, weak_threshold)
    earliest: dict[tuple[Identifier, ...], tuple[int, str]] = {}
    for event_id, ms, ids in events:
        earliest[ids] = min(earliest.get(ids, (ms, event_id)), (ms, event_id))
    owner: dict[Identifier, str] = {}
    merged_into: dict[str, str] = {}
    held: dict[str, Counter[str]] = {}
    born: dict[str, tuple[int, str]] = {}
    home: dict[tuple[Identifier, ...], str] = {}

    def root(customer: str) -> str:
        while customer in merged_into:
            customer = merged_into[customer]
        return customer

    def too_many(a: Counter[str], b: Counter[str]) -> bool:
        return any(a[t] + b[t] > limit for t, limit in limits.items())

    for ids, key in sorted(earliest.items(), key=lambda item: item[1]):
        live = [i for i in ids if i not in shared] or [("only shared identifiers", repr(ids))]
        strongest = min(live, key=lambda i: (RANK.get(i[0], 99), i))
        anchor = root(owner[strongest]) if strongest in owner else None
        others = sorted({root(owner[i]) for i in live if i in owner} - {anchor}, key=born.__getitem__)
        fresh = Counter(i[0] for i in live if i not in owner)
        current = anchor
        for other in others:
            if too_many(held[current] if current is not None else fresh, held[other]):
                continue
            if current is None:
                current = other
                continue
            keep, gone = sorted((current, other), key=born.__getitem__)
            merged_into[gone] = keep
            held[keep] += held[gone]
            current = keep
        if current is None:
            current = key[1]
            born[current], held[current] = key, Counter()
        for ident in live:
            if ident not in owner and held[current][ident[0]] < limits.get(ident[0], 1_000_000):
                owner[ident] = current
                held[current][ident[0]] += 1
        home[ids] = current
    groups: dict[str, set[str]] = {}
    for event_id, _, ids in events:
        groups.setdefault(root(home[ids]), set()).add(event_id)
    return {frozenset(v) for v in groups.values()}


LOOSE = {"customer_ref": 1, "email": 3, "phone": 2, "device_id": 2, "anonymous_id": 2}


@settings(max_examples=400, deadline=None)
@given(event_lists(POOL), st.randoms(use_true_random=False), st.sampled_from([TIGHT, LOOSE]),
       st.sampled_from([WEAK, frozenset()]), st.sampled_from([0, 2, 1_000_000]))
def test_grouping_is_the_time_fold_without_shared_identifiers_in_any_order(
        events: list[Event], rng, limits: dict[str, int], weak: frozenset[str], weak_threshold: int) -> None:
    expected = reference_fold(events, limits, weak, weak_threshold)
    shared = reference_shared(events, limits, weak, weak_threshold)
    for _ in range(2):
        order = list(range(len(events)))
        rng.shuffle(order)
        graph = IdentityGraph(limits, weak_types=weak, weak_threshold=weak_threshold)
        assert grouping(events, order, graph=graph) == expected
        assert set(graph.shared.marked) == shared
        assert not shared & set(graph.owner) and not shared & set(graph.carriers)  # they link, and are walked, never
    # Rebuilt from its identifier sets (as after a restart), the graph gives the same grouping.
    restored = IdentityGraph(limits, weak_types=weak, weak_threshold=weak_threshold)
    restored.restore((ids, key) for ids, key in {ids: (ms, e) for e, ms, ids in sorted(events, reverse=True,
                                                                                           key=lambda e: (e[1], e[0]))
                                                 }.items())
    assert grouping(events, [], graph=restored) == expected


def test_reference_fold_agrees_with_the_documented_examples() -> None:
    """The reference itself, on cases whose answer the documentation spells out."""
    r1, r2, email = ("customer_ref", "R1"), ("customer_ref", "R2"), ("email", "x@e.com")
    # Two CRM ids on one email: the email is shared, each CRM id is a customer, the email alone is a third.
    events: list[Event] = [("a", 1, (r1, email)), ("b", 2, (email, r2)), ("c", 3, (email,))]
    assert reference_fold(events, TIGHT) == {frozenset({"a"}), frozenset({"b"}), frozenset({"c"})}
    # Below every limit it is the connected components.
    events = [("a", 1, (r1, email)), ("b", 2, (email,)), ("c", 3, (("phone", "p"),))]
    assert reference_fold(events, TIGHT) == components(events)


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

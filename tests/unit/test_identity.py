"""cem.domain.identity.IdentityGraph: linking, merges, guards, and agreement with an independent union-find."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cem.domain.identifiers import IdentifierRules, normalise_all
from cem.domain.identity import IdentityGraph, Merge, RefusedMerge
from cem.domain.model import Identifier, stable_id
from devtools.simulate import groups
from tests.unit.factories import components

EMAIL_A: Identifier = ("email", "a@example.com")
EMAIL_B: Identifier = ("email", "b@example.com")
PHONE_P: Identifier = ("phone", "+14155550123")
ANON_X: Identifier = ("anonymous_id", "anon-x")
REF_1: Identifier = ("customer_ref", "CRM-1")
REF_2: Identifier = ("customer_ref", "CRM-2")


def cid(event_id: str) -> str:
    """The id of the customer an event creates."""
    return stable_id("c", event_id)


def test_new_identifiers_create_one_customer_with_first_seen_links() -> None:
    graph = IdentityGraph()
    result = graph.attribute("e1", 100, (EMAIL_A, PHONE_P))
    assert result.customer_id == cid("e1")
    assert result.created
    assert graph.customers[cid("e1")].first_seen == (100, "e1")
    assert [(link.id_type, link.value, link.rule) for link in result.links] == [
        ("email", "a@example.com", "first_seen"),
        ("phone", "+14155550123", "first_seen"),
    ]
    assert result.merges == [] and result.refused == [] and result.unlinked == []
    assert graph.customers[cid("e1")].counts == {"email": 1, "phone": 1}


def test_transitive_linking() -> None:
    graph = IdentityGraph()
    a = graph.attribute("A", 100, (EMAIL_A,))
    b = graph.attribute("B", 200, (EMAIL_A, PHONE_P))
    c = graph.attribute("C", 300, (PHONE_P,))
    assert a.customer_id == b.customer_id == c.customer_id == cid("A")
    assert [(link.id_type, link.rule) for link in b.links] == [("phone", "shared_identifier")]
    assert c.links == [] and not c.created
    assert list(graph.customers) == [cid("A")]


def test_transitive_linking_out_of_order_merges_into_the_oldest() -> None:
    graph = IdentityGraph()
    graph.attribute("C", 300, (PHONE_P,))
    graph.attribute("A", 100, (EMAIL_A,))
    b = graph.attribute("B", 200, (EMAIL_A, PHONE_P))
    assert [(m.from_id, m.into_id, m.event_id, m.occurred_ms, m.rule) for m in b.merges] == [
        (cid("C"), cid("A"), "B", 200, "shared_identifier")
    ]
    assert b.customer_id == cid("A")
    assert {graph.customer_of(i) for i in (EMAIL_A, PHONE_P)} == {cid("A")}
    assert list(graph.customers) == [cid("A")]
    assert graph.customers[cid("A")].counts == {"email": 1, "phone": 1}
    assert graph.customers[cid("A")].members == [cid("C")]


def _merge_of(order: list[tuple[str, int, tuple[Identifier, ...]]]) -> Merge:
    graph = IdentityGraph()
    results = [graph.attribute(*args) for args in order]
    (merge,) = results[-1].merges
    return merge


def test_oldest_first_seen_survives_regardless_of_arrival_order() -> None:
    x = ("X", 1_000, (EMAIL_A,))
    y = ("Y", 500, (PHONE_P,))
    z = ("Z", 2_000, (EMAIL_A, PHONE_P))
    for order in ([x, y, z], [y, x, z]):
        merge = _merge_of(order)
        assert (merge.from_id, merge.into_id) == (cid("X"), cid("Y"))


def test_first_seen_tie_broken_by_event_id() -> None:
    for order in ([("b", 7, (EMAIL_A,)), ("a", 7, (PHONE_P,))], [("a", 7, (PHONE_P,)), ("b", 7, (EMAIL_A,))]):
        merge = _merge_of([*order, ("z", 9, (EMAIL_A, PHONE_P))])
        assert (merge.from_id, merge.into_id) == (cid("b"), cid("a"))


def test_chains_resolve_with_find() -> None:
    graph = IdentityGraph()
    graph.attribute("e1", 300, (EMAIL_A,))
    graph.attribute("e2", 200, (PHONE_P,))
    first = graph.attribute("e3", 400, (EMAIL_A, PHONE_P))
    assert [(m.from_id, m.into_id) for m in first.merges] == [(cid("e1"), cid("e2"))]
    graph.attribute("e4", 100, (ANON_X,))
    second = graph.attribute("e5", 500, (PHONE_P, ANON_X))
    assert [(m.from_id, m.into_id, m.event_id) for m in second.merges] == [(cid("e2"), cid("e4"), "e5")]
    assert sorted(graph.customers[cid("e4")].members) == sorted([cid("e2"), cid("e1")])
    assert graph.find(cid("e1")) == graph.find(cid("e2")) == graph.find(cid("e4")) == cid("e4")
    assert graph.parent[cid("e1")] == cid("e4")  # compressed to one hop
    assert graph.customer_of(EMAIL_A) == cid("e4")
    assert list(graph.customers) == [cid("e4")]
    assert graph.customers[cid("e4")].counts == {"email": 1, "phone": 1, "anonymous_id": 1}


def test_find_of_unknown_id_is_itself() -> None:
    assert IdentityGraph().find("c_nobody") == "c_nobody"
    assert IdentityGraph().customer_of(EMAIL_A) is None


def test_conflicting_customer_ref_refuses_the_merge() -> None:
    # The anonymous id reaches CRM-1's customer through the email: it was never seen with CRM-1 itself, so it is
    # not shared (seen with one customer_ref), and the bridge to CRM-2 is refused by the guard.
    graph = IdentityGraph()
    graph.attribute("e1", 100, (REF_1, EMAIL_A))
    graph.attribute("e1b", 150, (ANON_X, EMAIL_A))
    graph.attribute("e2", 200, (REF_2, PHONE_P))
    result = graph.attribute("e3", 300, (REF_2, ANON_X))
    assert result.merges == [] and result.shared == []
    assert result.refused == [RefusedMerge(cid("e2"), cid("e1"), "e3", 300, "conflicting_customer_ref")]
    assert result.customer_id == cid("e2")  # the customer of the event's customer_ref
    assert graph.customer_of(ANON_X) == cid("e1")  # the anonymous id stays where it was
    assert set(graph.customers) == {cid("e1"), cid("e2")}


def test_without_customer_ref_attribution_follows_the_email() -> None:
    graph = IdentityGraph()
    graph.attribute("e1", 100, (REF_1, EMAIL_A))
    graph.attribute("e2", 200, (REF_2, PHONE_P))
    result = graph.attribute("e3", 300, (PHONE_P, EMAIL_A))
    assert result.customer_id == cid("e1")
    assert [r.reason for r in result.refused] == ["conflicting_customer_ref"]


def test_second_customer_ref_on_one_email_makes_the_email_shared() -> None:
    # One customer holds one customer_ref, so an email seen with two is shared: it links and attributes nobody.
    graph = IdentityGraph()
    graph.attribute("e1", 100, (REF_1, EMAIL_A))
    result = graph.attribute("e2", 200, (REF_2, EMAIL_A))
    assert result.customer_id == cid("e2")
    assert result.refused == [] and result.merges == []
    assert [(s.id_type, s.value, s.event_id, s.reason, s.distinct_count) for s in result.shared] == [
        ("email", "a@example.com", "e2", "limit:customer_ref", 2)
    ]
    assert graph.customer_of(REF_2) == cid("e2")
    assert graph.customer_of(REF_1) == cid("e1")
    assert graph.customer_of(EMAIL_A) is None  # unlinked from the first customer
    assert [(link.value, link.customer_id, link.rule) for link in result.links] == [
        ("CRM-2", cid("e2"), "first_seen"), ("a@example.com", "", "shared")]
    assert set(graph.customers) == {cid("e1"), cid("e2")}
    # An event carrying only the email belongs to neither: its identifier set is a customer of its own.
    alone = graph.attribute("e3", 300, (EMAIL_A,))
    assert alone.customer_id == cid("e3") and alone.links == []
    assert graph.attribute("e4", 400, (EMAIL_A,)).customer_id == cid("e3")


def test_device_limit() -> None:
    graph = IdentityGraph()
    for i in range(50):
        result = graph.attribute(f"e{i}", 1_000 + i, (EMAIL_A, ("device_id", f"dev-{i:02d}")))
        assert result.unlinked == []
    assert graph.customers[cid("e0")].counts["device_id"] == 50
    result = graph.attribute("e50", 2_000, (EMAIL_A, ("device_id", "dev-50")))
    assert result.customer_id == cid("e0")
    assert result.unlinked == [(("device_id", "dev-50"), "limit:device_id")]
    assert result.links == []
    assert graph.customer_of(("device_id", "dev-50")) is None
    # The unlinked device, seen alone later, starts a customer of its own.
    alone = graph.attribute("e51", 3_000, (("device_id", "dev-50"),))
    assert alone.created and alone.customer_id == cid("e51")


def test_merge_refused_when_combined_emails_exceed_the_limit() -> None:
    graph = IdentityGraph()
    for i in range(3):
        graph.attribute(f"x{i}", 100 + i, (("anonymous_id", "anon-1"), ("email", f"x{i}@example.com")))
        graph.attribute(f"y{i}", 200 + i, (("device_id", "dev-2"), ("email", f"y{i}@example.com")))
    result = graph.attribute("link", 300, (("anonymous_id", "anon-1"), ("device_id", "dev-2")))
    assert result.customer_id == cid("y0")  # device_id outranks anonymous_id
    assert result.refused == [RefusedMerge(cid("y0"), cid("x0"), "link", 300, "limit:email")]
    assert result.merges == []


def test_custom_type_limits() -> None:
    graph = IdentityGraph({"email": 1})
    graph.attribute("e1", 1, (ANON_X, EMAIL_A))
    graph.attribute("e2", 2, (PHONE_P, EMAIL_B))
    # The phone is the event's strongest identifier; joining e1's customer would give its customer two emails.
    result = graph.attribute("e2b", 3, (ANON_X, PHONE_P))
    assert [r.reason for r in result.refused] == ["limit:email"]
    assert result.customer_id == cid("e2") != graph.customer_of(ANON_X) == cid("e1")
    # The limit is also what makes an identifier shared: this anonymous id now has two emails.
    shared = graph.attribute("e2c", 4, (ANON_X, EMAIL_B))
    assert [(s.value, s.reason) for s in shared.shared] == [("anon-x", "limit:email")]
    assert graph.customer_of(ANON_X) is None
    # Under the limit of a customer anchored by an owned identifier, the extra value is left unlinked.
    third = graph.attribute("e3", 3, (EMAIL_A, ("email", "c@example.com")))
    assert third.customer_id == cid("e1")
    assert third.unlinked == [(("email", "c@example.com"), "limit:email")]


def test_blocked_values_never_link() -> None:
    rules = IdentifierRules()
    graph = IdentityGraph()
    raw_events = [
        ("e1", {"email": "one@example.com", "device_id": "00000000-0000-0000-0000-000000000000",
                "anonymous_id": "undefined"}),
        ("e2", {"email": "two@example.com", "device_id": "00000000-0000-0000-0000-000000000000",
                "anonymous_id": "undefined", "phone": "0"}),
        ("e3", {"email": "three@example.com", "customer_ref": "null", "anonymous_id": '"null"'}),
    ]
    customers = set()
    for n, (event_id, raw) in enumerate(raw_events):
        identifiers = normalise_all(raw, rules)
        assert [t for t, _ in identifiers] == ["email"]
        customers.add(graph.attribute(event_id, n, identifiers).customer_id)
    assert len(customers) == len(graph.customers) == 3
    assert {t for t, _ in graph.owner} == {"email"}


# ---- the graph agrees with an independent union-find ----------------------------------------------------
POOL: list[Identifier] = (
    [("email", f"u{i}@example.com") for i in range(4)]
    + [("phone", f"+1415555010{i}") for i in range(4)]
    + [("anonymous_id", f"anon-{i}") for i in range(4)]
)
HIGH_LIMITS = {"email": 10_000, "phone": 10_000, "anonymous_id": 10_000}

_events = st.lists(
    st.tuples(st.integers(min_value=0, max_value=1_000), st.sets(st.sampled_from(POOL), min_size=1, max_size=3)),
    min_size=1,
    max_size=25,
)


def _grouping(
    events: list[tuple[str, int, tuple[Identifier, ...]]],
) -> tuple[set[frozenset[str]], IdentityGraph, dict[str, str]]:
    graph = IdentityGraph(HIGH_LIMITS)
    customer_of_event = {}
    for event_id, occurred_ms, identifiers in events:
        result = graph.attribute(event_id, occurred_ms, identifiers)
        assert result.refused == [] and result.unlinked == []
        customer_of_event[event_id] = result.customer_id
    return groups((event_id, graph.find(c)) for event_id, c in customer_of_event.items()), graph, customer_of_event


@settings(max_examples=150, deadline=None)
@given(_events, st.randoms(use_true_random=False))
def test_grouping_equals_connected_components_in_any_order(raw: list, rnd: object) -> None:
    events = [(f"e{i}", ms, tuple(sorted(ids))) for i, (ms, ids) in enumerate(raw)]
    expected = components((event_id, ids) for event_id, _, ids in events)
    grouping, graph, customer_of_event = _grouping(events)
    assert grouping == expected
    assert len(graph.customers) == len(expected)
    # Every identifier is owned by (the survivor of) the customer of each event carrying it.
    for event_id, _, ids in events:
        assert {graph.customer_of(i) for i in ids} == {graph.find(customer_of_event[event_id])}
    shuffled = list(events)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    regrouped, regraph, _ = _grouping(shuffled)
    assert regrouped == expected
    assert len(regraph.customers) == len(expected)
    assert set(regraph.customers) <= {cid(e) for e, _, _ in events}
    # Folded in event-time order, each group's survivor is the customer its earliest event created.
    in_time_order = sorted(events, key=lambda e: (e[1], e[0]))
    _, timed, _ = _grouping(in_time_order)
    first = {event_id: (ms, event_id) for event_id, ms, _ in events}
    assert set(timed.customers) == {cid(min(group, key=first.__getitem__)) for group in expected}


def test_survivor_is_oldest_when_events_arrive_in_time_order() -> None:
    events = [("e1", 10, (EMAIL_A,)), ("e2", 50, (PHONE_P,)), ("e3", 200, (EMAIL_A,)),
              ("e4", 300, (EMAIL_A, PHONE_P))]
    graph = IdentityGraph()
    for args in events:
        graph.attribute(*args)
    assert list(graph.customers) == [cid("e1")]


def test_survivor_is_oldest_when_an_earlier_event_arrives_late() -> None:
    # Was a bug at 1cb9132 (first_seen fixed by the creating event, so the survivor depended on arrival order);
    # fixed by the event-time recompute in 24190da. Same events as above, arriving e3, e1, e2, e4.
    events = [("e3", 200, (EMAIL_A,)), ("e1", 10, (EMAIL_A,)), ("e2", 50, (PHONE_P,))]
    graph = IdentityGraph()
    for args in events:
        graph.attribute(*args)
    email_customer, phone_customer = graph.customer_of(EMAIL_A), graph.customer_of(PHONE_P)
    last = graph.attribute("e4", 300, (EMAIL_A, PHONE_P))
    assert [(m.from_id, m.into_id) for m in last.merges] == [(phone_customer, email_customer)]
    assert graph.customers[graph.customer_of(EMAIL_A)].first_seen == (10, "e1")
    assert list(graph.customers) == [cid("e1")]  # the same id as when the events arrive in time order


# ---- with guards, the outcome does not depend on arrival order ----------------------------------------------
GUARDED_POOL: list[Identifier] = (
    [("customer_ref", f"CRM-{i}") for i in range(3)]
    + [("email", f"u{i}@example.com") for i in range(3)]
    + [("phone", f"+1415555010{i}") for i in range(3)]
    + [("device_id", f"dev-{i}") for i in range(3)]
    + [("anonymous_id", f"anon-{i}") for i in range(2)]
)
TIGHT_LIMITS = {"customer_ref": 1, "email": 2, "phone": 2, "device_id": 2, "anonymous_id": 3}

_guarded_events = st.lists(
    st.tuples(st.integers(min_value=0, max_value=20),
              st.sets(st.sampled_from(GUARDED_POOL), min_size=1, max_size=3)),
    min_size=1,
    max_size=14,
)


def _set_grouping(events: list[tuple[str, int, tuple[Identifier, ...]]]) -> tuple[set[frozenset[str]], set[str]]:
    graph = IdentityGraph(TIGHT_LIMITS)
    for event_id, occurred_ms, identifiers in events:
        graph.attribute(event_id, occurred_ms, identifiers)
    owners = [(event_id, graph.customer_of_set(identifiers)) for event_id, _, identifiers in events]
    assert all(owner is not None for _, owner in owners)
    return groups(owners), set(graph.customers)


@settings(max_examples=200, deadline=None)
@given(_guarded_events, st.randoms(use_true_random=False))
def test_guarded_grouping_is_independent_of_arrival_order(raw: list, rnd: object) -> None:
    events = [(f"e{i}", ms, tuple(sorted(ids))) for i, (ms, ids) in enumerate(raw)]
    reference = _set_grouping(sorted(events, key=lambda e: (e[1], e[0])))
    for _ in range(2):
        shuffled = list(events)
        rnd.shuffle(shuffled)  # type: ignore[attr-defined]
        assert _set_grouping(shuffled) == reference

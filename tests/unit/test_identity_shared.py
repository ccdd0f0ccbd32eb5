"""Shared identifiers (cem/domain/shared.py): an identifier seen with more values of another type than one customer
may hold links and attributes nobody, whatever the arrival order, and the resolver never walks it."""

from __future__ import annotations

import random

from cem.domain.identity import IdentityGraph
from cem.domain.model import Identifier, stable_id
from cem.domain.resolver import Effects, Resolver, ResolverConfig, Snapshot
from cem.domain.shared import SharedIdentifier, SharedIdentifiers
from sinks.writer import TABLE_ORDER, effect_columns
from tests.unit.factories import DAY_MS, MINUTE_MS, NOW_MS, event, snapshot_of

KIOSK: Identifier = ("device_id", "kiosk-lobby-1")
NOEMAIL: Identifier = ("email", "noemail@noemail.com")  # the graph sees it as is: the block-list is bypassed here
T0 = NOW_MS - DAY_MS

Event = tuple[str, int, tuple[Identifier, ...]]


def cid(event_id: str) -> str:
    return stable_id("c", event_id)


def anon(i: int) -> Identifier:
    return ("anonymous_id", f"anon-{i:04d}")


def grouping(events: list[Event], graph: IdentityGraph | None = None) -> set[frozenset[str]]:
    graph = graph if graph is not None else IdentityGraph()
    for args in events:
        graph.attribute(*args)
    groups: dict[str | None, set[str]] = {}
    for event_id, _, identifiers in events:
        groups.setdefault(graph.customer_of_set(identifiers), set()).add(event_id)
    assert None not in groups
    return {frozenset(g) for g in groups.values()}


def kiosk_visits(visitors: int) -> list[Event]:
    """Each visitor browses anonymously, then uses the kiosk with the same anonymous id."""
    events: list[Event] = []
    for i in range(visitors):
        events.append((f"v{i}-a", 1_000 * i, (anon(i),)))
        events.append((f"v{i}-k", 1_000 * i + 500, tuple(sorted((anon(i), KIOSK)))))
    return events


def test_a_kiosk_with_many_anonymous_visitors_keeps_them_apart() -> None:
    graph = IdentityGraph()
    events = kiosk_visits(200)
    groups = grouping(events, graph)
    assert groups == {frozenset({f"v{i}-a", f"v{i}-k"}) for i in range(200)}
    found = graph.shared.marked[KIOSK]
    assert (found.reason, found.distinct_count, found.event_id) == ("limit:anonymous_id", 51, "v50-k")
    assert graph.customer_of(KIOSK) is None
    assert KIOSK not in graph.carriers  # never walked again
    assert all(graph.customers[c].counts == {"anonymous_id": 1} for c in graph.customers)


def test_a_kiosk_in_any_arrival_order_gives_the_same_customers() -> None:
    events = kiosk_visits(120)
    expected = {frozenset({f"v{i}-a", f"v{i}-k"}) for i in range(120)}
    for seed in range(3):
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        assert grouping(shuffled) == expected
    assert grouping(list(reversed(events))) == expected


def test_the_kiosk_alone_is_a_customer_of_its_own() -> None:
    graph = IdentityGraph()
    grouping(kiosk_visits(60), graph)
    alone = graph.attribute("k1", 100_000, (KIOSK,))
    assert alone.created and alone.customer_id == cid("k1") and alone.links == []
    assert graph.attribute("k2", 100_001, (KIOSK,)).customer_id == cid("k1")
    # A different set of only shared identifiers is another customer: nothing links the two.
    other = graph.attribute("k3", 100_002, (("customer_ref", "CRM-9"),))
    assert other.customer_id == cid("k3")


def test_500_people_sharing_a_placeholder_email_stay_500_customers() -> None:
    graph = IdentityGraph()
    customers = set()
    events: list[Event] = []
    for i in range(500):
        phone: Identifier = ("phone", f"+1415555{i:04d}")
        events.append((f"p{i}", 10 * i, (NOEMAIL, phone)))
        events.append((f"q{i}", 10 * i + 5, (phone,)))
    for args in events:
        customers.add(graph.attribute(*args).customer_id)
    groups = grouping(events, graph)
    assert groups == {frozenset({f"p{i}", f"q{i}"}) for i in range(500)}
    assert len(graph.customers) == 500
    assert (graph.shared.marked[NOEMAIL].reason, graph.shared.marked[NOEMAIL].distinct_count) == ("limit:phone", 6)
    # At the time, the email glued the first five; they are apart now.
    assert len(customers) == 496


def test_when_an_identifier_becomes_shared_the_customers_it_glued_are_split() -> None:
    graph = IdentityGraph()
    glued = [graph.attribute(f"p{i}", 10 * i, (NOEMAIL, ("phone", f"+1415555{i:04d}"))) for i in range(5)]
    assert {a.customer_id for a in glued} == {cid("p0")}
    sixth = graph.attribute("p5", 50, (NOEMAIL, ("phone", "+14155550005")))
    assert sixth.recomputed
    assert [(s.id_type, s.value, s.event_id, s.occurred_ms) for s in sixth.shared] == [
        ("email", "noemail@noemail.com", "p5", 50)]
    assert sixth.customer_id == cid("p5")
    # The email is unlinked in the warehouse, the four phones glued to p0 move to customers of their own.
    assert ("email", "noemail@noemail.com", "", "shared") in {(k.id_type, k.value, k.customer_id, k.rule)
                                                              for k in sixth.links}
    assert {graph.customer_of(("phone", f"+1415555{i:04d}")) for i in range(6)} == {cid(f"p{i}") for i in range(6)}
    assert {c.customer_id for c in sixth.created} == {cid(f"p{i}") for i in range(1, 6)}
    assert graph.customers[cid("p0")].counts == {"phone": 1}


def test_a_family_device_with_two_crm_refs_is_shared() -> None:
    device: Identifier = ("device_id", "family-ipad-7c1f")
    events: list[Event] = [
        ("m1", 100, (("customer_ref", "CRM-MUM"), ("email", "mum@mail.net"), device)),
        ("d1", 200, (("customer_ref", "CRM-DAD"), ("email", "dad@mail.net"), device)),
        ("x1", 300, (device,)),
        ("m2", 400, (("email", "mum@mail.net"),)),
        ("d2", 500, (("email", "dad@mail.net"),)),
    ]
    for order in (events, list(reversed(events))):
        graph = IdentityGraph()
        groups = grouping(order, graph)
        assert groups == {frozenset({"m1", "m2"}), frozenset({"d1", "d2"}), frozenset({"x1"})}
        assert graph.shared.marked[device].reason == "limit:customer_ref"


def test_a_legit_device_with_three_anonymous_ids_stays_linked() -> None:
    device: Identifier = ("device_id", "dev-8c1e")
    events: list[Event] = [(f"e{i}", 100 * i, (anon(i), device)) for i in range(3)]
    events.append(("login", 400, (anon(2), device, ("email", "jane@mail.net"))))
    graph = IdentityGraph()
    assert grouping(events, graph) == {frozenset({"e0", "e1", "e2", "login"})}
    assert len(graph.shared) == 0
    assert graph.customer_of(device) == cid("e0")


def test_an_email_with_many_cookies_is_one_person_and_a_device_with_many_is_a_kiosk() -> None:
    # Weak types (device and browser ids) count against a person's identifier only past the weak threshold:
    # cookies churn, people do not.
    email: Identifier = ("email", "jane@mail.net")
    events: list[Event] = [(f"e{i}", i, (email, anon(i))) for i in range(60)]
    graph = IdentityGraph()
    assert grouping(events, graph) == {frozenset(e for e, _, _ in events)}
    assert len(graph.shared) == 0
    assert graph.shared.thresholds("email")["anonymous_id"] == 200
    assert graph.shared.thresholds("device_id")["anonymous_id"] == 50
    # With no weak types, or a lower threshold, the same traffic makes the email shared.
    for strict in (IdentityGraph(weak_types=()), IdentityGraph(weak_threshold=55)):
        assert len(grouping(events, strict)) == 60
        found = strict.shared.marked[email]
        assert (found.reason, found.distinct_count) == ("limit:anonymous_id", 51 if not strict.shared.weak_types
                                                        else 56)


def test_an_email_typed_by_hundreds_of_anonymous_visitors_is_shared() -> None:
    walkin: Identifier = ("email", "walkin@store.com")
    events: list[Event] = []
    for i in range(220):
        events.append((f"v{i}", 10 * i, (anon(i),)))
        events.append((f"w{i}", 10 * i + 5, (walkin, anon(i))))
    graph = IdentityGraph()
    assert grouping(events, graph) == {frozenset({f"v{i}", f"w{i}"}) for i in range(220)}
    assert (graph.shared.marked[walkin].reason, graph.shared.marked[walkin].distinct_count) == (
        "limit:anonymous_id", 201)


def test_a_crm_id_used_by_many_emails_is_a_shared_login() -> None:
    login: Identifier = ("customer_ref", "CRM-DEMO")
    events: list[Event] = [(f"e{i}", i, (login, ("email", f"agent{i}@mail.net"))) for i in range(8)]
    graph = IdentityGraph()
    assert len(grouping(events, graph)) == 8
    assert graph.shared.marked[login].reason == "limit:email"


def test_evidence_is_capped_at_the_limit_per_type() -> None:
    shared = SharedIdentifiers({"email": 5, "anonymous_id": 50, "device_id": 50})
    device: Identifier = ("device_id", "dev-1")
    for i in range(50):
        assert shared.observe((anon(i), device), (i, f"e{i}")) == []
    assert sum(1 for t, _ in shared._seen_with[device] if t == "anonymous_id") == 50
    (found,) = shared.observe((anon(50), device), (50, "e50"))
    assert found == SharedIdentifier("device_id", "dev-1", "e50", 50, "limit:anonymous_id", 51)
    assert device not in shared._seen_with  # its evidence is dropped once it is shared
    assert shared.observe((anon(51), device), (51, "e51")) == []  # and it is marked only once


def test_unlimited_types_and_same_type_values_are_no_evidence() -> None:
    shared = SharedIdentifiers({"email": 1, "phone": 1_000_000})
    for i in range(10):
        assert shared.observe((("email", "a@mail.net"), ("phone", f"+1415555{i:04d}")), (i, f"e{i}")) == []
    assert shared.thresholds("email") == {}
    assert shared.thresholds("phone") == {"email": 1}
    assert shared.observe((("email", "a@mail.net"), ("email", "b@mail.net")), (11, "e11")) == []


def test_hot_identifier_is_never_walked_again() -> None:
    graph = IdentityGraph()
    grouping(kiosk_visits(60), graph)
    assert graph._touched((anon(5), KIOSK)) == {graph.customer_of(anon(5))}
    late = graph.attribute("late", 5_100, (anon(5), KIOSK, ("email", "v5@mail.net")))
    assert late.recomputed  # older than the visitor's latest event: only the visitor's customer is replayed
    assert late.customer_id == graph.customer_of(anon(5)) == cid("v5-a")
    assert set(late.aliases) == {cid("v5-a")}


# ---- the resolver: effects, warehouse rows and restore -----------------------------------------------------
def _kiosk_batch() -> list:
    batch = []
    for i in range(60):
        batch.append(event(f"v{i}-a", T0 + i * MINUTE_MS, [anon(i)]))
        batch.append(event(f"v{i}-k", T0 + i * MINUTE_MS + 1_000, [anon(i), KIOSK], channel="store",
                           type="purchase"))
    batch.append(event("k-only", T0 + 90 * MINUTE_MS, [KIOSK], channel="store"))
    return batch


def test_effects_carry_the_shared_identifier_and_the_sink_writes_it() -> None:
    resolver = Resolver(ResolverConfig())
    effects = resolver.process(_kiosk_batch(), NOW_MS)
    assert [(s.id_type, s.value, s.reason, s.distinct_count) for s in effects.shared] == [
        ("device_id", "kiosk-lobby-1", "limit:anonymous_id", 51)]
    customers = {r.interaction.event_id: r.customer_id for r in effects.interactions}
    assert customers["k-only"] == cid("k-only")
    tables = effect_columns(effects, NOW_MS, 7 * DAY_MS)
    assert TABLE_ORDER.index("shared_identifiers") < TABLE_ORDER.index("interaction_log")
    assert tables["shared_identifiers"] == {
        "id_type": ["device_id"], "value": ["kiosk-lobby-1"], "event_id": ["v50-k"],
        "occurred_ms": [T0 + 50 * MINUTE_MS + 1_000], "marked_ms": [NOW_MS], "reason": ["limit:anonymous_id"],
        "distinct_count": [51], "version": [effects.version]}
    assert ("device_id", "kiosk-lobby-1", "") in set(zip(tables["identity_links"]["id_type"],
                                                        tables["identity_links"]["value"],
                                                        tables["identity_links"]["customer_id"], strict=True))


def _snapshot(batches: list[tuple[Effects, int]], with_shared: bool = True) -> Snapshot:
    snapshot = snapshot_of(batches)
    if with_shared:
        snapshot.shared = list({s.identifier: s for effects, _ in batches for s in effects.shared}.values())
    return snapshot


def test_a_restored_resolver_gives_the_same_answers() -> None:
    original = Resolver(ResolverConfig())
    batch = _kiosk_batch()
    effects = original.process(batch, NOW_MS)
    restored = Resolver(ResolverConfig())
    restored.restore(_snapshot([(effects, NOW_MS)]))
    assert restored.graph.shared.marked == original.graph.shared.marked
    for e in batch:
        assert restored.graph.customer_of_set(e.identifiers) == original.graph.customer_of_set(e.identifiers)
    assert set(restored.graph.customers) == set(original.graph.customers)
    assert KIOSK not in restored.graph.carriers
    # The same new events give the same answers, and the restore itself records nothing again.
    later = [event("n1", T0 + 2 * DAY_MS // 2, [anon(3), KIOSK]), event("n2", T0 + 100 * MINUTE_MS, [KIOSK]),
             event("n3", T0 + 101 * MINUTE_MS, [anon(70), KIOSK])]
    a, b = original.process(later, NOW_MS + 1), restored.process(later, NOW_MS + 1)
    assert [r.customer_id for r in a.interactions] == [r.customer_id for r in b.interactions]
    assert a.shared == b.shared == []


def test_a_restore_missing_the_shared_rows_finds_them_again_and_records_them() -> None:
    original = Resolver(ResolverConfig())
    effects = original.process(_kiosk_batch(), NOW_MS)
    restored = Resolver(ResolverConfig())
    restored.restore(_snapshot([(effects, NOW_MS)], with_shared=False))
    assert set(restored.graph.shared.marked) == {KIOSK}
    for e in _kiosk_batch():
        assert restored.graph.customer_of_set(e.identifiers) == original.graph.customer_of_set(e.identifiers)
    next_batch = restored.process([], NOW_MS + 1)
    assert [(s.id_type, s.value) for s in next_batch.shared] == [KIOSK]
    assert restored.process([], NOW_MS + 2).shared == []  # recorded once

"""Erasure (`cem forget`) as pure functions: the keyed hash, finding an identifier by it, who and what is erased,
the refusal of shared identifiers, and the graph after a forget being exactly what a restart rebuilds."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cem.domain.erasure import (
    APPLIED,
    FORGOTTEN,
    NOT_FOUND,
    REFUSED,
    ErasureRequest,
    InvalidRequest,
    find_identifiers,
    plan_erasure,
)
from cem.domain.identity import DEFAULT_TYPE_LIMITS, IdentityGraph, IdentitySet
from cem.domain.identity_erasure import forget_in_graph
from cem.domain.keyed import DEVELOPMENT_KEY, key_bytes, keyed_hash
from cem.domain.model import Identifier, identity_key, stable_id
from cem.domain.resolver import Resolver, ResolverConfig
from cem.domain.shared import DEFAULT_WEAK_THRESHOLD
from sinks.erasure import erasure_statements
from sinks.mutations import IN_LIST_MAX
from tests.unit.factories import HOUR_MS, MINUTE_MS, NOW_MS, event
from tests.unit.strategies import TIGHT, WEAK, Event, event_lists, reference_shared

KEY = b"k" * 32
JANE = ("email", "jane.doe@example.com")


def request(ident: Identifier, force: bool = False, key: bytes = KEY) -> ErasureRequest:
    return ErasureRequest("r1", ident[0], keyed_hash(key, *ident), NOW_MS, force)


def graph_of(events: list[Event], limits: dict[str, int] | None = None) -> IdentityGraph:
    graph = IdentityGraph(limits)
    for event_id, ms, ids in events:
        graph.attribute(event_id, ms, tuple(sorted(ids)))
    return graph


# ---- the keyed hash ----------------------------------------------------------------------------------
def test_keyed_hash_depends_on_the_key_and_is_no_unkeyed_hash() -> None:
    value = keyed_hash(KEY, *JANE)
    assert re.fullmatch(r"[0-9a-f]{64}", value), value  # 32 bytes, hex: a SHA-256-sized keyed digest
    assert value == keyed_hash(KEY, *JANE)
    assert value != keyed_hash(b"another key", *JANE)
    assert value != keyed_hash(KEY, "email", "jane.doe@example.org")
    for unkeyed in (hashlib.sha256(JANE[1].encode()).hexdigest(), hashlib.blake2b(JANE[1].encode()).hexdigest(),
                    hashlib.blake2b(JANE[1].encode(), digest_size=32).hexdigest()):
        assert value != unkeyed


@pytest.mark.parametrize("a, b", [(("ab", "c"), ("a", "bc")), (("email", "x"), ("emai", "lx")), (("a",), ("a", ""))])
def test_keyed_hash_keeps_parts_apart(a: tuple[str, ...], b: tuple[str, ...]) -> None:
    assert keyed_hash(KEY, *a) != keyed_hash(KEY, *b)


def test_key_bytes_uses_the_development_key_only_when_empty() -> None:
    assert key_bytes("") == DEVELOPMENT_KEY
    assert key_bytes("s3cret") == b"s3cret"
    long = key_bytes("x" * 200)  # blake2b keys are at most 64 bytes
    assert len(long) == 64 and long != key_bytes("x" * 199)
    keyed_hash(long, *JANE)


# ---- the request ---------------------------------------------------------------------------------------
def test_request_round_trips_and_never_carries_the_value() -> None:
    sent = request(JANE, force=True)
    message = sent.to_message()
    assert JANE[1] not in repr(message)
    assert ErasureRequest.from_message(message) == sent


@pytest.mark.parametrize("message", [
    {"control": "forget", "request_id": "r", "id_type": "email", "value": "jane.doe@example.com"},
    {"control": "forget", "request_id": "r", "id_type": "email"},
    {"control": "forget", "request_id": "r", "id_type": "email", "value_key": "abc"},
    {"control": "forget", "request_id": "", "id_type": "email", "value_key": "a" * 64},
    {"control": "forget", "request_id": "r", "id_type": "email", "value_key": "a" * 64, "requested_ms": "soon"},
])
def test_malformed_requests_are_refused(message: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        ErasureRequest.from_message(message)


def test_force_must_be_a_json_true() -> None:
    base = {"control": "forget", "request_id": "r", "id_type": "email", "value_key": "a" * 64}
    assert ErasureRequest.from_message({**base, "force": True}).force
    assert not ErasureRequest.from_message({**base, "force": "false"}).force
    assert not ErasureRequest.from_message(base).force


# ---- finding and planning --------------------------------------------------------------------------------
def test_an_identifier_unlinked_at_a_limit_is_found_and_its_carrier_erased() -> None:
    # Devices name a device, not a person: Jane's e-mail stays hers past the device limit (its shared threshold
    # for device ids is far higher), and the third device goes unlinked.
    devices = [("device_id", f"dev-{i}") for i in range(3)]
    graph = graph_of([(f"e{i}", i, (JANE, device)) for i, device in enumerate(devices)],
                     {"device_id": 2, "email": 5})
    jane = graph.customer_of(JANE)
    assert graph.customer_of(devices[2]) is None  # went unlinked at the device limit
    assert find_identifiers(graph, "device_id", keyed_hash(KEY, *devices[2]), KEY) == [devices[2]]
    assert find_identifiers(graph, "device_id", keyed_hash(b"wrong", *devices[2]), KEY) == []
    plan = plan_erasure(graph, request(devices[2]), KEY, 3)
    assert plan.status == APPLIED and plan.customer_ids == (jane,)
    assert plan.erased == {JANE, *devices}


def test_not_found() -> None:
    graph = graph_of([("e1", 1, (JANE,))])
    plan = plan_erasure(graph, request(("email", "someone.else@example.com")), KEY, 3)
    assert plan.status == NOT_FOUND and not plan.erased
    assert plan_erasure(graph, request(("phone", JANE[1])), KEY, 3).status == NOT_FOUND  # the type is part of it


@pytest.mark.parametrize("people, max_customers, refused", [(2, 1, True), (4, 3, True), (3, 3, False),
                                                            (520, 3, True), (520, 600, False)])
def test_shared_identifier_is_refused_unless_forced(people: int, max_customers: int, refused: bool) -> None:
    # A front-desk address typed for every walk-in customer: two CRM ids on it make it shared (it belongs to
    # nobody and is never walked), and erasure still finds it and counts the customers whose events carry it.
    front_desk = ("email", "frontdesk@example.org")
    events = [(f"p{i}", i, (("customer_ref", f"CRM-{i}"), front_desk)) for i in range(people)]
    graph = graph_of(events)
    assert front_desk in graph.shared and front_desk not in graph.carriers
    assert graph.customer_of(front_desk) is None
    plan = plan_erasure(graph, request(front_desk), KEY, max_customers)
    assert plan.carriers == people
    assert plan.status == (REFUSED if refused else APPLIED)
    if refused:
        assert not plan.erased and f"events of {people} customers" in plan.reason and "--force" in plan.reason
        plan = plan_erasure(graph, request(front_desk, force=True), KEY, max_customers)
        assert plan.status == APPLIED and plan.carriers == people
    # Nobody's: no customer is the person, and nothing but the identifier itself is erased.
    assert plan.customer_ids == () and plan.erased == {front_desk}
    # Every event carrying it is anonymised (its set removed), and its mark goes with its evidence.
    every_set = set(graph.set_key)
    result = forget_in_graph(graph, plan.customer_ids, plan.erased)
    assert set(result.removed_sets) == every_set and not graph.set_key and not graph.customers
    assert front_desk not in graph.shared and result.unshared == []
    assert plan_erasure(graph, request(front_desk, True), KEY, max_customers).status == NOT_FOUND


def test_identifiers_of_others_and_widely_shared_ones_are_not_the_persons() -> None:
    kiosk = ("device_id", "kiosk-42")
    bob_phone = ("phone", "+12125550199")
    events = [("j1", 1, (("customer_ref", "CRM-J"), JANE, kiosk)),
              ("b1", 2, (("customer_ref", "CRM-B"), ("email", "bob@example.com"), bob_phone)),
              # Hers (her email anchors it), carrying Bob's phone; the merge is refused (two CRM ids), so the
              # phone stays Bob's. A CRM id of his on it would make her email shared.
              ("j2", 3, (JANE, bob_phone)),
              *[(f"k{i}", 10 + i, (("customer_ref", f"CRM-K{i}"), kiosk)) for i in range(5)]]
    graph = graph_of(events)
    jane = graph.customer_of(JANE)
    assert jane is not None and graph.customer_of_set((JANE, bob_phone)) == jane
    assert graph.customer_of(bob_phone) == graph.customer_of(("customer_ref", "CRM-B")) != jane
    assert kiosk in graph.shared  # seen with six CRM ids
    plan = plan_erasure(graph, request(JANE), KEY, 3)
    assert plan.customer_ids == (jane,)
    assert plan.erased == {JANE, ("customer_ref", "CRM-J")}
    assert plan.shared_kept == 1  # the kiosk: 6 customers' events carry it


# ---- the graph after a forget is what a restart rebuilds ---------------------------------------------------
def assert_nothing_of(graph: IdentityGraph, erased: set[Identifier], customer_ids: list[str]) -> None:
    assert not erased & graph.owner.keys()
    assert not erased & graph.carriers.keys()
    assert not any(erased.intersection(s) for s in graph.set_owner)
    assert not any(erased.intersection(s) for c in graph.customers.values() for s in c.sets)
    assert not any(erased.intersection(s) for s in graph.origins.values())
    assert not set(customer_ids) & (graph.customers.keys() | graph.parent.keys())
    assert not any(set(customer_ids) & holders for holders in graph.carriers.values())
    assert not erased & graph.shared.marked.keys()


def restored_like(graph: IdentityGraph, limits: dict[str, int] | None) -> IdentityGraph:
    fresh = IdentityGraph(limits)
    fresh.restore(graph.set_key.items())
    return fresh


def state(graph: IdentityGraph) -> tuple[dict[object, str], dict[Identifier, str], set[Identifier]]:
    sets = {s: graph.find(owner) for s, owner in graph.set_owner.items()}
    owners = {ident: graph.find(owner) for ident, owner in graph.owner.items()}
    return sets, owners, set(graph.shared.marked)


@settings(max_examples=300, deadline=None)
@given(event_lists(TIGHT), st.randoms(use_true_random=False), st.integers(1, 4), st.booleans())
def test_forget_leaves_exactly_what_a_restart_rebuilds(events: list[Event], rnd: object, max_customers: int,
                                                       force: bool) -> None:
    order = list(range(len(events)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    graph = graph_of([events[i] for i in order], TIGHT)
    target = rnd.choice(sorted(graph.carriers.keys() | graph.shared.marked.keys()))  # type: ignore[attr-defined]
    plan = plan_erasure(graph, request(target, force), KEY, max_customers)
    if plan.status != APPLIED:
        assert plan.status == REFUSED and not force
        return
    before = dict(graph.set_key)
    shared_before = set(graph.shared.marked)
    result = forget_in_graph(graph, plan.customer_ids, plan.erased)
    assert set(result.removed_sets) == {s for s in before if plan.erased.intersection(s)} | {
        s for s in before if s not in graph.set_key}
    assert_nothing_of(graph, set(plan.erased), result.customer_ids)
    restored = restored_like(graph, TIGHT)
    assert state(graph) == state(restored)
    # Shared is what the remaining events show (an independent reference): the erased events' evidence is gone.
    remaining = [e for e in events if e[2] in graph.set_key]
    assert set(graph.shared.marked) == reference_shared(remaining, TIGHT, WEAK, DEFAULT_WEAK_THRESHOLD)
    assert {found.identifier for found in result.unshared} == shared_before - plan.erased - graph.shared.marked.keys()
    # What the replay reports covers every set it replayed, with the owner a restart gives it.
    for member_set, owner in result.replay.set_customers.items():
        assert graph.find(graph.set_owner[member_set]) == owner
    # The evidence left behind is a restart's too: the same later events give the same state.
    later = [(f"n{i}", 100 + i, tuple(sorted(set(ids) - plan.erased))) for i, (_, _, ids) in enumerate(events)]
    for event_id, ms, ids in later:
        if ids:
            graph.attribute(event_id, ms, ids)
            restored.attribute(event_id, ms, ids)
    assert state(graph) == state(restored)
    # Forgetting again finds nothing.
    assert plan_erasure(graph, request(target, True), KEY, max_customers).status == NOT_FOUND


@pytest.mark.parametrize("limits, bob_first", [
    # Bob's first event carried Jane's email and an email of his: the merge is refused at the email limit.
    ({**DEFAULT_TYPE_LIMITS, "email": 1}, (("email", "bob@example.com"), JANE)),
    # Bob's first event carried Jane's email and his CRM id: her email is shared (two CRM ids), nobody's.
    (None, (("customer_ref", "CRM-B"), JANE)),
])
def test_a_neighbour_whose_first_set_carried_her_email_keeps_its_id_through_an_alias(
        limits: dict[str, int] | None, bob_first: IdentitySet) -> None:
    # Bob's first set goes (it names her); his later events stay his.
    b2 = (("customer_ref", "CRM-B"), ("email", "bob@example.com"), ("phone", "+12125550199"))
    events = [("j1", 1, (("customer_ref", "CRM-J"), JANE)), ("b1", 2, bob_first), ("b2", 3, b2)]
    graph = graph_of(events, limits)
    bob = graph.customer_of(("customer_ref", "CRM-B"))
    assert bob == stable_id("c", "b1")
    assert (JANE in graph.shared) == (limits is None)
    plan = plan_erasure(graph, request(JANE), KEY, 3)
    result = forget_in_graph(graph, plan.customer_ids, plan.erased)
    assert tuple(sorted(bob_first)) in result.removed_sets
    assert graph.customer_of_set(tuple(sorted(b2))) == stable_id("c", "b2")
    assert graph.find(bob) == stable_id("c", "b2")  # the old id resolves to where his events went
    assert result.replay.aliases[bob] == stable_id("c", "b2")
    assert state(graph) == state(restored_like(graph, limits))
    # Her email now makes a brand-new customer, the only one holding it.
    after = graph.attribute("j9", 9, (JANE,))
    assert after.customer_id == stable_id("c", "j9") and graph.customer_of(JANE) == after.customer_id


# ---- the resolver: sessions, journeys, what the sink writes ---------------------------------------------------
def test_resolver_forget_moves_sessions_and_journeys_to_forgotten() -> None:
    resolver = Resolver(ResolverConfig())
    bob = ("email", "bob@example.com")
    batch = [event("w1", NOW_MS - HOUR_MS, [JANE]),
             event("w2", NOW_MS - HOUR_MS + MINUTE_MS, [JANE, ("anonymous_id", "a-1")]),
             event("c1", NOW_MS - HOUR_MS + 2 * MINUTE_MS, [JANE], channel="call_center", type="call",
                   issue_ref="CASE-1"),
             event("b1", NOW_MS - HOUR_MS, [bob], issue_ref="CASE-2")]
    resolver.process(batch, NOW_MS)
    jane = resolver.graph.customer_of(JANE)
    assert jane is not None and resolver.sessions.by_customer[jane]
    plan = plan_erasure(resolver.graph, request(JANE), KEY, 3)
    erasure = resolver.forget(plan.customer_ids, plan.erased, NOW_MS + 1)
    assert erasure.customer_ids == [jane]
    assert sorted(erasure.identity_keys) == sorted({identity_key(e.identifiers) for e in batch[:3]})
    assert jane not in resolver.sessions.by_customer
    # Jane's journey left the book (no event reaches an erased customer), as a restore leaves it; Bob's stays.
    assert {c: list(refs) for c, refs in resolver.journeys.by_customer.items()} == {
        resolver.graph.customer_of(bob): ["CASE-2"]}
    assert erasure.effects.version > NOW_MS * 1000 - 1 and not erasure.effects.interactions
    assert {"w1", "w2", "c1"} <= resolver.seen.keys()  # replays of erased events stay duplicates


# ---- the mutations ---------------------------------------------------------------------------------------------
def test_mutations_name_only_ids_and_touch_identity_sets_last() -> None:
    events = [f"ev-{i}" for i in range(IN_LIST_MAX + 5)]
    statements = erasure_statements("cem", ["c_1", "c_2"], events, ["ev-1"])
    tables = [s.split()[2] for s in statements]
    assert tables[-2:] == ["cem.identity_sets", "cem.identity_sets"]
    assert tables.index("cem.interaction_log") < tables.index("cem.identity_sets")
    assert tables.count("cem.interaction_log") == 2  # chunked: the text of one stays small
    assert all(len(s) < 100_000 for s in statements)
    updates = [s for s in statements if "interaction_log" in s]
    assert all("WHERE event_id IN" in s and f"origin_customer_id = '{FORGOTTEN}'" in s for s in updates)
    assert set(events) == {e for s in updates for e in s.split("IN (")[1].rstrip(")").replace("'", "").split(", ")}
    assert erasure_statements("cem", [], [], []) == []


def test_the_overrides_of_erased_customers_go_naming_no_identity_key() -> None:
    statements = erasure_statements("cem", ["c_1"], ["ev-1"], ["ev-1"])
    overrides = [s for s in statements if s.startswith("ALTER TABLE cem.overrides")]
    assert overrides == ["ALTER TABLE cem.overrides DELETE WHERE kind = 'customer' AND current_id IN ('c_1')"]
    assert not any("k_" in s for s in statements)


# ---- purging consumed records from the topics ----------------------------------------------------------------
def test_purge_deletes_only_what_the_group_committed() -> None:
    from streams.purge import caught_up, purge_plan

    ends = {"raw-0": 10, "raw-1": 5, "resolve-0": 3, "idle-0": 0}
    committed = {"raw-0": 10, "raw-1": 2, "resolve-0": 3}
    starts = {"raw-0": 0, "raw-1": 2, "resolve-0": 1, "idle-0": 0}
    assert purge_plan(ends, committed, starts) == {"raw-0": 10, "resolve-0": 3}  # raw-1: nothing new committed
    assert not caught_up(ends, committed)
    assert caught_up(ends, {**committed, "raw-1": 5})
    assert purge_plan(ends, {}, starts) == {}  # a group that committed nothing loses nothing

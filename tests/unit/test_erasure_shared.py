"""Erasure and shared identifiers together: the evidence of erased events goes, an identifier only they made
shared links again, a restore agrees with memory even when a shared row outlives its evidence, and the
`shared_identifiers` rows (embedded engine, the production sink) hold exactly the identifiers still shared."""

from __future__ import annotations

from cem.domain.erasure import APPLIED, plan_erasure
from cem.domain.identity import IdentityGraph
from cem.domain.identity_erasure import forget_in_graph
from cem.domain.model import Identifier, stable_id
from tests.unit.factories import DAY_MS, NOW_MS
from tests.unit.test_erasure import JANE, KEY, request, state

T0 = NOW_MS - DAY_MS
LOBBY: Identifier = ("device_id", "lobby-tablet")  # shared by visitors A and B, with or without Jane
KIOSK: Identifier = ("device_id", "kiosk-7")  # shared only because Jane and K used it
DESK_PHONE: Identifier = ("phone", "+14155550100")  # shared by Z and K, revealed by K's event with the kiosk


def crm(name: str) -> Identifier:
    return ("customer_ref", f"CRM-{name}")


# In arrival order. The lobby tablet is revealed shared by Jane's event; the kiosk and the desk phone by k1.
TRAFFIC: list[tuple[str, int, tuple[Identifier, ...]]] = [
    ("z0", T0, (crm("Z"), DESK_PHONE)),
    ("a1", T0 + 1, (crm("A"), LOBBY)),
    ("j1", T0 + 2, (crm("J"), JANE, LOBBY, KIOSK)),
    ("b1", T0 + 3, (crm("B"), LOBBY)),
    ("k1", T0 + 4, (crm("K"), KIOSK, DESK_PHONE)),
    ("k2", T0 + 5, (KIOSK,)),
]


def graph_of_traffic() -> IdentityGraph:
    graph = IdentityGraph()
    for event_id, ms, ids in TRAFFIC:
        graph.attribute(event_id, ms, tuple(sorted(ids)))
    return graph


def test_an_identifier_only_erased_events_made_shared_links_again_and_a_stale_record_is_ignored() -> None:
    graph = graph_of_traffic()
    assert set(graph.shared.marked) == {LOBBY, KIOSK, DESK_PHONE}
    records = list(graph.shared.marked.values())
    assert {(r.identifier, r.event_id) for r in records} == {(LOBBY, "j1"), (KIOSK, "k1"), (DESK_PHONE, "k1")}
    plan = plan_erasure(graph, request(JANE), KEY, 2)
    assert plan.status == APPLIED and plan.erased == {JANE, crm("J")} and plan.shared_kept == 2
    result = forget_in_graph(graph, plan.customer_ids, plan.erased)
    # Without Jane's event the kiosk is seen with one CRM id: it links again, and k2 joins K's customer.
    assert [found.identifier for found in result.unshared] == [KIOSK]
    assert set(graph.shared.marked) == {LOBBY, DESK_PHONE}
    assert graph.customer_of(KIOSK) == graph.customer_of_set((KIOSK,)) == stable_id("c", "k1")
    assert result.replay.aliases[stable_id("c", "k2")] == stable_id("c", "k1")
    # The lobby tablet is still shared; its record now names a remaining event.
    assert graph.shared.marked[LOBBY].event_id == "b1"
    # A restart from the remaining sets, with every record written before (the kiosk's row outliving its
    # evidence, the lobby's naming the erased event), builds exactly this graph.
    restored = IdentityGraph()
    unrecorded = restored.restore(graph.set_key.items(), records)
    assert state(restored) == state(graph) and unrecorded == []

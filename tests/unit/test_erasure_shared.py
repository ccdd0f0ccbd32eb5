"""Erasure and shared identifiers together: the evidence of erased events goes, an identifier only they made
shared links again, a restore agrees with memory even when a shared row outlives its evidence, and the
`shared_identifiers` rows (embedded engine, the production sink) hold exactly the identifiers still shared."""

from __future__ import annotations

import re

from cem.domain.erasure import APPLIED, plan_erasure
from cem.domain.identity import IdentityGraph
from cem.domain.keyed import keyed_hash
from cem.domain.model import Identifier, stable_id
from cem.settings import Settings
from sinks.erasure import erasure_key
from streams.app import ResolverSink
from tests.unit.factories import DAY_MS, NOW_MS, event
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
    result = graph.forget(plan.customer_ids, plan.erased)
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


def test_the_erasure_deletes_the_rows_of_identifiers_no_longer_shared_and_rewrites_the_others(tmp_path) -> None:
    settings = Settings(clickhouse_url=f"chdb://{tmp_path}/warehouse", erasure_max_customers=2)
    sink = ResolverSink(settings, clock=lambda: NOW_MS / 1000)
    for event_id, ms, ids in TRAFFIC:  # one batch per event: the arrival order above
        sink.process_and_write([event(event_id, ms, list(ids))])
    warehouse = sink.warehouse
    assert warehouse is not None
    db = warehouse.database
    select = f"SELECT id_type, value, event_id FROM {db}.shared_identifiers ORDER BY id_type, value, event_id"
    assert warehouse.query(select) == [(*KIOSK, "k1"), (*LOBBY, "j1"), (*DESK_PHONE, "k1")]
    outcome = sink.apply_control({"control": "forget", "request_id": "r1", "id_type": JANE[0],
                                  "value_key": keyed_hash(erasure_key(settings), *JANE), "requested_ms": 1})
    assert outcome is not None and outcome.status == APPLIED and outcome.events_anonymised == 1
    # The kiosk's row goes (no longer shared); the lobby's went with Jane's event and the desk phone's with the
    # kiosk's revealing event k1: both are written again, naming remaining events.
    assert warehouse.query(select) == [(*LOBBY, "b1"), (*DESK_PHONE, "k1")]
    # By event ids only: the rows of j1 (anonymised) and of k1 (the kiosk's revealing event, kept).
    commands = [str(c) for (c,) in warehouse.query(
        f"SELECT command FROM system.mutations WHERE database = '{db}' AND table = 'shared_identifiers'")]
    assert all("DELETE WHERE event_id IN" in c for c in commands)
    assert sorted(v for c in commands for v in re.findall(r"'([^']*)'", c)) == ["j1", "k1"]
    # A restart builds what memory holds, and finds nothing to record again.
    live = sink.resolver
    assert live is not None
    restarted = ResolverSink(settings, clock=lambda: NOW_MS / 1000)
    restored = restarted._ensure_resolver()
    assert state(restored.graph) == state(live.graph) and restored.unrecorded_shared == []

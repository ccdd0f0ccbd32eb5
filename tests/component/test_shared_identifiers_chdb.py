"""Shared identifiers on the embedded warehouse (chdb), through the worker's resolver service: the rows recorded, the
snapshot a restart loads, `cem identity explain`, and an erasure that leaves an identifier no longer shared."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cem.config import type_limits
from cem.domain.erasure import APPLIED
from cem.domain.keyed import keyed_hash
from cem.domain.shared import SharedIdentifier
from cem.identity_cli import explain_customer, explain_shared
from cem.service.resolver_service import ResolverService
from cem.settings import Settings
from sinks.erasure import erasure_key
from sinks.snapshot import load_snapshot
from tests.unit.factories import MINUTE_MS, NOW_MS, event
from tests.unit.test_erasure import JANE, state
from tests.unit.test_erasure_shared import DESK_PHONE, KIOSK, LOBBY, TRAFFIC
from tests.unit.test_identity_shared import KIOSK as KIOSK_LOBBY
from tests.unit.test_identity_shared import T0, _kiosk_batch, anon


def test_the_erasure_deletes_the_rows_of_identifiers_no_longer_shared_and_rewrites_the_others(
        tmp_path: Path, new_service: Callable[..., ResolverService]) -> None:
    # Two services at once in one process (the live one and a restart): the restart rebuilds from the warehouse.
    settings = Settings(clickhouse_url=f"chdb://{tmp_path}/warehouse", erasure_max_customers=2, state_store="memory")
    sink = new_service(settings, clock=lambda: NOW_MS / 1000)
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
    restarted = new_service(settings, clock=lambda: NOW_MS / 1000)
    assert restarted.process_and_write([]).effects.shared == []
    assert restarted.resolver is not None and state(restarted.resolver.graph) == state(live.graph)


def test_the_warehouse_records_and_explains_a_shared_identifier(tmp_path: Path,
                                                                new_service: Callable[..., ResolverService]) -> None:
    settings = Settings(clickhouse_url=f"chdb://{tmp_path}/warehouse", state_store="memory")
    sink = new_service(settings, clock=lambda: NOW_MS / 1000)
    sink.process_and_write(_kiosk_batch())
    warehouse = sink.warehouse
    assert warehouse is not None
    db = warehouse.database
    assert warehouse.query(f"SELECT id_type, value, event_id, reason, distinct_count, marked_ms "
                           f"FROM {db}.shared_identifiers") == [
        ("device_id", "kiosk-lobby-1", "v50-k", "limit:anonymous_id", 51, NOW_MS)]
    assert load_snapshot(warehouse, 0).shared == [
        SharedIdentifier("device_id", "kiosk-lobby-1", "v50-k", T0 + 50 * MINUTE_MS + 1_000, "limit:anonymous_id", 51)]
    # The identities view links the kiosk to nobody; every visitor is a customer of their own.
    assert warehouse.query(f"SELECT customer_id, rule FROM {db}.identities WHERE id_type = 'device_id'") == [
        ("", "shared")]
    rows = dict(warehouse.query(f"SELECT event_id, customer_id FROM {db}.interactions"))
    assert len({rows[f"v{i}-k"] for i in range(60)}) == 60
    assert all(rows[f"v{i}-k"] == rows[f"v{i}-a"] for i in range(60))

    about = explain_shared(warehouse, KIOSK_LOBBY, type_limits(settings))
    assert about is not None
    assert "device_id kiosk-lobby-1 is shared: it links and attributes nobody" in about
    assert "seen with 51 anonymous_id values (one customer may hold 50); marked by event v50-k" in about
    assert "carried by 61 identifier sets of 61 customers" in about
    assert explain_shared(warehouse, anon(3), type_limits(settings)) is None

    customer = rows["v3-k"]
    text = explain_customer(warehouse, customer, anon(3))
    assert "Shared identifiers (1): on this customer's events, but linking nobody" in text
    assert "kiosk-lobby-1" in text and "seen with 51 anonymous_id values" in text
    # Visitor 3 was glued to the kiosk's first visitor until the kiosk was found shared: that merge is undone.
    assert "[shared_identifier] (undone since)" in text

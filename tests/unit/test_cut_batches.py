"""A worker killed between two inserts of one batch: the worker after it ends with what the views show on a
warehouse that was never cut, on the in-memory warehouse (sinks.fake), for a cut before every table.

The views are read here as the SQL views read them (sinks/migrations): an interaction's customer, session and
journey through the overrides; sessions and service journeys at their latest version, their customer through
the customer aliases. The batch after the restart is the one cut short, delivered again whole, or with the next
one, or in two parts."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cem.domain.model import Interaction
from cem.service.resolver_service import WRITE_ORDER
from cem.service.retry import Stopping
from sinks.fake import FakeWarehouseServer
from tests.unit.factories import HOUR_MS, NOW_MS, event, mixed_batch, resolver_state
from tests.unit.test_resolver_service import service_on
from tests.unit.test_state_write_back import disk_service

Row = dict[str, Any]


def _latest(rows: list[Row], key: str) -> dict[str, Row]:
    latest: dict[str, Row] = {}
    for row in rows:
        if row[key] not in latest or row["version"] > latest[row[key]]["version"]:
            latest[row[key]] = row
    return latest


def views(server: FakeWarehouseServer) -> dict[str, Any]:
    """What `interactions` and `journeys` show, in the SQL views' terms."""
    overrides = {(row["kind"], row["id"]): row["current_id"]
                 for row in sorted(server.rows("overrides"), key=lambda row: row["version"])}  # the latest wins
    aliases = {row["alias_id"]: row["current_id"] for row in _latest(
        [r for r in server.rows("id_aliases") if r["kind"] == "customer"], "alias_id").values()}
    interactions = {
        row["event_id"]: (overrides.get(("customer", row["identity_key"]), row["origin_customer_id"]),
                          overrides.get(("session", row["origin_session_id"]), row["origin_session_id"]),
                          overrides.get(("journey", row["journey_id"]), row["journey_id"]))
        for row in server.rows("interaction_log")}
    sessions = {session_id: (aliases.get(row["customer_id"]) or row["customer_id"], row["started_ms"],
                             row["ended_ms"], row["events"], tuple(row["channels"]))
                for session_id, row in _latest(server.rows("session_log"), "session_id").items()
                if row["merged_into"] == ""}
    journeys = {journey_id: (aliases.get(row["customer_id"]) or row["customer_id"], row["events"], row["contacts"],
                             tuple(row["channels"]), row["resolved"], row["fcr"])
                for journey_id, row in _latest([r for r in server.rows("journey_log") if r["kind"] == "service"],
                                               "journey_id").items()
                if row["merged_into"] == ""}
    return {"interactions": interactions, "sessions": sessions, "journeys": journeys,
            "events": sorted(row["event_id"] for row in server.rows("interaction_log"))}


def batches() -> list[list[Interaction]]:
    """Three batches; the second merges customers the first made (a phone-only customer into an e-mail one, and
    the people both mixed batches hold), moves their sessions and service journeys."""
    phone_only = [event("phone-only", NOW_MS - 30 * HOUR_MS, [("phone", "+14155550001")], channel="call_center",
                        type="call_ended", issue_ref="CASE-X"),
                  event("email-only", NOW_MS - 29 * HOUR_MS, [("email", "x@example.com")])]
    linking = [event("linking", NOW_MS - 28 * HOUR_MS, [("phone", "+14155550001"), ("email", "x@example.com")],
                     channel="support", type="ticket_resolved", issue_ref="CASE-X")]
    first = mixed_batch(prefix="a") + phone_only
    second = linking + mixed_batch(seed=6, prefix="b", first_person=5, phone_rotation=9)  # a phone gets shared
    third = mixed_batch(seed=7, prefix="c", first_person=3, start_ms=NOW_MS - 20 * HOUR_MS)
    return [first, second, third]


def redeliveries(second: list[Interaction], third: list[Interaction]) -> dict[str, list[list[Interaction]]]:
    """What the restarted worker may read after the cut: Kafka gives the unacknowledged batch again, as new
    objects, in the same order, split where its next poll ends."""
    again = [replace(e) for e in second]
    half = len(again) // 2
    return {"whole": [again, third], "with_the_next": [again + third], "in_two_parts": [again[:half], again[half:]
                                                                                         + third]}


def cut_short(server: FakeWarehouseServer, batch: list[Interaction], table: str) -> None:
    """Writes `batch` until the insert into `table`, where the worker dies (every earlier table holds its rows)."""
    stopping = threading.Event()
    stopping.set()  # the first failure gives the batch up, as a process killed there would
    server.faults.fail(times=1, table=table)
    with pytest.raises(Stopping):
        service_on(server, stopping=stopping).process_and_write(batch)
    assert server.faults.fired == [("fail", table)]


def test_the_second_batch_writes_every_table() -> None:
    """So that a cut before each of them is a cut inside the batch."""
    server = FakeWarehouseServer()
    service = service_on(server)
    first, second, _ = batches()
    service.process_and_write(first)
    version = service.process_and_write(second).effects.version
    assert [t for t in WRITE_ORDER if any(row["version"] == version for row in server.rows(t))] == list(WRITE_ORDER)


def never_cut_run() -> tuple[FakeWarehouseServer, Any]:
    """The three batches written by a worker never cut: the warehouse and the service."""
    never_cut = FakeWarehouseServer()
    uncut = service_on(never_cut)
    for batch in batches():
        uncut.process_and_write(batch)
    return never_cut, uncut


@pytest.mark.parametrize("redelivery", ["whole", "with_the_next", "in_two_parts"])
@pytest.mark.parametrize("table", WRITE_ORDER[1:])
def test_a_batch_cut_short_before_any_table_ends_as_on_a_warehouse_never_cut(table: str, redelivery: str) -> None:
    first, second, third = batches()
    never_cut, uncut = never_cut_run()
    server = FakeWarehouseServer()
    service_on(server).process_and_write(first)
    cut_short(server, second, table)
    restarted = service_on(server)
    for batch in redeliveries(second, third)[redelivery]:
        restarted.process_and_write(batch)

    assert views(server) == views(never_cut)
    assert resolver_state(_restored(server)) == resolver_state(uncut.resolver)


def _restored(server: FakeWarehouseServer) -> Any:
    """A resolver rebuilt from what the warehouse holds now (a third worker's start)."""
    service = service_on(server)
    service.process_and_write([])
    return service.resolver


def test_the_case_the_views_differed_in_merges_a_set_written_before_the_cut() -> None:
    """The cut before the overrides, once found in the fault suite: the phone-only event's set moved to the
    e-mail customer in the cut batch; read back, the set looked resolved and its override was never written."""
    first, second, _ = batches()
    server = FakeWarehouseServer()
    service_on(server).process_and_write(first)
    cut_short(server, second, "overrides")
    service_on(server).process_and_write([replace(e) for e in second])
    customer = {event_id: found[0] for event_id, found in views(server)["interactions"].items()}
    assert customer["phone-only"] == customer["email-only"] == customer["linking"]


@pytest.mark.parametrize(("first_cut", "second_cut"), [
    ("identity_sets", "overrides"), ("overrides", "identity_sets"), ("alert_timers", "session_log"),
    ("session_log", "interaction_log"), ("interaction_log", "alert_timers")])
def test_a_batch_cut_short_twice_the_second_time_while_done_again_ends_as_never_cut(first_cut: str,
                                                                                    second_cut: str) -> None:
    """The worker doing a cut batch again dies too, at another table: the third restore leaves out both."""
    first, second, third = batches()
    never_cut, uncut = never_cut_run()
    server = FakeWarehouseServer()
    service_on(server).process_and_write(first)
    cut_short(server, second, first_cut)
    server.faults.fired.clear()
    cut_short(server, [replace(e) for e in second] + third, second_cut)
    service_on(server).process_and_write([replace(e) for e in second] + third)

    assert views(server) == views(never_cut)
    assert len(server.rows("abandoned_batches")) == 2
    assert resolver_state(_restored(server)) == resolver_state(uncut.resolver)


@pytest.mark.parametrize("table", ["identity_sets", "overrides", "alert_timers"])
def test_a_worker_resuming_from_its_disk_rebuilds_when_a_batch_was_cut_short_after_its_checkpoint(
        tmp_path: Path, table: str) -> None:
    """Its files end with the last batch held in full (the cut one's write-back never ran): resumed, it would not
    know the cut batch's rows are there, nor record them as abandoned, nor write their overrides again."""
    first, second, third = batches()
    never_cut, _ = never_cut_run()

    server = FakeWarehouseServer()
    stopping = threading.Event()
    service = disk_service(server, tmp_path, stopping=stopping)
    service.process_and_write(first)
    assert service.write_back is not None
    service.write_back.start = lambda checkpoint: None  # type: ignore[method-assign]  # killed before it ran
    stopping.set()  # the first failure gives the batch up, as a process killed there would
    server.faults.fail(times=1, table=table)
    with pytest.raises(Stopping):
        service.process_and_write(second)
    service.shutdown()

    restarted = disk_service(server, tmp_path)
    restarted.process_and_write([replace(e) for e in second] + third)
    restarted.shutdown()
    assert views(server) == views(never_cut)
    assert len(server.rows("abandoned_batches")) == 1


def test_a_batch_done_again_as_another_batch_overrides_what_the_cut_one_moved_and_it_did_not() -> None:
    """The split's owner does a batch cut short again as whatever its fronts asked since, which need not move what
    the cut one moved: here it only brings a new customer. The cut batch's override of the phone-only event's set
    (onto the e-mail customer) is then the latest: the batch after the restart overrides it back to the set's
    customer as restored, so the view shows what a warehouse that never held the cut batch shows."""
    first, second, _ = batches()
    server = FakeWarehouseServer()
    service_on(server).process_and_write(first)
    cut_short(server, second, "interaction_log")  # its overrides landed
    assert views(server)["interactions"]["phone-only"][0] == views(server)["interactions"]["email-only"][0]
    other = event("someone-else", NOW_MS - 27 * HOUR_MS, [("email", "else@example.com")])
    service_on(server).process_and_write([other])
    only_first = FakeWarehouseServer()
    service_on(only_first).process_and_write(first)
    service_on(only_first).process_and_write([replace(other)])
    shown = views(server)["interactions"]
    assert shown["phone-only"][0] != shown["email-only"][0]
    assert {e: shown[e][0] for e in ("phone-only", "email-only")} == \
        {e: views(only_first)["interactions"][e][0] for e in ("phone-only", "email-only")}

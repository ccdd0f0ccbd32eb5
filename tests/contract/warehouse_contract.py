"""The exactly-once contract of the resolver service, on every warehouse: the in-memory fake (tests/unit), chdb
(tests/component) and a ClickHouse 18.16 server (tests/integration), each binding `backend` (tests/contract/
backends.py) in a subclass of `WarehouseContract`.

Whatever fails (an insert, a reply lost after its rows were written, rows the warehouse rejects, a worker that
gives a batch up half-way), every event lands once: the rows in interaction_log are the unique events that were
not rejected, the rejected ones are returned for dead-lettering, and a resolver rebuilt from the warehouse knows
what one that never failed knows. The fake passing the same tests as the engines is what lets the service's unit
tests (tests/unit/test_resolver_service.py) run on it.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from cem.domain.customer_stage import CustomerPartition, PartitionStep
from cem.domain.front import Routed
from cem.domain.identity_owner import IdentityOwner, IdentityRequest
from cem.domain.journeys import REMOVED, journey_id_for
from cem.domain.model import Interaction
from cem.domain.resolver import Effects, Resolver
from cem.service.rejected_rows import WarehouseRefusesEverything
from cem.service.resolver_service import ResolverService
from cem.service.retry import Stopping
from cem.service.split_service import SplitWarehouse, owner_from
from cem.settings import Settings
from sinks.snapshot import load_snapshot
from sinks.warehouse import WrittenInFull
from sinks.writer import OWNER_TABLES, PARTITION_WRITE_ORDER, effect_columns, override_rows, partition_mark_columns
from tests.contract.backends import Backend
from tests.unit.factories import MINUTE_MS, NOW_MS, event, journey_state, mixed_batch, resolver_state, sid
from tests.unit.test_cut_batches import batches as cut_batches

MARKER = "POISON#"


def service_on(backend: Backend, stopping: threading.Event | None = None) -> ResolverService:
    return ResolverService(Settings(sink_retry_max_seconds=0.001, state_store="memory"), clock=lambda: NOW_MS / 1000,
                           open_warehouse=backend.open, stopping=stopping)


def landed(backend: Backend) -> Counter[str]:
    """How many interaction rows each event has in the warehouse."""
    return Counter(row.event_id for row in backend.open().recent_interactions(0))


def never_stopped(service: ResolverService, *batches: list[Interaction]) -> Resolver:
    resolver = Resolver(service.config)
    for batch in batches:
        resolver.process(batch, NOW_MS)
    return resolver


def gives_up_after(service: ResolverService, seconds: float) -> threading.Timer:
    """Stop the service's retries after `seconds`, so a batch that can never land ends the test (Stopping)."""
    timer = threading.Timer(seconds, service.stopping.set)
    timer.daemon = True
    timer.start()
    return timer


def journeys_by_events(resolver: Resolver | None) -> list[tuple[object, ...]]:
    """The journeys' events (not their ids: a journey a rejected event had started keeps its id)."""
    assert resolver is not None
    return sorted((issue_ref, events) for _, _, issue_ref, events, _ in journey_state(resolver))


def poisoned(events: list[Interaction], positions: set[int]) -> list[Interaction]:
    return [replace(e, text=f"{MARKER} {e.text}") if i in positions else e for i, e in enumerate(events)]


KIOSK = ("device_id", "kiosk-lobby-1")


def kiosk_batch() -> list[Interaction]:
    """60 visitors (an anonymous id each) on one kiosk: past 50 anonymous ids it is shared, and links nobody."""
    t0 = NOW_MS - 120 * MINUTE_MS
    return [event(f"v{i}", t0 + i * MINUTE_MS, [("anonymous_id", f"anon-{i}"), KIOSK], channel="store",
                  type="purchase") for i in range(60)]


class WarehouseContract:
    """The tests; a layer's subclass named Test... binds `backend` to its warehouse."""

    def test_a_batch_lands_once_and_its_replay_adds_nothing(self, backend: Backend) -> None:
        events = mixed_batch()
        service = service_on(backend)
        result = service.process_and_write(events)
        assert (result.written, result.rejected, result.effects.duplicates) == (60, [], 0)
        replay = service.process_and_write(events[:20])
        assert (replay.written, replay.effects.duplicates) == (0, 20)
        assert landed(backend) == Counter(e.event_id for e in events)

    @pytest.mark.parametrize("table", ["interaction_log", "identity_sets", "customer_log", "journey_log"])
    def test_a_lost_reply_is_not_written_twice(self, backend: Backend, table: str) -> None:
        """The insert landed and its reply was lost: the resumed write finds that table's rows, does not insert it
        again, and writes the tables after it."""
        events = mixed_batch()
        backend.faults.lose_reply(table=table)
        service = service_on(backend)
        result = service.process_and_write(events)
        assert backend.faults.fired == [("lose_reply", table)]
        assert landed(backend) == Counter(e.event_id for e in events)
        assert (result.written, result.effects.duplicates) == (60, 0)  # the batch's first processing, written once
        assert resolver_state(service.resolver) == resolver_state(never_stopped(service, events))

    @pytest.mark.parametrize(("times", "table"), [(1, "customer_log"), (2, "customer_merges"), (3, None)])
    def test_failed_inserts_are_retried_until_the_batch_lands_once(self, backend: Backend, times: int,
                                                                    table: str | None) -> None:
        first, second = mixed_batch(prefix="a"), mixed_batch(seed=6, prefix="b", first_person=5)
        service = service_on(backend)
        service.process_and_write(first)
        backend.faults.fail(times=times, table=table)
        result = service.process_and_write(second)
        assert len(backend.faults.fired) == times
        assert result.written == 60
        assert landed(backend) == Counter(e.event_id for e in first + second)
        expected = resolver_state(never_stopped(service, first, second))
        assert resolver_state(service.resolver) == expected
        restarted = service_on(backend)  # another worker, restored from what landed
        assert restarted.process_and_write(second).effects.duplicates == 60
        assert resolver_state(restarted.resolver) == expected

    @pytest.mark.parametrize("fault", ["fail identity_sets", "fail interaction_log", "lose interaction_log"])
    def test_a_batch_given_up_half_way_is_completed_by_the_next_owner(self, backend: Backend, fault: str) -> None:
        """The worker stops while its batch fails (nothing acknowledged): whoever restores from what landed and
        replays the batch writes each missing row once."""
        first, second = mixed_batch(prefix="a"), mixed_batch(seed=6, prefix="b", first_person=5)
        kind, table = fault.split()
        stopping = threading.Event()
        service = service_on(backend, stopping)
        service.process_and_write(first)
        stopping.set()
        if kind == "fail":
            backend.faults.fail(table=table)
        else:
            backend.faults.lose_reply(table=table)
        with pytest.raises(Stopping):
            service.process_and_write(second)
        half = landed(backend)
        assert half == Counter(e.event_id for e in first + (second if kind == "lose" else []))

        next_owner = service_on(backend)
        result = next_owner.process_and_write(second)
        assert result.written == (0 if kind == "lose" else 60)
        assert landed(backend) == Counter(e.event_id for e in first + second)
        assert resolver_state(next_owner.resolver) == resolver_state(never_stopped(service, first, second))

    @pytest.mark.parametrize("positions", [{0}, {59}, {3, 17, 18, 41}, set(range(20, 27))])
    def test_rejected_rows_are_returned_and_every_other_row_lands_once(self, backend: Backend,
                                                                       positions: set[int]) -> None:
        backend.reject_text(MARKER)
        events = poisoned(mixed_batch(), positions)
        rejected_ids = sorted(events[i].event_id for i in positions)
        service = service_on(backend)
        result = service.process_and_write(events)
        assert sorted(e.event_id for e, _ in result.rejected) == rejected_ids
        assert all("395" in detail for _, detail in result.rejected)
        assert result.written == 60 - len(positions)
        accepted = [e for i, e in enumerate(events) if i not in positions]
        assert landed(backend) == Counter(e.event_id for e in accepted)
        # Rebuilt from the warehouse, the resolver's journeys hold no rejected event, as if they had never come (their
        # customers may differ: a rejected event's identity facts stay, and it may have merged two people).
        assert journeys_by_events(service.resolver) == journeys_by_events(never_stopped(service, accepted))
        # A re-send of a rejected event is processed (and rejected) again; a re-send of a written one is a duplicate.
        again = service.process_and_write([events[min(positions)], accepted[0]])
        assert [e.event_id for e, _ in again.rejected] == [rejected_ids[0]]
        assert again.effects.duplicates == 1

    def test_a_journey_only_rejected_events_had_is_removed_and_comes_back_with_them(self, backend: Backend) -> None:
        backend.reject_text(MARKER)
        events = mixed_batch()
        person_4 = [i for i, e in enumerate(events) if e.identifiers[0] == ("email", "p4@example.com")]
        service = service_on(backend)
        result = service.process_and_write(poisoned(events, set(person_4)))
        assert len(result.rejected) == len(person_4)
        journeys = {row.journey_id: row for row in backend.open().service_journeys()}
        gone = {r.journey_id for r in result.effects.interactions if r.interaction.issue_ref == "CASE-4"}
        assert gone and all(journeys[j].merged_into == REMOVED for j in gone)
        assert all(row.merged_into != REMOVED for j, row in journeys.items() if j not in gone)

        fixed = [replace(events[i], fingerprint="fixed") for i in person_4]
        assert service.process_and_write(fixed).rejected == []
        journeys = {row.journey_id: row for row in backend.open().service_journeys()}
        assert all(journeys[j].merged_into == "" for j in gone)
        assert landed(backend) == Counter(e.event_id for e in events)

    def test_a_table_that_rejects_every_row_is_an_outage_not_dead_letters(self, backend: Backend) -> None:
        backend.reject_text(MARKER)
        stopping = threading.Event()
        stopping.set()  # the first failure gives the batch up, so the test sees why it failed
        service = service_on(backend, stopping)
        with pytest.raises(Stopping) as stopped:
            service.process_and_write(poisoned(mixed_batch(), set(range(60))))
        assert isinstance(stopped.value.__cause__, WarehouseRefusesEverything)
        assert landed(backend) == Counter()

    @pytest.mark.parametrize(("times", "table"), [(1, "identity_sets"), (1, "interaction_log"), (2, "identity_sets")])
    def test_a_batch_retried_after_its_aliases_landed_restores_after_a_restart(self, backend: Backend, times: int,
                                                                              table: str) -> None:
        """The first attempt wrote session aliases and failed before the batch's interaction rows; the retry writes an
        alias of a session to itself (the restore had keyed earlier rows under a session the retry created again).
        A later restore reads that alias as "current" and rebuilds what a resolver that never failed knows."""
        first, second = mixed_batch(prefix="a"), mixed_batch(seed=6, prefix="b", first_person=5)
        service = service_on(backend)
        service.process_and_write(first)
        backend.faults.fail(times=times, table=table)
        gives_up_after(service, backend.patience)
        assert service.process_and_write(second).written == 60
        assert landed(backend) == Counter(e.event_id for e in first + second)
        restarted = service_on(backend)
        gives_up_after(restarted, backend.patience)
        assert restarted.process_and_write(second).effects.duplicates == 60
        assert resolver_state(restarted.resolver) == resolver_state(never_stopped(service, first, second))

    def test_a_shared_identifier_is_read_back_as_marked_and_not_recorded_again(self, backend: Backend) -> None:
        service = service_on(backend)
        marked = service.process_and_write(kiosk_batch()).effects.shared
        assert [(s.id_type, s.value, s.reason) for s in marked] == [(*KIOSK, "limit:anonymous_id")]
        # The same identifier found again later (a later version) does not move the marking: the earliest stays.
        again = replace(marked[0], event_id="later", occurred_ms=NOW_MS, distinct_count=99)
        backend.open().insert("shared_identifiers", effect_columns(
            Effects(NOW_MS * 1000 + 10**9, shared=[again]), NOW_MS, 0)["shared_identifiers"])
        assert backend.open().shared_identifiers() == marked
        restarted = service_on(backend)
        assert restarted.process_and_write([]).effects.shared == []  # restored as shared: nothing to record
        assert restarted.resolver is not None and set(restarted.resolver.graph.shared.marked) == {KIOSK}
        assert resolver_state(restarted.resolver) == resolver_state(never_stopped(service, kiosk_batch()))

    def test_customer_aliases_are_read_back_at_their_latest_version(self, backend: Backend) -> None:
        """Every merge's alias as the resolver wrote it; a later row for an alias (the customer live again, as a
        recompute writes it) supersedes the earlier one."""
        merged = service_on(backend).process_and_write(mixed_batch()).effects.customer_aliases
        assert len(merged) > 2 and all(old != current for old, current in merged.items())
        assert backend.open().customer_aliases() == merged
        live_again = sorted(merged)[0]
        backend.open().insert("id_aliases", effect_columns(
            Effects(NOW_MS * 1000 + 10**9, customer_aliases={live_again: live_again}), NOW_MS, 0)["id_aliases"])
        assert backend.open().customer_aliases() == {**merged, live_again: live_again}

    def test_the_ids_a_partition_batch_cut_short_names_are_found_until_its_version_is_marked(
            self, backend: Backend) -> None:
        """A customer partitions' batch written in full ends with its mark; one cut short after two inserts
        leaves rows at a version with no mark: the session and journey ids they name are found, from the window's
        start on."""
        sink = SplitWarehouse(Settings(sink_retry_max_seconds=0.001, state_store="memory"), "customers",
                              clock=lambda: NOW_MS / 1000, open_warehouse=backend.open)
        part = CustomerPartition(0, 2, 30 * MINUTE_MS)

        def folded(event_id: str, minutes: int) -> Effects:
            effects = part.start_batch(NOW_MS)
            part.fold(Routed(event(event_id, NOW_MS + minutes * MINUTE_MS, [("email", "p@x.io")], issue_ref="7"),
                             "c_p"), effects, PartitionStep())
            return effects

        sink.write(folded("p1", 0))
        assert backend.open().unmarked_partition_ids(0) == (set(), set())
        cut = folded("p2", 90)
        tables = effect_columns(cut, NOW_MS, 0)
        for table in [table for table in PARTITION_WRITE_ORDER if table in tables][:2]:
            backend.open().insert(table, tables[table])
        reader = backend.open()
        assert reader.unmarked_partition_ids(0) == ({sid("p2")}, {journey_id_for("7", "p1")})
        assert reader.unmarked_partition_ids(cut.version + 1) == (set(), set())
        reader.insert("partition_batches", partition_mark_columns(cut, NOW_MS))
        assert reader.unmarked_partition_ids(0) == (set(), set())

    def test_a_batch_cut_short_is_read_back_without_its_rows_and_recorded_as_abandoned(self, backend: Backend
                                                                                       ) -> None:
        """Cut after its identity rows and overrides, before its alert rows: the reads of a restore leave it out
        (the sets it first saw, the override it wrote), find it above the last mark, and the batch done again is
        versioned above it; then the next restore reads the redone batch and leaves the abandoned rows out."""
        first, second, _ = cut_batches()
        service_on(backend).process_and_write(first)
        marked = backend.open().last_batch_version()
        stopping = threading.Event()
        stopping.set()
        backend.faults.fail(table="alert_timers")
        with pytest.raises(Stopping):
            service_on(backend, stopping).process_and_write(second)
        reader = backend.open()
        cut_version = reader.newest_version_above(marked)
        assert cut_version > marked
        assert reader.newest_version_above(cut_version) == 0
        every_set = {row.identity_key for row in reader.identity_sets()}
        snapshot = load_snapshot(reader, 0, written_in_full=True)
        assert snapshot.cut == (marked, cut_version)
        assert set(snapshot.identity_sets) == {row.identity_key for row in reader.identity_sets(
            WrittenInFull(marked))} < every_set
        assert snapshot.stale_overrides and snapshot.stale_overrides <= every_set

        redone = service_on(backend)
        assert redone.process_and_write([replace(e) for e in second]).effects.version > cut_version
        assert reader.abandoned_batches() == [(marked, cut_version)]
        again = load_snapshot(backend.open(), 0, written_in_full=True)
        assert again.cut is None and set(again.identity_sets) == every_set
        assert again.stale_overrides == frozenset()  # every stale one was written again by the redone batch
        assert resolver_state(_rebuilt(backend)) == resolver_state(
            never_stopped(redone, first, second))

    def test_an_owner_batch_cut_short_is_left_out_by_every_stage_and_done_again_by_the_owner(
            self, backend: Backend) -> None:
        """The split's graph owner killed after its identity sets landed, before its overrides and mark: a customer
        partition restoring reads the graph without the cut rows and records nothing; the owner restoring records
        them as abandoned and goes above them, and the batch done again writes what a never-cut owner wrote (the
        overrides of the merged sets); the restore after that reads it and finds nothing cut."""
        first, second, _ = cut_batches()
        never_cut = IdentityOwner(service_on(backend).config)
        uncut = [never_cut.process(map(IdentityRequest.of, batch), NOW_MS) for batch in (first, second)]
        owner = owner_from(split_stage(backend, "owner").restored())
        split_stage(backend, "owner").write(owner.process(map(IdentityRequest.of, first), NOW_MS))
        marked = backend.open().last_batch_version()
        stopping = threading.Event()
        stopping.set()
        backend.faults.fail(table="overrides")
        with pytest.raises(Stopping):
            split_stage(backend, "owner", stopping).write(owner.process(map(IdentityRequest.of, second), NOW_MS))
        reader = backend.open()
        cut_version = reader.newest_version_above(marked, OWNER_TABLES)
        assert cut_version > marked and reader.last_batch_version() == marked
        sets_of_first = set(reader.identity_sets(WrittenInFull(marked)))

        partition = split_stage(backend, "customers").restored()
        assert reader.abandoned_batches() == []
        assert partition.last_version == marked
        assert set(reader.identity_sets(WrittenInFull(marked))) == sets_of_first
        assert set(partition.resolver.graph.set_key) == {row.identifiers for row in sets_of_first}

        restored = split_stage(backend, "owner").restored()
        assert reader.abandoned_batches() == [(marked, cut_version)]
        assert restored.owner_version == cut_version
        assert set(restored.resolver.graph.set_key) == {row.identifiers for row in sets_of_first}
        redone = owner_from(restored).process(map(IdentityRequest.of, second), NOW_MS)
        assert redone.version > cut_version
        assert override_rows(redone) == override_rows(uncut[1]) and override_rows(redone)
        split_stage(backend, "owner").write(redone)
        after = split_stage(backend, "owner").restored()
        assert reader.abandoned_batches() == [(marked, cut_version)]
        assert customers_by_identifier(after.resolver.graph) == customers_by_identifier(never_cut.graph)

    def test_a_restart_after_late_events_restores_what_never_stopped(self, backend: Backend) -> None:
        events = mixed_batch(shuffled=True)
        service_on(backend).process_and_write(events)
        restarted = service_on(backend)
        gives_up_after(restarted, backend.patience)
        assert restarted.process_and_write(events).effects.duplicates == 60
        assert resolver_state(restarted.resolver) == resolver_state(never_stopped(restarted, events))

    @pytest.mark.parametrize("sightings", [
        [("m-late", 0), ("a-early", 0)],  # the smaller id at the same millisecond comes second
        [("z", 0), ("m", 0), ("a", 0)],  # three rows tied on the millisecond, each a smaller id
        [("b", 1), ("z", 0), ("a", 0)],  # an earlier millisecond first, then a tie within it
        [("aa", 0), ("a", 0)],  # a prefix is smaller
        [("e-9", 0), ("e-10", 0)],  # ids compare as text, not as numbers
    ])
    def test_a_set_seen_again_at_the_same_millisecond_restores_the_least_event_id(
            self, backend: Backend, sightings: list[tuple[str, int]]) -> None:
        """The event key is (time, event id): a later batch that sees the set at the same millisecond with a smaller
        event id moves its first key, and a restart restores that key, not the first row's."""
        at = NOW_MS - 60 * MINUTE_MS
        batches = [[event(event_id, at + offset * MINUTE_MS, [("email", "tie@example.org")])]
                   for event_id, offset in sightings]
        service = service_on(backend)
        for batch in batches:
            service.process_and_write(batch)
        restarted = service_on(backend)
        gives_up_after(restarted, backend.patience)
        restarted.process_and_write([])
        assert restarted.resolver is not None
        least = min((e.occurred_ms, e.event_id) for batch in batches for e in batch)
        assert restarted.resolver.graph.set_key[(("email", "tie@example.org"),)] == least
        assert resolver_state(restarted.resolver) == resolver_state(never_stopped(restarted, *batches))


def split_stage(backend: Backend, stage: str, stopping: threading.Event | None = None) -> SplitWarehouse:
    return SplitWarehouse(Settings(sink_retry_max_seconds=0.001, state_store="memory"), stage,
                          clock=lambda: NOW_MS / 1000, open_warehouse=backend.open, stopping=stopping)


def customers_by_identifier(graph: Any) -> dict[Any, str]:
    return {identifier: graph.customer_of(identifier) for identifier in graph.owner}


def _rebuilt(backend: Backend) -> Resolver | None:
    """The resolver a new worker rebuilds from the warehouse (it restores on its first batch)."""
    service = service_on(backend)
    service.process_and_write([])
    return service.resolver

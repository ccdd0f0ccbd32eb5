"""The resolver on the disk-backed state store gives what the resolver in memory gives, batch by batch: with
caches so small that almost every lookup goes to disk, and across restarts that resume from the files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cem.domain.identity_replica import IdentityReplica, identity_changes
from cem.domain.model import Interaction
from cem.domain.resolver import DAY_MS, Resolver, ResolverConfig
from cem.state_store import Checkpoint, StateStore
from tests.unit.factories import event
from tests.unit.strategies import POOL, identifier_sets

MINUTE_MS = 60_000
T0 = 1_700_000_000_000
CONFIG = ResolverConfig(dedup_window_ms=3 * MINUTE_MS, session_gap_ms=10 * MINUTE_MS,
                        type_limits={"customer_ref": 1, "email": 2, "phone": 2, "device_id": 2, "anonymous_id": 2})
CHANNELS = [("web", "page_view", None), ("mobile", "screen_view", None), ("chat", "chat_message", "CASE-1"),
            ("support", "ticket_resolved", "CASE-1"), ("call_center", "call_ended", "CASE-2")]

Batch = tuple[int, list[Interaction]]  # (now_ms, events)


@st.composite
def traffic(draw: st.DrawFn) -> list[Batch]:
    """Batches of events in any event-time order, with replays of earlier event ids, and a processing clock that
    moves on by minutes (so seen ids expire between batches)."""
    batches: list[Batch] = []
    now_ms, sent = T0, []
    for b in range(draw(st.integers(1, 8))):
        now_ms += draw(st.integers(0, 3)) * MINUTE_MS + draw(st.integers(0, 59_999))
        events = []
        for i in range(draw(st.integers(0, 6))):
            if sent and draw(st.booleans()) and draw(st.booleans()):
                events.append(draw(st.sampled_from(sent)))  # a replay (natural duplicate)
                continue
            channel, kind, issue = draw(st.sampled_from(CHANNELS))
            occurred = T0 + draw(st.integers(0, 120)) * MINUTE_MS
            made = event(f"b{b}e{i}", occurred, draw(identifier_sets(list(POOL))), channel, kind, issue)
            sent.append(made)
            events.append(made)
        batches.append((now_ms, events))
    return batches


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=traffic(), restart_after=st.integers(0, 8))
def test_disk_state_with_tiny_caches_gives_the_in_memory_answers(tmp_path_factory: pytest.TempPathFactory,
                                                                   batches: list[Batch], restart_after: int) -> None:
    assert_disk_state_gives_the_in_memory_answers(tmp_path_factory.mktemp("state"), batches, restart_after)


def test_a_late_event_joining_customers_read_back_from_disk_lists_their_members_as_in_memory(tmp_path: Path) -> None:
    """Found by Hypothesis: a set read back from disk iterates in another order than the same set kept in memory;
    the late event b3e0 joins the customers of e1 and p1, and the survivor's members must come in one order."""
    late = T0 + MINUTE_MS
    batches: list[Batch] = [
        (T0, [event("b0e0", late, [("email", "e1")]), event("b0e0", late, [("email", "e1")]),
              event("b0e2", late, [("customer_ref", "r1")]),
              event("b0e3", T0, [("customer_ref", "r1"), ("phone", "p0")]),
              event("b0e4", T0, [("email", "e0"), ("phone", "p2")]), event("b0e5", late, [("phone", "p1")])]),
        (T0, [event("b1e0", T0, [("customer_ref", "r0")]),
              event("b1e1", T0, [("customer_ref", "r1"), ("email", "e0")]),
              event("b1e2", late, [("customer_ref", "r1"), ("phone", "p1")])]),
        (T0, []),
        (T0, [event("b3e0", T0, [("email", "e1"), ("phone", "p1")])]),
    ]
    assert_disk_state_gives_the_in_memory_answers(tmp_path, batches, restart_after=0)


def assert_disk_state_gives_the_in_memory_answers(path: Path, batches: list[Batch], restart_after: int) -> None:
    in_memory = Resolver(CONFIG)
    store = StateStore(path, 32, cache_entries=2)
    on_disk = Resolver(CONFIG, store.map)
    try:
        for index, (now_ms, events) in enumerate(batches):
            expected = in_memory.process(events, now_ms)
            got = on_disk.process(events, now_ms)
            assert got == expected  # every row, alias and count of the batch
            store.flush(Checkpoint(got.version, "w"))
            if index == restart_after:  # the process ends here; the next one resumes from the files
                store.close()
                store = StateStore(path, 32, cache_entries=2)
                assert store.checkpoint() == Checkpoint(got.version, "w")
                on_disk = Resolver(CONFIG, store.map)
                on_disk.version = got.version
        assert sorted(on_disk.seen) == sorted(in_memory.seen)
        assert sorted(on_disk.graph.set_key) == sorted(in_memory.graph.set_key)
    finally:
        store.close()


def test_a_flush_without_checkpoint_removes_the_one_on_disk(tmp_path: Path) -> None:
    store = StateStore(tmp_path, 32)
    resolver = Resolver(CONFIG, store.map)
    effects = resolver.process([event("e1", T0, [("email", "a@x")])], T0)
    store.flush(Checkpoint(effects.version, "w"))
    resolver.process([event("e2", T0, [("email", "b@x")])], T0 + 1)
    store.flush(None)  # e.g. after an erasure: no batch ends with this state
    store.close()
    reopened = StateStore(tmp_path, 32)
    assert reopened.checkpoint() is None
    assert sorted(Resolver(CONFIG, reopened.map).seen) == ["e1", "e2"]  # the changes themselves were written
    reopened.close()


def test_changes_not_flushed_are_not_on_disk_and_wipe_empties_the_maps(tmp_path: Path) -> None:
    store = StateStore(tmp_path, 32)
    resolver = Resolver(CONFIG, store.map)
    first = resolver.process([event("e1", T0, [("email", "a@x")])], T0)
    store.flush(Checkpoint(first.version, "w"))
    resolver.process([event("e2", T0 + DAY_MS, [("email", "a@x")])], T0 + 1)  # a crash before its flush
    store.close()
    reopened = StateStore(tmp_path, 32)
    resumed = Resolver(CONFIG, reopened.map)
    assert (reopened.checkpoint(), sorted(resumed.seen)) == (Checkpoint(first.version, "w"), ["e1"])
    assert resumed.graph.customers[first.interactions[0].customer_id].latest == (T0, "e1")
    reopened.wipe()
    assert (reopened.checkpoint(), list(resumed.seen), list(resumed.graph.customers)) == (None, [], [])
    reopened.close()


KEYS = [f"c{i}" for i in range(6)]
Op = tuple[str, str, int]
map_ops = st.lists(st.tuples(st.sampled_from(["set", "pop", "get", "contains", "setdefault", "prefetch", "flush",
                                              "reopen"]),
                             st.sampled_from(KEYS), st.integers(0, 2)), max_size=60)


@pytest.mark.parametrize("name", ["origins", "parent"])  # values never changed in place; keys are strings
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(ops=map_ops)
def test_one_map_behaves_as_a_dict_through_evictions_rewrites_and_restarts(tmp_path_factory: pytest.TempPathFactory,
                                                                            name: str, ops: list[Op]) -> None:
    """Keys remembered as absent, values set back to what they were (not written again), keys removed and set
    again, keys read ahead, all across flushes that shrink the cache to one entry and restarts that keep only the
    files."""
    path = tmp_path_factory.mktemp("map")
    model: dict[str, int] = {}
    store = StateStore(path, 32, cache_entries=1)
    spill = store.map(name)
    try:
        for op, key, value in ops:
            if op == "set":
                spill[key] = model[key] = value
            elif op == "pop":
                assert spill.pop(key, None) == model.pop(key, None)
            elif op == "get":
                assert spill.get(key) == model.get(key)
            elif op == "contains":
                assert (key in spill) == (key in model)
            elif op == "setdefault":
                assert spill.setdefault(key, value) == model.setdefault(key, value)
            elif op == "prefetch":  # a batch's keys read ahead: what the cache holds stays, the rest is read
                spill.prefetch(KEYS[value:value + 3])
            elif op == "flush":
                store.flush(Checkpoint(1, "w"))
            else:
                store.flush(Checkpoint(1, "w"))
                store.close()
                store = StateStore(path, 32, cache_entries=1)
                spill = store.map(name)
        store.flush(Checkpoint(1, "w"))
        store.close()
        store = StateStore(path, 32, cache_entries=1)
        assert {key: store.map(name).get(key) for key in KEYS if key in store.map(name)} == model
    finally:
        store.close()


def test_a_reopened_store_runs_with_the_configured_cache_not_the_options_stored_in_its_files(tmp_path: Path) -> None:
    """rocksdict reads an existing database's stored options back: the store passes its own for the column family,
    so a restart keeps the configured block cache and the partitioned index (one lookup stays a few µs)."""
    expected = str(int(128 * 0.25 * 1024 * 1024) // 2)  # CEM_STATE_MEMORY_MB=128: half of RocksDB's quarter
    first = StateStore(tmp_path, 128)
    first.map("owner")[("email", "a@x")] = "c_1"
    first.flush(Checkpoint(1, "w"))
    assert first.db.property_value("rocksdb.block-cache-capacity") == expected
    first.close()
    again = StateStore(tmp_path, 128)
    try:
        assert again.db.property_value("rocksdb.block-cache-capacity") == expected
        options = max(tmp_path.glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1])).read_text()
        assert "index_type=kTwoLevelIndexSearch" in options and "partition_filters=true" in options
        assert again.map("owner")[("email", "a@x")] == "c_1"
    finally:
        again.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=traffic())
def test_an_identity_replica_on_disk_with_tiny_caches_answers_as_one_in_memory(
        tmp_path_factory: pytest.TempPathFactory, batches: list[Batch]) -> None:
    """The worker's replica (streams/identity_feed.py) keeps its maps in a store of its own when the state is on
    disk: through evictions and write-backs it must answer every set and customer as the dicts do."""
    store = StateStore(tmp_path_factory.mktemp("replica"), 32, cache_entries=2)
    resolver, in_memory, on_disk = Resolver(CONFIG), IdentityReplica(), IdentityReplica(store.map)
    try:
        for now_ms, events in batches:
            changes = identity_changes(resolver.process(events, now_ms))
            assert in_memory.apply(changes) == on_disk.apply(changes)
            store.flush(Checkpoint(changes.version, "identity-replica"))
            late = (2**62, "")
            for identifiers in in_memory.sets:
                assert on_disk.resolve_locally(identifiers, late) == in_memory.resolve_locally(identifiers, late)
            for customer in {answer[0] for answer in in_memory.sets.values()}:
                assert on_disk.current(customer) == in_memory.current(customer)
        assert sorted(on_disk.sets.items()) == sorted(in_memory.sets.items())
        assert sorted(on_disk.links.items()) == sorted(in_memory.links.items())
    finally:
        store.close()

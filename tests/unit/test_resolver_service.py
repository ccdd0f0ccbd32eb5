"""The resolver service on the in-memory warehouse (sinks.fake), through its public methods: retries, the
connection and state it drops after a failure, rejected rows and the journeys rewritten without them, giving a
batch up when the worker stops or a rebalance waits, and its counters. The same exactly-once scenarios run on chdb
and a ClickHouse server in tests/contract; the fake passing them is what makes these tests worth having."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from cem import metrics
from cem.domain.identity_outcome import OWNER_REASONS
from cem.domain.journeys import REMOVED
from cem.domain.resolver import AliasCycle, RecentRow, Resolver, ResolverConfig, Snapshot
from cem.service.rejected_rows import REJECTED_ALL_AFTER, WarehouseRefusesEverything, isolate_rejected_rows
from cem.service.resolver_service import ResolverService
from cem.service.retry import RebalanceWatch, Retry, Stopping
from cem.settings import Settings
from sinks.fake import FakeServerError, FakeWarehouseServer
from tests.unit.factories import NOW_MS, mixed_batch, resolver_state

MARKER = "POISON#"


def service_on(server: FakeWarehouseServer, **kwargs: Any) -> ResolverService:
    return ResolverService(Settings(sink_retry_max_seconds=0.001, state_store="memory"), clock=lambda: NOW_MS / 1000,
                           open_warehouse=server.connect, **kwargs)


def landed(server: FakeWarehouseServer) -> Counter[str]:
    return Counter(row["event_id"] for row in server.rows("interaction_log"))


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


# ---- retries ----------------------------------------------------------------------------------------------
def written_once(batches: list[list[Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows after these batches on a warehouse that never failed."""
    clean = FakeWarehouseServer()
    service = service_on(clean)
    for batch in batches:
        service.process_and_write(batch)
    return clean.tables


@pytest.mark.parametrize("table", ["customer_log", "id_aliases", "journey_log", "interaction_log"])
@pytest.mark.parametrize("fault", ["fail", "lose_reply"])
def test_a_failed_insert_drops_its_connection_and_the_write_resumes_where_it_stopped(fault: str, table: str) -> None:
    """The state already reflects the batch, so it is kept; the failed table is looked up (a lost reply means
    its rows are there), and every table ends up with its rows once, as on a warehouse that never failed."""
    server = FakeWarehouseServer()
    service = service_on(server)
    first, second = mixed_batch(prefix="a"), mixed_batch(seed=6, prefix="b", first_person=5)
    service.process_and_write(first)
    first_connection, first_resolver = service.warehouse, service.resolver
    failures = sample("cem_sink_failures_total")
    getattr(server.faults, fault)(times=2, table=table)
    result = service.process_and_write(second)
    attempts = 2 if fault == "fail" else 1  # after a lost reply the rows are found there: no insert to fail again
    assert server.faults.fired == [(fault, table)] * attempts
    assert result.written == 60
    assert sample("cem_sink_failures_total") - failures == attempts
    assert sample("cem_sink_up") == 1.0
    assert first_connection is not None and first_connection.closed  # type: ignore[attr-defined]
    assert server.connections == 1 + attempts and service.resolver is first_resolver
    assert server.tables == written_once([first, second])


def test_a_write_given_up_is_not_resumed_for_another_batch_the_state_is_rebuilt() -> None:
    server = FakeWarehouseServer()
    stopping = threading.Event()
    service = service_on(server, stopping=stopping)
    first, second = mixed_batch(prefix="a"), mixed_batch(seed=6, prefix="b", first_person=5)
    service.process_and_write(first)
    server.faults.fail(times=1000, table="interaction_log")
    threading.Timer(0.05, stopping.set).start()
    with pytest.raises(Stopping):
        service.process_and_write(second)
    given_up = service.resolver
    server.faults.pending.clear()
    stopping.clear()
    redelivered = list(second)  # Kafka delivers the unacknowledged batch again, as new objects
    assert service.process_and_write(redelivered).written == 60
    assert service.resolver is not given_up  # rebuilt: the old state held a batch the warehouse did not
    assert landed(server) == Counter(e.event_id for e in first + second)
    never_failed = service_on(FakeWarehouseServer())
    for batch in (first, second):
        never_failed.process_and_write(batch)
    assert resolver_state(service.resolver) == resolver_state(never_failed.resolver)


def test_rows_written_are_counted_per_table() -> None:
    server = FakeWarehouseServer()
    before = {table: sample("cem_rows_written_total", table=table) for table in server.tables}
    service_on(server).process_and_write(mixed_batch())
    written = {table: sample("cem_rows_written_total", table=table) - before[table] for table in server.tables}
    assert written == {table: float(len(rows)) for table, rows in server.tables.items()}
    assert written["interaction_log"] == 60.0


def test_a_fault_of_the_resolver_is_logged_as_one_and_the_batch_lands_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    real = Resolver.process
    calls: list[int] = []

    def fails_once(self: Resolver, batch: Any, now_ms: int) -> Any:
        calls.append(now_ms)
        if len(calls) == 1:
            raise KeyError("half-updated state")
        return real(self, batch, now_ms)

    monkeypatch.setattr(Resolver, "process", fails_once)
    server = FakeWarehouseServer()
    events = mixed_batch()
    result = service_on(server).process_and_write(events)
    assert "resolver failed, retrying: KeyError: 'half-updated state'" in caplog.text
    assert (len(calls), result.written) == (2, 60)
    assert landed(server) == Counter(e.event_id for e in events)


def test_a_stopping_worker_gives_the_batch_up_and_acknowledges_nothing() -> None:
    server = FakeWarehouseServer()
    server.faults.fail(times=100)
    stopping = threading.Event()
    service = service_on(server, stopping=stopping)

    def stop_once_retried() -> None:  # after a retry failed too, however long the first attempt took
        while len(server.faults.fired) < 2:
            time.sleep(0.001)
        stopping.set()

    threading.Thread(target=stop_once_retried, daemon=True).start()
    with pytest.raises(Stopping) as stopped:
        service.process_and_write(mixed_batch())
    assert isinstance(stopped.value.__cause__, ConnectionResetError)
    assert landed(server) == Counter()
    assert len(server.faults.fired) < 100  # it gave up at the stop, not when the faults ran out


def test_a_rebalance_waiting_on_a_failing_batch_calls_on_stuck() -> None:
    server = FakeWarehouseServer()
    server.faults.fail(times=1000)
    stopping = threading.Event()
    stuck: list[int] = []

    def on_stuck() -> None:
        stuck.append(len(server.faults.fired))
        stopping.set()  # in a worker: os._exit(75)

    service = service_on(server, stopping=stopping, rebalance_pending=lambda: True, on_stuck=on_stuck)
    service.retry.watch.give_up_seconds = 0.01
    with pytest.raises(Stopping):
        service.process_and_write(mixed_batch())
    assert len(stuck) == 1 and stuck[0] >= 2


def test_no_rebalance_waiting_never_calls_on_stuck() -> None:
    stuck: list[str] = []
    clock = iter([0.0, 100.0, 200.0])
    watch = RebalanceWatch(lambda: False, lambda: stuck.append("stuck"), 20.0, lambda: next(clock))
    for _ in range(3):
        watch.failed()
    assert stuck == []


@pytest.mark.parametrize(("times", "expected"), [([0.0, 10.0, 20.0], []), ([0.0, 10.0, 20.5], [20.5]),
                                                 ([0.0, 25.0], [25.0])])
def test_the_rebalance_watch_gives_up_past_its_limit(times: list[float], expected: list[float]) -> None:
    clock = iter(times)
    now: list[float] = []
    stuck: list[float] = []

    def monotonic() -> float:
        now.append(next(clock))
        return now[-1]

    watch = RebalanceWatch(lambda: True, lambda: stuck.append(now[-1]), 20.0, monotonic)
    for _ in times:
        watch.failed()
    assert stuck == expected


def test_a_success_resets_the_rebalance_watch() -> None:
    clock = iter([0.0, 30.0])
    stuck: list[str] = []
    watch = RebalanceWatch(lambda: True, lambda: stuck.append("stuck"), 20.0, lambda: next(clock))
    watch.failed()
    watch.succeeded()
    watch.failed()
    assert stuck == []


class CountingEvent(threading.Event):
    """A stop event whose waits return at once and are recorded."""

    def __init__(self, stop_after: int) -> None:
        super().__init__()
        self.waits: list[float] = []
        self.stop_after = stop_after

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return len(self.waits) >= self.stop_after


@pytest.mark.parametrize(("max_delay", "expected"), [(10.0, [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]),
                                                     (0.5, [0.2, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]),
                                                     (0.05, [0.05] * 8)])
def test_retry_waits_double_up_to_the_ceiling_then_stopping_gives_up(max_delay: float,
                                                                      expected: list[float]) -> None:
    stopping = CountingEvent(stop_after=8)
    failures: list[Exception] = []

    def attempt() -> None:
        raise TimeoutError("still down")

    with pytest.raises(Stopping):
        Retry(stopping, max_delay, failures.append).run(attempt)
    assert stopping.waits == pytest.approx(expected)
    assert len(failures) == 8 and all(isinstance(f, TimeoutError) for f in failures)


# ---- rejected rows --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rejected_issue", ["CASE-2", "CASE-7"])
def test_rejected_rows_are_isolated_and_their_journeys_written_again_without_them(rejected_issue: str) -> None:
    """Every event of one journey and a few others are rejected: the latest journey_log row of each journey
    counts the accepted events only (as the journeys view would), and the journey only they had is removed."""
    server = FakeWarehouseServer()
    server.refuse_rows(lambda row: MARKER in row["text"])
    events = mixed_batch()
    rejected = {i for i, e in enumerate(events) if e.issue_ref == rejected_issue or i % 13 == 5}
    batch = [replace(e, text=f"{MARKER} {e.text}") if i in rejected else e for i, e in enumerate(events)]
    service = service_on(server)
    result = service.process_and_write(batch)
    assert sorted(e.event_id for e, _ in result.rejected) == sorted(events[i].event_id for i in rejected)

    latest: dict[str, dict[str, Any]] = {}
    for row in server.rows("journey_log"):
        known = latest.get(row["journey_id"])
        if row["kind"] == "service" and (known is None or row["version"] > known["version"]):
            latest[row["journey_id"]] = row
    live = {row["issue_ref"]: row["contacts"] for row in latest.values() if row["merged_into"] != REMOVED}
    removed = {row["issue_ref"] for row in latest.values() if row["merged_into"] == REMOVED}
    accepted_only = Resolver(service.config)
    accepted_only.process([e for i, e in enumerate(events) if i not in rejected], NOW_MS)
    expected = {j.issue_ref: j.metrics(service.config.fcr_window_ms).contacts
                for journeys in accepted_only.journeys.by_customer.values() for j in journeys.values()}
    assert live == expected and removed == {rejected_issue}


@pytest.mark.parametrize("accepted_first", [0, 1])
def test_a_table_rejecting_every_row_is_an_outage_unless_one_was_accepted(accepted_first: int) -> None:
    size = REJECTED_ALL_AFTER + 3
    columns = {"n": list(range(size))}
    written: list[int] = []

    def insert(part: dict[str, list[Any]]) -> None:
        if any(n >= accepted_first for n in part["n"]):
            raise FakeServerError(395, "refused")
        written.extend(part["n"])

    if accepted_first == 0:
        with pytest.raises(WarehouseRefusesEverything):
            isolate_rejected_rows(insert, columns, FakeServerError(395, "refused"))
        assert written == []
    else:
        rejected = isolate_rejected_rows(insert, columns, FakeServerError(395, "refused"))
        assert [i for i, _ in rejected] == list(range(1, size)) and written == [0]


def test_a_failure_that_is_not_a_rejection_during_bisection_is_raised() -> None:
    def insert(part: dict[str, list[Any]]) -> None:
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError):
        isolate_rejected_rows(insert, {"n": [1, 2, 3]}, FakeServerError(395, "refused"))


# ---- control messages -------------------------------------------------------------------------------------
@pytest.mark.parametrize("message", [{"control": "reboot"}, {"control": "forget", "id_type": "email"}])
def test_unknown_or_invalid_control_messages_are_ignored(message: dict[str, Any],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    server = FakeWarehouseServer()
    with caplog.at_level(logging.WARNING):
        assert service_on(server).apply_control(message) is None
    assert "ignoring" in caplog.text and server.connections == 0


# ---- restore -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("aliases", [[("s1", "s2"), ("s2", "s1")], [("s1", "s2"), ("s2", "s3"), ("s3", "s1")]])
def test_a_circle_of_aliases_fails_the_restore_instead_of_hanging(aliases: list[tuple[str, str]]) -> None:
    row = RecentRow("e1", "fp", NOW_MS, 1, NOW_MS, "web", "page_view", "c1", "s1", "", "k1")
    with pytest.raises(AliasCycle):
        Resolver(ResolverConfig()).restore(Snapshot(session_aliases=aliases, recent=[row]))


def test_a_session_aliased_to_itself_is_current() -> None:
    rows = [RecentRow(f"e{i}", "fp", NOW_MS, 1, NOW_MS + i, "web", "page_view", "c1", session, "", "k1")
            for i, session in enumerate(["s1", "s2"])]
    resolver = Resolver(ResolverConfig())
    resolver.restore(Snapshot(session_aliases=[("s1", "s2"), ("s2", "s2")], recent=rows))
    (session,) = resolver.sessions.by_customer["c1"]
    assert (session.session_id, session.events, "s1" in session.members) == ("s2", 2, True)


def test_a_restore_reads_back_what_the_fake_holds() -> None:
    server = FakeWarehouseServer()
    events = mixed_batch()
    service_on(server).process_and_write(events)
    restarted = service_on(server)
    assert restarted.process_and_write(events).effects.duplicates == 60
    assert server.connections == 2


def test_the_resolver_counts_its_cpu_per_step_and_the_graphs_time_per_need() -> None:
    steps = ("resolve", "columns", "insert")
    cpu = {step: sample("cem_resolver_cpu_seconds_total", step=step) for step in steps}
    graph = {need: sample("cem_identity_graph_seconds_total", need=need) for need in ("owner", "local")}
    owner_events = sum(sample("cem_identity_events_total", outcome=o) for o in OWNER_REASONS)
    service_on(FakeWarehouseServer()).process_and_write(mixed_batch())
    assert all(sample("cem_resolver_cpu_seconds_total", step=step) > cpu[step] for step in steps)
    assert sum(sample("cem_identity_events_total", outcome=o) for o in OWNER_REASONS) > owner_events
    assert sample("cem_identity_graph_seconds_total", need="owner") > graph["owner"]

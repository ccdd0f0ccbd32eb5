"""The resolver's state on disk is written back once a batch's rows are in (cem.state_store.WriteBack), on the
in-memory warehouse (sinks.fake) and a real RocksDB store: the write-back runs after the inserts and before the next
batch changes the state, a worker whose files are behind or ahead of the warehouse rebuilds at its next start, and
rejected rows, failed inserts or a failed write-back leave the same rows and state as a resolver that never
failed."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cem import metrics
from cem.service.resolver_service import ResolverService
from cem.service.retry import Stopping
from cem.settings import Settings
from sinks.fake import FakeWarehouse, FakeWarehouseServer
from tests.unit.factories import NOW_MS, mixed_batch, resolver_state

MARKER = "POISON#"


def disk_service(server: FakeWarehouseServer, state_dir: Path, **kwargs: Any) -> ResolverService:
    settings = Settings(sink_retry_max_seconds=0.001, state_store="disk", state_dir=str(state_dir))
    return ResolverService(settings, clock=lambda: NOW_MS / 1000, open_warehouse=kwargs.pop("open", server.connect),
                           **kwargs)


def memory_service(server: FakeWarehouseServer) -> ResolverService:
    return ResolverService(Settings(sink_retry_max_seconds=0.001, state_store="memory"),
                           clock=lambda: NOW_MS / 1000, open_warehouse=server.connect)


def never_failed(*batches: list[Any]) -> Any:
    """The resolver's state after these batches on a warehouse that never failed, with the state in memory."""
    service = memory_service(FakeWarehouseServer())
    for batch in batches:
        service.process_and_write(batch)
    return resolver_state(service.resolver)


def landed(server: FakeWarehouseServer) -> Counter[str]:
    return Counter(row["event_id"] for row in server.rows("interaction_log"))


def resumed() -> float:
    return metrics.STATE_RESUMED._value.get()  # type: ignore[attr-defined]


def test_the_state_is_written_back_after_the_rows_are_in_and_before_the_next_batch(tmp_path: Path) -> None:
    """A batch's inserts never run beside its own write-back (each reply would wait for the interpreter lock it
    holds), and the next batch's inserts find it on disk: the checkpoint seen by every insert is the previous
    batch's (none before the first batch's, a restore leaves none)."""
    server = FakeWarehouseServer()
    seen: list[int | None] = []

    class Watching(FakeWarehouse):
        def insert(self, table: str, columns: dict[str, list[Any]]) -> None:
            found = service.store.checkpoint() if service.store else None
            seen.append(found.version if found else None)
            super().insert(table, columns)

    service = disk_service(server, tmp_path, open=lambda: Watching(server))
    first = service.process_and_write(mixed_batch(prefix="a"))
    inserts_of_the_first = len(seen)
    second = service.process_and_write(mixed_batch(seed=6, prefix="b", first_person=5))
    assert (first.written, second.written) == (60, 60)
    assert set(seen[:inserts_of_the_first]) == {None}
    assert set(seen[inserts_of_the_first:]) == {first.effects.version}
    assert service.write_back is not None and service.store is not None
    service.write_back.wait()
    checkpoint = service.store.checkpoint()
    assert checkpoint is not None and checkpoint.version == second.effects.version
    service.shutdown()


def test_a_worker_dying_with_rows_above_its_last_mark_rebuilds_at_its_next_start(tmp_path: Path) -> None:
    """The second batch's rows land and its mark never does: the files end with the first batch, as the warehouse's
    last mark does, but rows above it are there."""
    server = FakeWarehouseServer()
    stopping = threading.Event()
    first, second = mixed_batch(prefix="a"), mixed_batch(seed=6, prefix="b", first_person=5)
    service = disk_service(server, tmp_path, stopping=stopping)
    service.process_and_write(first)
    server.faults.fail(times=1000, table="resolver_batches")  # every row of the batch lands, its mark never does
    threading.Timer(0.05, stopping.set).start()
    with pytest.raises(Stopping):
        service.process_and_write(second)
    assert service.store is not None
    checkpoint = service.store.checkpoint()
    service.shutdown()
    assert checkpoint is not None and checkpoint.version == max(row["version"] for row in
                                                                server.rows("resolver_batches"))

    server.faults.pending.clear()
    before = resumed()
    restarted = disk_service(server, tmp_path)
    again = restarted.process_and_write(list(second))  # Kafka delivers the unacknowledged batch again
    assert resumed() == before  # rows above the files' checkpoint: rebuilt from the warehouse
    assert (again.written, again.effects.duplicates) == (0, 60)  # its rows were there; the mark lands now
    assert landed(server) == Counter(e.event_id for e in first + second)
    assert resolver_state(restarted.resolver) == never_failed(first, second)
    restarted.shutdown()


def test_a_worker_dying_before_the_write_back_of_a_batch_it_acknowledged_rebuilds(tmp_path: Path) -> None:
    """The batch is in the warehouse with its mark, and acknowledged; the process dies before its write-back ran:
    the files are behind the warehouse and are rebuilt, not resumed."""
    server = FakeWarehouseServer()
    first, second = mixed_batch(prefix="a"), mixed_batch(seed=6, prefix="b", first_person=5)
    service = disk_service(server, tmp_path)
    service.process_and_write(first)
    assert service.write_back is not None
    service.write_back.start = lambda checkpoint: None  # type: ignore[method-assign]  # killed before it ran
    assert service.process_and_write(second).written == 60
    service.shutdown()

    before = resumed()
    restarted = disk_service(server, tmp_path)
    later = mixed_batch(seed=7, prefix="c", first_person=9)
    assert restarted.process_and_write(later).written == 60
    assert resumed() == before
    assert resolver_state(restarted.resolver) == never_failed(first, second, later)
    assert landed(server) == Counter(e.event_id for e in first + second + later)
    restarted.shutdown()


@pytest.mark.parametrize("positions", [{0}, {3, 17, 41}, set(range(50, 60))])
def test_rejected_rows_with_the_state_on_disk_leave_no_checkpoint_and_the_same_rows(tmp_path: Path,
                                                                                   positions: set[int]) -> None:
    server = FakeWarehouseServer()
    server.refuse_rows(lambda row: MARKER in row["text"])
    events = [replace(e, text=f"{MARKER} {e.text}") if i in positions else e for i, e in enumerate(mixed_batch())]
    service = disk_service(server, tmp_path)
    result = service.process_and_write(events)
    assert sorted(e.event_id for e, _ in result.rejected) == sorted(events[i].event_id for i in positions)
    assert service.store is not None and service.store.checkpoint() is None  # rebuilt: no batch ended with it
    accepted = [e for i, e in enumerate(events) if i not in positions]
    assert landed(server) == Counter(e.event_id for e in accepted)
    later = mixed_batch(seed=6, prefix="b", first_person=5)
    assert service.process_and_write(later).written == 60
    assert service.write_back is not None
    service.write_back.wait()
    checkpoint = service.store.checkpoint()
    assert checkpoint is not None and checkpoint.version == max(row["version"] for row in
                                                                server.rows("resolver_batches"))
    service.shutdown()


@pytest.mark.parametrize("table", ["customer_log", "journey_log", "interaction_log", "resolver_batches"])
def test_a_failed_insert_resumes_and_the_next_start_resumes_from_disk(tmp_path: Path, table: str) -> None:
    server = FakeWarehouseServer()
    first, second = mixed_batch(prefix="a"), mixed_batch(seed=6, prefix="b", first_person=5)
    service = disk_service(server, tmp_path)
    service.process_and_write(first)
    server.faults.fail(times=2, table=table)
    assert service.process_and_write(second).written == 60
    service.shutdown()
    before = resumed()
    restarted = disk_service(server, tmp_path)
    assert restarted.process_and_write(list(second)).effects.duplicates == 60
    assert resumed() == before + 1  # its checkpoint is the warehouse's last batch
    assert resolver_state(restarted.resolver) == never_failed(first, second)
    assert landed(server) == Counter(e.event_id for e in first + second)
    restarted.shutdown()


def test_a_failed_write_back_has_the_state_rebuilt_not_written_again(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The second batch's write-back fails after its rows are in: the files may lack what it held (the caches no
    longer mark it as changed), so the next batch rebuilds the resolver from the warehouse instead of going on."""
    server = FakeWarehouseServer()
    first, second = mixed_batch(prefix="a"), mixed_batch(seed=6, prefix="b", first_person=5)
    third = mixed_batch(seed=7, prefix="c", first_person=9)
    service = disk_service(server, tmp_path)
    service.process_and_write(first)
    assert service.store is not None and service.write_back is not None
    service.write_back.wait()
    flush = type(service.store).flush
    failures = iter([OSError("No space left on device")])

    def failing_once(store: Any, checkpoint: Any) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        flush(store, checkpoint)
    monkeypatch.setattr(type(service.store), "flush", failing_once)
    assert service.process_and_write(second).written == 60
    kept = service.resolver
    assert service.process_and_write(third).written == 60
    assert service.resolver is not kept  # rebuilt before the third batch changed anything
    service.shutdown()
    before = resumed()
    restarted = disk_service(server, tmp_path)
    assert restarted.process_and_write(list(third)).effects.duplicates == 60
    assert resumed() == before + 1
    assert resolver_state(restarted.resolver) == never_failed(first, second, third)
    assert landed(server) == Counter(e.event_id for e in first + second + third)
    restarted.shutdown()

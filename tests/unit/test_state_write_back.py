"""The resolver's state on disk is written back while a batch's rows are inserted (cem.state_store.WriteBack), on
the in-memory warehouse (sinks.fake) and a real RocksDB store: the write-back overlaps the inserts, a worker that
dies between its checkpoint and the batch's mark rebuilds at its next start, and rejected rows or failed inserts
leave the same rows and state as a resolver that never failed."""

from __future__ import annotations

import threading
import time
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


def test_the_state_is_written_back_while_the_rows_are_inserted(tmp_path: Path) -> None:
    """The first table's insert waits (up to 10 s) for the batch's checkpoint on disk: it comes only if the
    write-back runs beside the inserts, not after them."""
    server = FakeWarehouseServer()
    seen: list[int | None] = []

    class Waiting(FakeWarehouse):
        def insert(self, table: str, columns: dict[str, list[Any]]) -> None:
            if not seen:
                deadline = time.monotonic() + 10
                while (found := service.store.checkpoint() if service.store else None) is None and \
                        time.monotonic() < deadline:
                    time.sleep(0.01)
                seen.append(found.version if found else None)
            super().insert(table, columns)

    service = disk_service(server, tmp_path, open=lambda: Waiting(server))
    result = service.process_and_write(mixed_batch())
    assert seen == [result.effects.version]
    assert result.written == 60
    service.shutdown()


def test_a_worker_dying_between_its_checkpoint_and_the_mark_rebuilds_at_its_next_start(tmp_path: Path) -> None:
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
    assert checkpoint is not None and checkpoint.version > max(row["version"] for row in
                                                               server.rows("resolver_batches"))

    server.faults.pending.clear()
    before = resumed()
    restarted = disk_service(server, tmp_path)
    again = restarted.process_and_write(list(second))  # Kafka delivers the unacknowledged batch again
    assert resumed() == before  # the files were ahead of the warehouse: rebuilt from it
    assert (again.written, again.effects.duplicates) == (0, 60)  # its rows were there; the mark lands now
    assert landed(server) == Counter(e.event_id for e in first + second)
    assert resolver_state(restarted.resolver) == never_failed(first, second)
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
    """The write-back fails while an insert of the same batch fails too: the files may lack what it held (the caches
    no longer mark it as changed), so the resolver is rebuilt from the warehouse instead of resuming the write."""
    server = FakeWarehouseServer()
    first, second = mixed_batch(prefix="a"), mixed_batch(seed=6, prefix="b", first_person=5)
    service = disk_service(server, tmp_path)
    service.process_and_write(first)
    kept = service.resolver
    assert service.store is not None
    flush = type(service.store).flush
    failures = iter([OSError("No space left on device")])

    def failing_once(store: Any, checkpoint: Any) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        flush(store, checkpoint)
    monkeypatch.setattr(type(service.store), "flush", failing_once)
    server.faults.fail(times=1, table="interaction_log")
    assert service.process_and_write(second).written == 60
    assert service.resolver is not kept  # rebuilt, where a failed insert alone keeps the state and resumes
    service.shutdown()
    before = resumed()
    restarted = disk_service(server, tmp_path)
    assert restarted.process_and_write(list(second)).effects.duplicates == 60
    assert resumed() == before + 1
    assert resolver_state(restarted.resolver) == never_failed(first, second)
    assert landed(server) == Counter(e.event_id for e in first + second)
    restarted.shutdown()

"""A worker's resolver service on the embedded warehouse (chdb) with its state on disk: a restart resumes from the
files when they end with the last batch the warehouse holds, and rebuilds from the warehouse when they do not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from cem import metrics
from cem.domain.keyed import key_bytes, keyed_hash
from cem.service.resolver_service import ResolverService
from cem.settings import Settings
from tests.unit.factories import event

T0 = 1_700_000_000_000
NOW_S = T0 / 1000 + 3600
ALICE = [("email", "alice@example.com")]
ALICE_PHONE = [("email", "alice@example.com"), ("phone", "+15550100")]


def settings_for(path: Path) -> Settings:
    return Settings.from_env({}, clickhouse_url=f"chdb://{path}/warehouse?database=resume",
                             state_dir=str(path / "state"), sink_retry_max_seconds=0.001)


def resumed_count() -> float:
    return metrics.STATE_RESUMED._value.get()  # type: ignore[attr-defined]


def test_a_restart_resumes_from_disk_only_when_it_ends_with_the_warehouse(
        tmp_path: Path, new_service: Callable[..., ResolverService]) -> None:
    settings = settings_for(tmp_path)
    first = new_service(settings, clock=lambda: NOW_S)
    written = first.process_and_write([event("e1", T0, ALICE), event("e2", T0 + 1000, ALICE, "chat", "chat_message",
                                                                       "CASE-9")])
    alice = written.effects.interactions[0].customer_id
    first.shutdown()

    before = resumed_count()
    second = new_service(settings, clock=lambda: NOW_S + 1)
    again = second.process_and_write([event("e1", T0, ALICE), event("e3", T0 + 2000, ALICE_PHONE)])
    assert resumed_count() == before + 1  # the files ended with the batch the warehouse held last
    assert (again.effects.duplicates, [r.customer_id for r in again.effects.interactions]) == (1, [alice])
    # A batch that lands after the files' last flush (as when a worker dies between the two): they are behind.
    warehouse = second._ensure_warehouse()
    last = warehouse.last_batch_version()
    warehouse.insert("resolver_batches", {"version": [last + 1], "interactions": [0], "duplicates": [0],
                                          "written_ms": [int(NOW_S * 1000)]})
    second.shutdown()

    third = new_service(settings, clock=lambda: NOW_S + 2)
    rebuilt = third.process_and_write([event("e3", T0 + 2000, ALICE_PHONE), event("e4", T0 + 3000, [ALICE_PHONE[1]],
                                                                                 "chat", "chat_message", "CASE-9")])
    assert resumed_count() == before + 1  # rebuilt from the warehouse instead
    assert (rebuilt.effects.duplicates, [r.customer_id for r in rebuilt.effects.interactions]) == (1, [alice])
    assert [j.journey_id for j in rebuilt.effects.journeys.values()] == \
        [r.journey_id for r in written.effects.interactions if r.journey_id]  # the same journey goes on
    third.shutdown()
    fourth = new_service(settings, clock=lambda: NOW_S + 3)
    fourth.process_and_write([])
    assert resumed_count() == before + 2  # the rebuilt state was flushed with its first batch: resumed again


def test_an_erasure_by_another_worker_makes_the_files_of_this_one_behind(
        tmp_path: Path, new_service: Callable[..., ResolverService]) -> None:
    settings = settings_for(tmp_path)
    first = new_service(settings, clock=lambda: NOW_S)
    first.process_and_write([event("e1", T0, ALICE_PHONE), event("e2", T0 + 1000, [("email", "bob@example.com")])])
    first.shutdown()

    other = new_service(replace(settings, state_dir=str(tmp_path / "other-state")), clock=lambda: NOW_S + 1)
    outcome = other.apply_control({"control": "forget", "request_id": "r1", "id_type": "email", "requested_ms": 1,
                                   "value_key": keyed_hash(key_bytes(""), "email", "alice@example.com")})
    assert outcome is not None and outcome.status == "applied"
    other.shutdown()

    before = resumed_count()
    again = new_service(settings, clock=lambda: NOW_S + 2)
    # Her phone alone comes back: a new customer, not the erased one (the files knew her, the warehouse does not).
    written = again.process_and_write([event("e3", T0 + 2000, [ALICE_PHONE[1]])])
    assert resumed_count() == before
    assert written.effects.customers and written.effects.interactions[0].customer_id == \
        written.effects.customers[0].customer_id

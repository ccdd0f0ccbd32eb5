"""The sink's defences against the embedded engine (chdb): refused rows are isolated and the rest written, a table
that refuses every row is an outage rather than a flood of dead letters, and a write whose reply was lost is not
written twice. (The pure parts of hostile input are in tests/unit/test_hostile_input.py.)"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cem.domain.model import Interaction
from cem.settings import Settings
from streams.app import ResolverSink, WarehouseRefusesEverything
from tests.unit.factories import NOW_MS, event


@pytest.fixture
def chdb_sink(tmp_path: Path) -> Iterator[ResolverSink]:
    sink = ResolverSink(Settings(clickhouse_url=f"chdb://{tmp_path}/warehouse", sink_retry_max_seconds=0.05))
    warehouse = sink._ensure_warehouse()
    warehouse.command(f"ALTER TABLE {warehouse.database}.interaction_log ADD COLUMN refuse_guard UInt8 "
                      "DEFAULT throwIf(position(text, 'POISON#') > 0)")
    yield sink
    if sink.warehouse is not None:
        sink.warehouse.close()


def _batch(rng: random.Random) -> list[Interaction]:
    events = []
    for i in range(60):
        base = event(f"e{i:02d}", NOW_MS - i * 60_000, [("email", f"p{i % 7}@example.com")], channel="chat",
                     type="chat_message", issue_ref=f"CASE-{i % 5}")
        poison = i in (3, 17, 18, 41)
        events.append(replace(base, text=("POISON# " if poison else "") + f"message {i}"))
    rng.shuffle(events)
    return events


def test_refused_rows_are_isolated_and_the_rest_written(chdb_sink: ResolverSink) -> None:
    events = _batch(random.Random(5))
    result = chdb_sink.process_and_write(events)
    assert sorted(e.event_id for e, _ in result.refused) == ["e03", "e17", "e18", "e41"]
    assert all("395" in detail for _, detail in result.refused)
    assert result.written == 56
    db = chdb_sink._ensure_warehouse()
    name = db.database
    assert db.query(f"SELECT count(), uniqExact(event_id) FROM {name}.interaction_log") == [(56, 56)]
    # The journeys the refused events had touched were written again without them. A journey is one customer's
    # events with one issue_ref: (email p<i % 7>, CASE-<i % 5>), two events each, one where a poisoned one was.
    journeys = dict(db.query(f"SELECT journey_id, contacts FROM {name}.journeys WHERE kind = 'service'"))
    contacts = {tuple(sorted(ids)): journeys[journey_id] for journey_id, ids in db.query(
        f"SELECT journey_id, groupArray(event_id) FROM {name}.interactions GROUP BY journey_id")}
    expected: dict[tuple[str, ...], int] = {}
    for k in range(35):
        members = tuple(f"e{i:02d}" for i in (k, k + 35) if i < 60 and i not in (3, 17, 18, 41))
        expected[members] = len(members)
    assert contacts == expected
    assert db.query(f"SELECT count() FROM {name}.journeys WHERE kind = 'service' AND contacts > 0") == [(35,)]
    # The resolver's state was rebuilt from the warehouse: a later re-send of a refused event is processed
    # again (and refused again), a re-send of a written one is a duplicate.
    again = chdb_sink.process_and_write([e for e in events if e.event_id in ("e03", "e04")])
    assert [e.event_id for e, _ in again.refused] == ["e03"] and again.effects.duplicates == 1


def test_a_table_that_refuses_every_row_is_an_outage_not_a_dead_letter_flood(tmp_path: Path) -> None:
    sink = ResolverSink(Settings(clickhouse_url=f"chdb://{tmp_path}/warehouse"))
    db = sink._ensure_warehouse()
    db.command(f"ALTER TABLE {db.database}.interaction_log ADD COLUMN broken UInt8 "
               "DEFAULT throwIf(length(event_id) > 0)")  # say, a schema change gone wrong
    resolver = sink._ensure_resolver()
    effects = resolver.process(_batch(random.Random(6)), NOW_MS)
    with pytest.raises(WarehouseRefusesEverything):
        sink._write(effects, NOW_MS)
    assert db.query(f"SELECT count() FROM {db.database}.interaction_log") == [(0,)]
    db.close()


class LostReply:
    """A warehouse whose first interaction_log insert lands, then fails as if the reply had been lost."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.database = real.database
        self.lost = 0

    def insert(self, table: str, columns: dict[str, list[Any]]) -> None:
        self.real.insert(table, columns)
        if table == "interaction_log" and not self.lost:
            self.lost += 1
            raise EOFError("Unexpected EOF while reading bytes")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_write_whose_reply_was_lost_is_not_written_twice(tmp_path: Path) -> None:
    sink = ResolverSink(Settings(clickhouse_url=f"chdb://{tmp_path}/warehouse", sink_retry_max_seconds=0.05))
    flaky = LostReply(sink._ensure_warehouse())
    sink.warehouse = flaky
    events = [event(f"e{i}", NOW_MS - i * 1000, [("email", f"p{i % 3}@example.com")]) for i in range(20)]
    result = sink.process_and_write(events)
    assert flaky.lost == 1
    db = sink._ensure_warehouse()
    assert db.query(f"SELECT count(), uniqExact(event_id) FROM {db.database}.interaction_log") == [(20, 20)]
    assert result.written == 0 and result.effects.duplicates == 20  # the retry found every row already there
    db.close()

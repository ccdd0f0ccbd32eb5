"""Text signals from ingest to the warehouse: the resolver wire, the interaction_log columns, the migration."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from cem.domain.model import Interaction
from cem.domain.text import analyse
from schemas.internal import InternalMessageError, decode_resolve_message, encode_batch
from sinks.clickhouse import migration_tables, without_existing_columns
from sinks.writer import text_signal_columns
from tests.unit.factories import NOW_MS, event

TEXT = "Third time I call about my bill, I'm furious! Please refund me."


def with_text(text: str | None = TEXT) -> Interaction:
    return replace(event("e1", NOW_MS, [("email", "a@b.co")]), text=text, text_signals=analyse(text))


def test_signals_survive_the_wire() -> None:
    events = [with_text(), with_text(None), with_text("Thanks, all good 😊")]
    assert decode_resolve_message(encode_batch(events)) == events


def test_a_row_of_a_worker_older_than_text_signals_gets_them_on_the_way_in() -> None:
    legacy = with_text().to_wire()[:15]
    [decoded] = decode_resolve_message(orjson.dumps([legacy]))
    assert decoded.text_signals == analyse(TEXT)
    assert decoded.text_signals is not None and decoded.text_signals.effort == -4.0


GOOD = with_text().to_wire()


def with_signals_field(index: int, value: Any) -> bytes:
    row = list(GOOD)
    signals = list(row[15])
    signals[index] = value
    row[15] = signals
    return orjson.dumps([row])


@pytest.mark.parametrize("value", [
    orjson.dumps([[*GOOD[:15], "signals"]]), orjson.dumps([[*GOOD[:15], [1, 2]]]), orjson.dumps([[*GOOD, None]]),
    with_signals_field(0, 7.5), with_signals_field(0, "1"), with_signals_field(0, True),
    with_signals_field(1, [["rage", 3]]), with_signals_field(1, [["anger", 6]]), with_signals_field(1, [["anger"]]),
    with_signals_field(1, [["anger", True]]), with_signals_field(2, -6), with_signals_field(2, "hard"),
    with_signals_field(3, "urgent"), with_signals_field(4, ["weather"]), with_signals_field(5, ["x" * 201]),
    with_signals_field(5, ["cue"] * 25), with_signals_field(6, 0), with_signals_field(6, 1.5),
])
def test_malformed_signals_are_a_dead_letter_reason(value: bytes) -> None:
    with pytest.raises(InternalMessageError) as raised:
        decode_resolve_message(value)
    assert raised.value.reason == "invalid_internal_message"
    assert raised.value.detail.startswith("event 0:")


def test_columns_of_an_event_with_and_without_text() -> None:
    signals = analyse(TEXT)
    assert signals is not None
    columns = text_signal_columns([signals, None])
    assert columns["emotions"] == [[label for label, _ in signals.emotions], []]
    assert columns["emotion_intensities"][0] == [i for _, i in signals.emotions]
    assert columns["emotion_intensity"] == [max(columns["emotion_intensities"][0]), None]
    assert columns["effort"] == [-4.0, None]
    assert columns["actionability"] == ["needs_response", ""]
    assert columns["topics"] == [["billing"], []]
    assert columns["sentence_count"] == [2, 0]
    assert columns["text_sentiment"][1] is None and columns["text_sentiment"][0] < 0


def test_the_migration_adds_every_column_the_writer_fills() -> None:
    schema = migration_tables()["interaction_log"]
    assert set(text_signal_columns([None])) <= set(schema)
    assert schema["emotion_intensity"] == "Nullable(UInt8)" and schema["emotions"] == "Array(String)"
    assert schema["event_id"] == "String"  # the CREATE TABLE columns are still there


class Columns:
    """The one query without_existing_columns sends, answered from a fixed column list."""

    def __init__(self, existing: list[str]) -> None:
        self.existing = existing
        self.queries: list[str] = []

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        self.queries.append(sql)
        return [(name,) for name in self.existing]


ALTER = "ALTER TABLE cem.interaction_log ADD COLUMN effort Nullable(Float32), ADD COLUMN topics Array(String)"


@pytest.mark.parametrize(("existing", "expected"), [
    ([], ALTER),
    (["effort"], "ALTER TABLE cem.interaction_log ADD COLUMN topics Array(String)"),
    (["topics"], "ALTER TABLE cem.interaction_log ADD COLUMN effort Nullable(Float32)"),
    (["effort", "topics"], None),
])
def test_a_migration_run_again_adds_only_missing_columns(existing: list[str], expected: str | None) -> None:
    columns = Columns(["event_id", *existing])
    assert without_existing_columns(columns, ALTER) == expected  # type: ignore[arg-type]
    assert "database = 'cem' AND table = 'interaction_log'" in columns.queries[0]


def test_other_statements_pass_unchanged_without_a_query() -> None:
    columns = Columns([])
    statement = "CREATE VIEW cem.x AS SELECT 1"
    assert without_existing_columns(columns, statement) == statement  # type: ignore[arg-type]
    assert columns.queries == []

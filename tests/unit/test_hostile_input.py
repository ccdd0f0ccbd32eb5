"""Hostile input, from the bytes a channel system sends to the rows ClickHouse refuses.

1. `streams.app.Ingestor.parse` (decoder + validator) never raises, and each crafted case gets its own specific
   dead-letter reason: random bytes, truncated Avro, wrong types, 1 MB text, deeply nested JSON, 10,000
   identifiers, non-UTF-8 bytes, future and ancient timestamps.
2. Duplicate event ids with different payloads: the first copy wins and the conflict is counted.
3. Resolver messages stay under the Kafka limit, and ClickHouse refusing rows is told apart from ClickHouse being
   unavailable (sinks.errors). What the service does with refused rows and lost replies is tested on every
   warehouse in tests/contract, and on the fake in tests/unit/test_resolver_service.py.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from clickhouse_driver.errors import NetworkError, ServerException, TypeMismatchError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cem.domain.model import Interaction, Rejection
from cem.domain.resolver import Resolver, ResolverConfig
from cem.settings import Settings
from cem.topic_limits import limit_problems
from devtools.simulate import Simulator
from schemas.codec import encode_avro, encode_json
from sinks.errors import describe_error, error_code, is_rejection
from streams.app import Ingestor
from streams.deadletters import contract_record
from streams.ingest import resolve_payloads
from tests.unit.factories import HOUR_MS, NOW_MS

INGESTOR = Ingestor(Settings())
REASONS = {
    "empty_record", "too_large", "unknown_encoding", "malformed_json", "invalid_utf8", "too_deeply_nested",
    "unknown_schema", "malformed_avro", "not_an_object", "missing_field", "wrong_type", "invalid_event_id",
    "unknown_channel", "channel_mismatch", "invalid_type", "invalid_timestamp", "timestamp_too_old",
    "timestamp_in_future", "too_many_identifiers", "unknown_identifier_type", "no_valid_identifier",
    "text_too_long", "field_too_long", "too_many_properties", "invalid_survey",
}  # every documented reason except internal_error, which would be a validator bug
GOOD: dict[str, Any] = {
    "event_id": "evt-1", "channel": "web", "type": "page_view", "occurred_at": "2026-11-16T10:00:00.123Z",
    "identifiers": {"email": "alice@example.com"}, "text": "hello", "issue_ref": None, "survey": None,
    "properties": {"url": "/p/1"},
}


def parse(raw: bytes | None, channel: str | None = "web") -> Interaction | Rejection:
    return INGESTOR.parse(raw, channel, NOW_MS)


def reason_of(raw: bytes | None, channel: str | None = "web") -> str:
    result = parse(raw, channel)
    assert isinstance(result, Rejection), result
    assert result.reason in REASONS, result
    return result.reason


def good_json(**changes: Any) -> bytes:
    return encode_json({k: v for k, v in {**GOOD, **changes}.items() if v is not None})


def good_avro(**changes: Any) -> bytes:
    return encode_avro({**GOOD, "occurred_at": 1_794_823_200_123, **changes})


def test_the_good_record_is_accepted_both_ways() -> None:
    assert isinstance(parse(good_json()), Interaction)
    assert isinstance(parse(good_avro()), Interaction)


# ---- fuzzing: never raises, never an internal error -------------------------------------------------
def assert_handled(raw: bytes, channel: str | None = "web") -> None:
    result = parse(raw, channel)
    assert isinstance(result, Interaction) or result.reason in REASONS, result


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000), st.sampled_from(["web", "chat", None]))
def test_random_bytes(raw: bytes, channel: str | None) -> None:
    assert_handled(raw, channel)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_behind_the_json_and_avro_markers(tail: bytes) -> None:
    for head in (b"{", b"[", b'{"event_id": ', b"\xc3\x01", good_avro()[:10]):
        assert_handled(head + tail)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(GOOD)), JSON_VALUES, max_size=len(GOOD)))
def test_wrong_types_in_every_field(changes: dict[str, Any]) -> None:
    record = {**GOOD, **changes}
    assert_handled(orjson.dumps(record))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_avro(data: st.DataObject) -> None:
    raw = bytearray(good_avro(text="x" * data.draw(st.integers(0, 50))))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(10, len(raw) - 1))] = data.draw(st.integers(0, 255))
    assert_handled(bytes(raw))


# ---- crafted cases: the exact reason -----------------------------------------------------------------
def test_truncated_avro_at_every_length() -> None:
    raw = good_avro(text="a text of some length", issue_ref="CASE-1", survey={"kind": "nps", "score": 9})
    for cut in range(len(raw)):
        expected = ("empty_record" if cut == 0 else "unknown_encoding" if cut == 1
                    else "unknown_schema" if cut < 10 else "malformed_avro")
        assert reason_of(raw[:cut]) == expected, cut


@pytest.mark.parametrize(("changes", "expected"), [
    ({"event_id": 12345}, "wrong_type"),
    ({"event_id": ["a"]}, "wrong_type"),
    ({"channel": 7}, "wrong_type"),
    ({"type": ["page_view"]}, "wrong_type"),
    ({"identifiers": ["alice@example.com"]}, "wrong_type"),
    ({"identifiers": {"email": 5}}, "wrong_type"),
    ({"identifiers": {"email": {"nested": "x"}}}, "wrong_type"),
    ({"text": 42}, "wrong_type"),
    ({"issue_ref": 42}, "wrong_type"),
    ({"survey": "nps:9"}, "wrong_type"),
    ({"properties": ["url"]}, "wrong_type"),
    ({"properties": {"url": {"nested": "/p"}}}, "wrong_type"),
    ({"occurred_at": True}, "invalid_timestamp"),
    ({"occurred_at": [2026, 11, 16]}, "invalid_timestamp"),
    ({"occurred_at": {"ms": 1}}, "invalid_timestamp"),
    ({"survey": {"kind": "nps", "score": "9"}}, "invalid_survey"),
    ({"survey": {"kind": "nps", "score": 9.5}}, "invalid_survey"),
])
def test_wrong_types(changes: dict[str, Any], expected: str) -> None:
    assert reason_of(good_json(**changes)) == expected


def test_huge_strings() -> None:
    assert reason_of(good_json(text="x" * 1_048_576)) == "too_large"  # 1 MB of text: over the record limit
    assert reason_of(good_json(text="x" * 20_001)) == "text_too_long"
    assert isinstance(parse(good_json(text="x" * 20_000)), Interaction)  # the limit itself is accepted
    assert reason_of(good_avro(text="x" * 20_001)) == "text_too_long"
    assert reason_of(good_json(issue_ref="c" * 257)) == "field_too_long"
    assert reason_of(good_json(properties={"k": "v" * 4097})) == "field_too_long"
    assert reason_of(good_json(event_id="e" * 129)) == "invalid_event_id"
    assert reason_of(b" " * 1_048_577) == "too_large"


def test_deeply_nested_json() -> None:
    assert reason_of(b"[" * 100_000 + b"]" * 100_000) == "too_deeply_nested"
    assert reason_of(b"{" + b'"a":{' * 5000 + b"}" * 5001) == "too_deeply_nested"
    nested = b'{"event_id": "n", "properties": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2001
    assert reason_of(nested) == "too_deeply_nested"
    assert reason_of(good_json(properties={"a": {"b": {"c": "d"}}})) == "wrong_type"  # shallow: the validator


def test_ten_thousand_identifiers() -> None:
    raw = good_json(identifiers={f"anonymous_id_{i}": f"v-{i}" for i in range(10_000)})
    assert len(raw) < 1_048_576
    assert reason_of(raw) == "too_many_identifiers"
    assert reason_of(good_json(identifiers={f"x{i}": "v" for i in range(51)})) == "too_many_identifiers"
    assert reason_of(good_json(identifiers={"fax": "123"})) == "unknown_identifier_type"
    assert reason_of(good_json(identifiers={"email": "null", "anonymous_id": "undefined"})) == "no_valid_identifier"


def test_non_utf8_bytes() -> None:
    assert reason_of(b'{"event_id": "\xff\xfe", "type": "page_view"}') == "invalid_utf8"
    assert reason_of(good_json(text="caf\u00e9").replace("é".encode(), b"\xe9")) == "invalid_utf8"  # Latin-1
    avro = good_avro(text="AAAA")
    assert reason_of(avro.replace(b"AAAA", b"A\xff\xfeA")) == "invalid_utf8"
    # A JSON escape of a lone surrogate is not Unicode either.
    assert reason_of(b'{"event_id": "\\ud800", "type": "page_view"}') == "invalid_utf8"


@pytest.mark.parametrize(("occurred_at", "expected"), [
    ("2999-01-01T00:00:00Z", "timestamp_in_future"),
    (NOW_MS + 25 * HOUR_MS, "timestamp_in_future"),
    (10**18, "timestamp_in_future"),
    ("1999-12-31T23:59:59.999Z", "timestamp_too_old"),
    ("0001-01-01T00:00:00Z", "timestamp_too_old"),
    (0, "timestamp_too_old"),
    (-86_400_000, "timestamp_too_old"),
    ("10000-01-01T00:00:00Z", "invalid_timestamp"),
    (123456789012345678901234567890, "invalid_timestamp"),  # orjson reads it as a float beyond any time
    ("yesterday", "invalid_timestamp"),
    ("", "invalid_timestamp"),
])
def test_future_and_ancient_timestamps(occurred_at: Any, expected: str) -> None:
    raw = good_json(occurred_at="PLACEHOLDER").replace(b'"PLACEHOLDER"', str(occurred_at).encode()) \
        if isinstance(occurred_at, int) and abs(occurred_at) > 2**63 else good_json(occurred_at=occurred_at)
    assert reason_of(raw) == expected


def test_future_and_ancient_timestamps_in_avro() -> None:
    assert reason_of(good_avro(occurred_at=NOW_MS + 25 * HOUR_MS)) == "timestamp_in_future"
    assert reason_of(good_avro(occurred_at=2**62)) == "timestamp_in_future"
    assert reason_of(good_avro(occurred_at=-(2**62))) == "timestamp_too_old"
    assert isinstance(parse(good_avro(occurred_at=NOW_MS + 23 * HOUR_MS)), Interaction)  # inside the skew


@pytest.mark.parametrize(("raw", "expected"), [
    (b"", "empty_record"),
    (None, "empty_record"),
    (b"\x00\x00\x00\x00\x01payload", "unknown_encoding"),  # Confluent framing: needs a registry
    (b'"a string"', "unknown_encoding"),
    (b"[1, 2]", "not_an_object"),
    (b'{"event_id": ', "malformed_json"),
    (b"{\"a\": 1e999}", "malformed_json"),
    (b"\xc3\x01" + b"\x00" * 8 + b"body", "unknown_schema"),
])
def test_framing(raw: bytes | None, expected: str) -> None:
    assert reason_of(raw) == expected


# ---- duplicates with different payloads ---------------------------------------------------------------
def test_conflicting_duplicates_first_copy_wins_and_are_counted() -> None:
    first = parse(good_json(event_id="dup", text="the first copy"))
    second = parse(good_json(event_id="dup", text="a different payload"))
    retry = parse(good_avro(event_id="dup", text="the first copy"))  # the same event re-encoded: no conflict
    assert isinstance(first, Interaction) and isinstance(second, Interaction) and isinstance(retry, Interaction)
    assert first.fingerprint != second.fingerprint and first.fingerprint == retry.fingerprint
    resolver = Resolver(ResolverConfig())
    effects = resolver.process([first, second, retry], NOW_MS)
    assert [r.interaction.text for r in effects.interactions] == ["the first copy"]
    assert (effects.duplicates, effects.conflicts) == (2, 1)
    later = resolver.process([second, retry], NOW_MS + 1000)  # across batches too
    assert (later.interactions, later.duplicates, later.conflicts) == ([], 2, 1)


# ---- resolver messages under the Kafka limit ----------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 20_000), min_size=1, max_size=120), st.integers(20_000, 400_000))
def test_resolver_messages_are_split_under_the_limit(text_sizes: list[int], limit: int) -> None:
    events = [Interaction(f"e{i}", "web", "page_view", NOW_MS, (("email", "a@b.co"),), "fp", text="t" * size)
              for i, size in enumerate(text_sizes)]
    payloads, apart = resolve_payloads(events, limit)
    assert all(len(p) <= limit for p in payloads)
    carried = [row[0] for p in payloads for row in orjson.loads(p)]
    assert carried + [e.event_id for e in apart] == [e.event_id for e in events if e.event_id in set(carried)] \
        + [e.event_id for e in apart]
    assert sorted(carried + [e.event_id for e in apart]) == sorted(e.event_id for e in events)
    assert all(len(orjson.dumps([e.to_wire()])) > limit for e in apart)
    assert len(payloads) == 1 or len(orjson.dumps([e.to_wire() for e in events])) > limit


def test_the_default_limits_agree_with_kafkas_defaults() -> None:
    """The default settings fit Kafka's default topic limit (message.max.bytes 1048588) and the producer's."""
    defaults = Settings()
    kafka_default = 1_048_588
    topics = {t: kafka_default for t in (defaults.resolve_topic, defaults.deadletter_topic, defaults.control_topic)}
    assert limit_problems(defaults, topics) == []


def test_a_refused_event_published_again_is_the_same_event() -> None:
    """A warehouse_rejected dead letter carries the event in the input contract: parsed again it has the same
    id, identifiers and content fingerprint, so it counts once whatever happens."""
    traffic = Simulator(customers=15, seed=3, base_time_ms=NOW_MS - 10 * 24 * HOUR_MS).run()
    invalid = {value for _, value in traffic.invalid}
    for record in traffic.records:
        if record.value in invalid:
            continue
        original = INGESTOR.parse(record.value, record.channel, NOW_MS)
        assert isinstance(original, Interaction)
        again = INGESTOR.parse(encode_json(contract_record(original)), record.channel, NOW_MS)
        assert isinstance(again, Interaction)
        assert (again.event_id, again.identifiers, again.fingerprint) == \
            (original.event_id, original.identifiers, original.fingerprint)


# ---- ClickHouse refusing data versus ClickHouse unavailable -------------------------------------------
def test_rejections_are_told_apart_from_outages() -> None:
    assert is_rejection(ServerException("DB::Exception: Value passed to 'throwIf' function is non zero", 395))
    assert is_rejection(ServerException("Cannot parse input", 27))
    assert is_rejection(TypeMismatchError("Type mismatch in VALUES section: 'jane@example.com'"))
    assert is_rejection(RuntimeError("Code: 469. DB::Exception: Constraint `c` is violated"))  # chdb's way
    assert error_code(RuntimeError("Code: 469. DB::Exception")) == 469
    for outage in (NetworkError("Code: 210. Connection refused (127.0.0.1:9000)"), EOFError("Unexpected EOF"),
                   ConnectionRefusedError(111, "refused"), ServerException("Too many parts", 252),
                   ServerException("Memory limit exceeded", 241), ServerException("Table is read only", 242),
                   TimeoutError("timed out")):
        assert not is_rejection(outage), outage


def test_logged_errors_never_quote_refused_values() -> None:
    described = describe_error(TypeMismatchError("Expected String got <class 'int'>: jane@example.com +14155550199"))
    assert "jane" not in described and "+1415" not in described and "53" in described
    assert "Connection refused" in describe_error(NetworkError("Connection refused (127.0.0.1:9000)"))

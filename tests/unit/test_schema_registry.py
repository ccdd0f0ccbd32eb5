"""Writer schemas registered at run time: schemas.codec.SchemaRegistry, schemas.evolution (the compatibility rule
and the registration messages) and SchemaFeed.apply (no Kafka). The versions in schemas/: test_schema_versions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas.codec as codec
from cem.settings import Settings
from schemas.codec import (
    SINGLE_OBJECT_MAGIC,
    DecodeError,
    decode,
    default_registry,
    encode_avro,
    new_registry,
    schema_documents,
    schema_fingerprint,
)
from schemas.evolution import (
    IncompatibleSchema,
    SchemaProblem,
    fingerprint_of_key,
    registration_message,
    validated_writer,
    writer_from_message,
)
from schemas.internal import signature_headers
from streams.schema_feed import SchemaFeed
from tests.unit.schema_changes import (
    LOCALE,
    V1,
    V2,
    add,
    drop,
    evolve,
    rename,
    renamespace,
    retype,
    reverse,
    survey_score,
)

MAX = 1_048_576
OCCURRED_MS = 1_794_823_200_123
RECORD: dict[str, Any] = {
    "event_id": "evt-1",
    "channel": "chat",
    "type": "chat_message",
    "occurred_at": OCCURRED_MS,
    "identifiers": {"email": "zoë@example.org"},
    "text": "hello",
    "issue_ref": "CASE-7",
    "survey": {"kind": "nps", "score": 3},
    "properties": {"url": "/x"},
}


# (name, change, the record the producer writes, what the current reader must read)
ACCEPTED: list[tuple[str, Callable[[dict[str, Any]], None], dict[str, Any], dict[str, Any]]] = [
    ("adds an optional field", add(LOCALE), {**RECORD, "locale": "de-DE"}, RECORD),
    ("adds a required field, which the reader skips", add({"name": "locale", "type": "string"}),
     {**RECORD, "locale": "de-DE"}, RECORD),
    ("adds a nested record", add({"name": "geo", "type": {"type": "record", "name": "Geo", "fields": [
        {"name": "lat", "type": "double"}, {"name": "lon", "type": "double"}]}}),
     {**RECORD, "geo": {"lat": 1.5, "lon": 2.5}}, RECORD),
    ("leaves out every field with a default", drop("text", "issue_ref", "survey", "properties"),
     {k: RECORD[k] for k in ("event_id", "channel", "type", "occurred_at", "identifiers")},
     {**RECORD, "text": None, "issue_ref": None, "survey": None, "properties": {}}),
    ("a plain string where the reader has null|string", retype("text", "string"), RECORD, RECORD),
    ("bytes where the reader has string", retype("event_id", "bytes"), {**RECORD, "event_id": b"evt-1"}, RECORD),
    ("int where the reader has long", retype("occurred_at", "int"), {**RECORD, "occurred_at": 123_456},
     {**RECORD, "occurred_at": 123_456}),
    ("another namespace", renamespace("shop.events"), RECORD, RECORD),
    ("fields in another order", reverse, RECORD, RECORD),
]

# (name, change, incompatibility the message names, a record fastavro cannot read with the current reader)
REFUSED: list[tuple[str, Callable[[dict[str, Any]], None], str, dict[str, Any]]] = [
    ("leaves out event_id, which has no default", drop("event_id"), "reader_field_missing_default_value",
     {k: v for k, v in RECORD.items() if k != "event_id"}),
    ("leaves out identifiers", drop("identifiers"), "identifiers",
     {k: v for k, v in RECORD.items() if k != "identifiers"}),
    ("a long score where the reader has int", survey_score("long"), "survey",
     {**RECORD, "survey": {"kind": "nps", "score": 2**40}}),
    ("a union branch the reader lacks", retype("text", ["null", "string", "int"]), "text/type/2",
     {**RECORD, "text": 5}),
    ("identifiers as a string", retype("identifiers", "string"), "type_mismatch",
     {**RECORD, "identifiers": "a@b.c"}),
    ("string where the reader has long", retype("occurred_at", "string"), "occurred_at",
     {**RECORD, "occurred_at": "2026-11-16"}),
    ("another record name", rename("Contact"), "name_mismatch", RECORD),
]


def _decoded_without_extras(decoded: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in decoded.items() if k in RECORD}


# ---- the compatibility rule, and that fastavro agrees with it ------------------------------------------
@pytest.mark.parametrize(("name", "change", "written", "read"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted_writers_are_read_by_the_decoder(name: str, change: Any, written: dict[str, Any],
                                                   read: dict[str, Any]) -> None:
    schema = evolve(change)
    writer = validated_writer(json.dumps(schema), V1)
    assert writer.fingerprint == schema_fingerprint(codec.fastavro.parse_schema(schema))
    registry = new_registry()
    assert registry.add(writer)
    decoded = decode(encode_avro(written, schema=schema), MAX, registry)
    assert set(decoded) == set(RECORD), "the reader's fields, no more, no fewer"
    assert decoded == read


@pytest.mark.parametrize(("name", "change", "names", "unreadable"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_writers_are_named_and_really_unreadable(name: str, change: Any, names: str,
                                                          unreadable: dict[str, Any]) -> None:
    schema = evolve(change)
    with pytest.raises(IncompatibleSchema) as info:
        validated_writer(json.dumps(schema), V1)
    assert str(info.value).startswith("records written with it cannot be read with the reader schema: ")
    assert names in str(info.value)
    # The refusal is not over-cautious: forced into a registry, the writer's records fail to decode.
    parsed = codec.fastavro.parse_schema(schema)
    registry = new_registry()
    registry.add(codec.Writer(schema_fingerprint(parsed), codec.plain_schema(parsed), schema))
    with pytest.raises(DecodeError) as decoding:
        decode(encode_avro(unreadable, schema=schema), MAX, registry)
    assert decoding.value.reason == "malformed_avro"


def test_refusal_names_fields_not_indexes() -> None:
    with pytest.raises(IncompatibleSchema) as info:
        validated_writer(json.dumps(evolve(retype("text", ["null", "string", "int"]))), V1)
    assert "(at text/type/2)" in str(info.value)
    assert "fields/5" not in str(info.value)


@pytest.mark.parametrize(("text", "says"), [
    ("", "not JSON"),
    ("{", "not JSON"),
    ("[]", "not an Avro record schema"),
    ('"string"', "not an Avro record schema"),
    ('{"type": "enum", "name": "E", "symbols": ["A"]}', "not an Avro record schema"),
    ('{"type": "record", "name": "Interaction", "fields": [{"name": "x", "type": "strin"}]}',
     "not a valid Avro schema"),
    ('{"type": "record", "fields": []}', "not a valid Avro schema"),
    ('{"type": "record", "name": "Interaction", "fields": [{"name": "x", "type": "int", "default": "a"}]}',
     "not a valid Avro schema"),
])
def test_invalid_schemas_are_refused(text: str, says: str) -> None:
    with pytest.raises(SchemaProblem) as info:
        validated_writer(text, V1)
    assert not isinstance(info.value, IncompatibleSchema)
    assert str(info.value).startswith(says)


def test_the_current_schema_is_accepted_and_known() -> None:
    writer = validated_writer(json.dumps(V1), V1)
    assert writer.fingerprint in default_registry().builtin
    assert not new_registry().add(writer)


# ---- the registry ----------------------------------------------------------------------------------------


def test_registry_starts_with_the_versions_kept_in_schemas() -> None:
    registry = new_registry()
    assert registry.builtin == {schema_fingerprint(codec.fastavro.parse_schema(d)) for d in schema_documents().values()}
    assert registry.registered() == []
    assert registry.reader_document == V1


def test_registered_writer_is_known_to_its_registry_only() -> None:
    registry = new_registry()
    raw = encode_avro({**RECORD, "locale": "fr-FR"}, schema=V2)
    with pytest.raises(DecodeError) as before:
        decode(raw, MAX, registry)
    assert before.value.reason == "unknown_schema"
    writer = validated_writer(json.dumps(V2), V1)
    assert registry.add(writer) is True
    assert registry.add(writer) is False
    assert registry.registered() == [writer.fingerprint]
    assert decode(raw, MAX, registry) == RECORD
    # Another registry, and decode() without one, still know only schemas/.
    for other in (new_registry(), None):
        with pytest.raises(DecodeError) as info:
            decode(raw, MAX, other)
        assert info.value.reason == "unknown_schema"


def test_unknown_schema_detail_says_how_to_register() -> None:
    raw = encode_avro(RECORD, schema=V2)
    with pytest.raises(DecodeError) as info:
        decode(raw, MAX)
    assert info.value.detail == (
        f"writer schema {raw[2:10].hex()} is neither kept in schemas/ nor registered; register it with "
        "`cem schemas register FILE.avsc` before publishing records written with it")


def test_unknown_schema_detail_tells_a_refused_registration() -> None:
    registry = new_registry()
    fingerprint = SINGLE_OBJECT_MAGIC + b"\x01" * 8
    registry.refuse(b"\x01" * 8, "records written with it cannot be read with the reader schema: x")
    with pytest.raises(DecodeError) as info:
        decode(fingerprint + b"\x00", MAX, registry)
    assert info.value.detail == ("writer schema 0101010101010101 was registered but refused: records written with "
                                 "it cannot be read with the reader schema: x")


def test_a_later_good_registration_clears_the_refusal() -> None:
    registry = new_registry()
    writer = validated_writer(json.dumps(V2), V1)
    registry.refuse(writer.fingerprint, "bad")
    registry.add(writer)
    assert registry.refusal(writer.fingerprint) is None
    registry.refuse(writer.fingerprint, "bad again")  # a known writer is never refused afterwards
    assert registry.refusal(writer.fingerprint) is None
    assert decode(encode_avro(RECORD, schema=V2), MAX, registry) == RECORD


def test_refusals_kept_are_bounded() -> None:
    registry = new_registry()
    for i in range(codec.MAX_REFUSALS_KEPT + 10):
        registry.refuse(i.to_bytes(8, "little"), "bad")
    assert registry.refusal((0).to_bytes(8, "little")) == "bad"
    assert registry.refusal((codec.MAX_REFUSALS_KEPT + 5).to_bytes(8, "little")) is None


# ---- registration messages -----------------------------------------------------------------------------
def test_registration_message_round_trip() -> None:
    text = json.dumps(V2, indent=2)
    key, value = registration_message(text)
    fingerprint = schema_fingerprint(codec.fastavro.parse_schema(V2))
    assert key == fingerprint.hex().encode()
    assert json.loads(value) == {"fingerprint": fingerprint.hex(), "schema": text}
    assert writer_from_message(key, value, V1).fingerprint == fingerprint
    assert fingerprint_of_key(key) == fingerprint


def test_unknown_message_fields_are_ignored() -> None:
    key, value = registration_message(json.dumps(V2))
    signed = json.dumps({**json.loads(value), "signature": "c2ln"}).encode()
    assert writer_from_message(key, signed, V1).fingerprint.hex().encode() == key


def _message(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


_FP = schema_fingerprint(codec.fastavro.parse_schema(V2)).hex()


@pytest.mark.parametrize(("key", "value", "says"), [
    (_FP.encode(), None, "a tombstone"),
    (_FP.encode(), b"not json", "the value is not JSON"),
    (_FP.encode(), b"[]", "the value is not"),
    (_FP.encode(), _message(fingerprint=_FP), "the value is not"),
    (_FP.encode(), _message(fingerprint=_FP, schema=V2), "the value is not"),  # the schema must be its text
    (_FP.encode(), _message(schema=json.dumps(V2)), "the value is not"),
    (b"0" * 16, _message(fingerprint=_FP, schema=json.dumps(V2)), "the key and the fingerprint field"),
    (None, _message(fingerprint=_FP, schema=json.dumps(V2)), "the key and the fingerprint field"),
    (_FP.encode(), _message(fingerprint="0" * 16, schema=json.dumps(V2)), "the key and the fingerprint field"),
    (_FP.encode(), _message(fingerprint=_FP, schema="{"), "not JSON"),
    (_FP.encode(), _message(fingerprint=_FP, schema=json.dumps(evolve(drop("event_id")))), "records written"),
])
def test_bad_messages_are_refused(key: bytes | None, value: bytes | None, says: str) -> None:
    with pytest.raises(SchemaProblem) as info:
        writer_from_message(key, value, V1)
    assert str(info.value).startswith(says)


@pytest.mark.parametrize(("key", "expected"), [
    (b"0102030405060708", bytes(range(1, 9))), (b"ABCDEF0123456789", bytes.fromhex("abcdef0123456789")),
    (b"01", None), (b"zz" * 8, None), (None, None), (b"\xff" * 16, None),
])
def test_fingerprint_of_key(key: bytes | None, expected: bytes | None) -> None:
    assert fingerprint_of_key(key) == expected


# ---- the feed's handling of messages (the Kafka side is tests/integration/test_schema_registration.py) ---
def _feed() -> SchemaFeed:
    return SchemaFeed(Settings(), new_registry())


def _signed(value: bytes) -> list[tuple[str, bytes]]:
    return signature_headers(Settings().signing_key, value)


def test_feed_skips_a_registration_cem_did_not_sign() -> None:
    feed = _feed()
    key, value = registration_message(json.dumps(V2))
    assert feed.apply(key, value, 0, []) is False
    assert feed.apply(key, value, 0, signature_headers(b"another key", value)) is False
    assert feed.registry.registered() == []


def test_feed_adds_a_good_registration() -> None:
    feed = _feed()
    key, value = registration_message(json.dumps(V2))
    assert feed.apply(key, value, 0, _signed(value)) is True
    assert decode(encode_avro(RECORD, schema=V2), MAX, feed.registry) == RECORD
    assert feed.apply(key, value, 1, _signed(value)) is True  # a repeated registration is harmless
    assert feed.registry.registered() == [bytes.fromhex(key.decode())]


def test_feed_skips_and_remembers_an_incompatible_registration() -> None:
    feed = _feed()
    bad = evolve(drop("event_id"))
    key, value = registration_message(json.dumps(bad))
    assert feed.apply(key, value, 0, _signed(value)) is False
    assert feed.registry.registered() == []
    with pytest.raises(DecodeError) as info:
        decode(encode_avro({k: v for k, v in RECORD.items() if k != "event_id"}, schema=bad), MAX, feed.registry)
    assert info.value.reason == "unknown_schema"
    assert "was registered but refused: records written with it cannot be read" in info.value.detail
    assert "event_id" in info.value.detail


@pytest.mark.parametrize(("key", "value"), [(None, None), (b"k", b"v"), (b"0" * 16, None), (b"0" * 16, b"{}"),
                                            (b"\xff", b"\x00" * 10)])
def test_feed_skips_garbage(key: bytes | None, value: bytes | None) -> None:
    feed = _feed()
    assert feed.apply(key, value, 3, _signed(value) if value is not None else None) is False
    assert feed.registry.registered() == []


@settings(max_examples=200, deadline=None)
@given(st.none() | st.binary(max_size=20), st.none() | st.binary(max_size=300) | st.builds(
    lambda fp, schema: json.dumps({"fingerprint": fp, "schema": schema}).encode(),
    st.text(max_size=20), st.text(max_size=200)))
def test_feed_never_raises(key: bytes | None, value: bytes | None) -> None:
    feed = _feed()
    assert feed.apply(key, value, -1, _signed(value) if value is not None else None) in (True, False)

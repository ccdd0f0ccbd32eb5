"""Messages on cem's own topics: only what cem signed is accepted, and a malformed one has a reason, never an
exception deep in the resolver. Dead letters always fit in a Kafka message."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.internal import (
    SIGNATURE_HEADER,
    ControlRequest,
    InternalMessageError,
    decode_resolve_message,
    encode_batch,
    parse_control,
    sign,
    signature_headers,
    verify,
)
from streams.control import read_control
from streams.deadletters import HEADER_ROOM_BYTES, dead_letter
from tests.unit.factories import NOW_MS, event

KEY = b"test-key"
GOOD_CONTROL: dict[str, Any] = {"control": "forget", "request_id": "r-1", "id_type": "email",
                                "value_key": "ab" * 32, "requested_ms": NOW_MS, "force": False}


def reason_of(value: bytes, headers: Any = None) -> str:
    with pytest.raises(InternalMessageError) as raised:
        if headers is not None:
            verify(KEY, value, headers)
        decode_resolve_message(value)
    return raised.value.reason


# ---- signatures ------------------------------------------------------------------------------------------
def test_a_signed_batch_round_trips() -> None:
    events = [event("e1", NOW_MS, [("email", "a@b.co")]), event("e2", NOW_MS + 1, [("phone", "+14155550101")])]
    payload = encode_batch(events)
    verify(KEY, payload, signature_headers(KEY, payload))
    assert decode_resolve_message(payload) == events


@pytest.mark.parametrize("headers", [
    None, [], [("other", b"x")], [(SIGNATURE_HEADER, b"")], [(SIGNATURE_HEADER, b"0" * 64)],
    {SIGNATURE_HEADER: sign(b"another-key", b"[]")},
])
def test_unsigned_or_wrongly_signed_messages_are_refused(headers: Any) -> None:
    with pytest.raises(InternalMessageError) as raised:
        verify(KEY, b"[]", headers)
    assert raised.value.reason == "bad_signature"


def test_a_signature_does_not_survive_a_change_of_one_byte() -> None:
    payload = encode_batch([event("e1", NOW_MS, [("email", "a@b.co")])])
    headers = signature_headers(KEY, payload)
    altered = payload.replace(b"a@b.co", b"a@b.cx")
    with pytest.raises(InternalMessageError):
        verify(KEY, altered, headers)


# ---- resolver batches ------------------------------------------------------------------------------------
GOOD_ROW = event("e1", NOW_MS, [("email", "a@b.co")]).to_wire()


def with_field(index: int, value: Any) -> bytes:
    row = list(GOOD_ROW)
    row[index] = value
    return orjson.dumps([row])


@pytest.mark.parametrize("value", [
    b"", b"not json", b"42", b'"text"', b"null", b"[1]", b"[[]]", orjson.dumps([GOOD_ROW[:14]]),
    with_field(0, None), with_field(0, ""), with_field(0, 7), with_field(3, "2026-11-16"), with_field(3, 1.5),
    with_field(3, True), with_field(4, []), with_field(4, [["email"]]), with_field(4, [["email", 1]]),
    with_field(4, "email:a@b.co"), with_field(5, None), with_field(6, 3), with_field(9, "9"), with_field(9, True),
    with_field(10, {"k": 1}), with_field(10, []), with_field(11, "0.5"), with_field(12, None),
])
def test_a_malformed_batch_has_a_reason(value: bytes) -> None:
    assert reason_of(value) == "invalid_internal_message"


def test_the_position_of_a_malformed_event_is_named() -> None:
    good = list(GOOD_ROW)
    bad = list(GOOD_ROW)
    bad[3] = "later"
    with pytest.raises(InternalMessageError) as raised:
        decode_resolve_message(orjson.dumps([good, good, bad]))
    assert raised.value.detail.startswith("event 2:")


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=16) | st.dictionaries(st.text(max_size=5), inner),
                    max_leaves=40))
def test_no_json_value_makes_the_decoder_raise_anything_else(value: Any) -> None:
    try:
        decode_resolve_message(json.dumps(value).encode())
    except InternalMessageError as err:
        assert err.reason in {"invalid_internal_message", "invalid_control"}


# ---- control requests ------------------------------------------------------------------------------------
def test_a_good_control_request_is_parsed() -> None:
    assert parse_control(GOOD_CONTROL) == ControlRequest("forget", "r-1", "email", "ab" * 32, NOW_MS, False)


@pytest.mark.parametrize("change", [
    {"control": None}, {"control": "drop_everything"}, {"request_id": None}, {"request_id": ""},
    {"request_id": "x" * 129}, {"id_type": 3}, {"value_key": None}, {"requested_ms": "now"},
    {"requested_ms": -1}, {"requested_ms": True}, {"force": "yes"}, {"value": "jane@example.com"},
    {"value_key": "ab" * 31}, {"value_key": "AB" * 32}, {"value_key": "zz" * 32},
])
def test_a_malformed_control_request_has_a_reason(change: dict[str, Any]) -> None:
    message = {**GOOD_CONTROL, **change}
    message = {k: v for k, v in message.items() if v is not None}
    with pytest.raises(InternalMessageError) as raised:
        parse_control(message)
    assert raised.value.reason == "invalid_control"


def test_the_reported_control_message_is_refused_with_a_reason_not_a_key_error() -> None:
    value = orjson.dumps({"control": "forget"})
    with pytest.raises(InternalMessageError) as raised:
        read_control(KEY, value, signature_headers(KEY, value))
    assert raised.value.reason == "invalid_control"
    with pytest.raises(InternalMessageError) as unsigned:
        read_control(KEY, value, [])
    assert unsigned.value.reason == "bad_signature"


def test_the_control_schema_and_the_parser_agree() -> None:
    """schemas/control.v1.avsc documents the request; every field it names is one the parser reads, and a
    record valid for the schema is accepted."""
    schema = json.loads((Path(__file__).parents[2] / "schemas" / "control.v1.avsc").read_text())
    assert {f["name"] for f in schema["fields"]} == set(GOOD_CONTROL)
    assert fastavro.validate(GOOD_CONTROL, fastavro.parse_schema(schema))
    assert parse_control(GOOD_CONTROL).as_dict() == GOOD_CONTROL


# ---- dead letters always fit -----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 10_000, 895_000, 899_999, 900_000, 1_000_000, 1_048_576, 2_000_000])
def test_a_dead_letter_fits_whatever_the_size_of_the_record(size: int) -> None:
    limit = 900_000
    original = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    letter = dead_letter("cem.raw.web/0/7", original, "too_large", "d" * 5_000, NOW_MS, limit)
    header_bytes = sum(len(k) + len(v) for k, v in letter.headers)
    assert len(letter.value) + len(letter.key) + header_bytes <= limit
    headers = dict(letter.headers)
    if len(original) + HEADER_ROOM_BYTES + len(letter.key) <= limit:
        assert letter.value == original and "cem.truncated" not in headers
    else:
        assert original.startswith(letter.value) and len(letter.value) < len(original)
        assert headers["cem.truncated"] == b"true"
        assert headers["cem.original_bytes"] == str(len(original)).encode()
        assert headers["cem.original_sha256"] == hashlib.sha256(original).hexdigest().encode()
    assert headers["cem.reason"] == b"too_large" and headers["cem.source"] == b"cem.raw.web/0/7"

"""schemas.codec: Avro single-object framing, CRC-64-AVRO, JSON, interop with the reference implementation
(Apache Avro's `avro` package), schema evolution, the schema registry and the dead-letter reasons of decode()."""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import fastavro
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas.codec as codec
from schemas.codec import (
    SINGLE_OBJECT_MAGIC,
    DecodeError,
    crc64_avro,
    decode,
    encode_avro,
    encode_json,
    schema_fingerprint,
    schema_versions,
)

V1_PATH = Path(codec.__file__).parent / "interaction.v1.avsc"
OCCURRED_MS = 1_794_823_200_123  # 2026-11-16T10:00:00.123Z
MAX = 1_048_576

FULL_RECORD: dict[str, Any] = {
    "event_id": "evt-ü-1",
    "channel": "chat",
    "type": "chat_message",
    "occurred_at": OCCURRED_MS,
    "identifiers": {"email": "zoë@example.org", "phone": "+44 20 7946 0018"},
    "text": "Ça ne marche pas 😡 — 注文がまだ届きません",
    "issue_ref": "CASE-7",
    "survey": {"kind": "nps", "score": 3},
    "properties": {"order_total": "12.50", "emoji": "🎉", "": "empty key"},
}
NULLS_RECORD: dict[str, Any] = {
    "event_id": "e2",
    "channel": "web",
    "type": "page_view",
    "occurred_at": 0,
    "identifiers": {},
    "text": None,
    "issue_ref": None,
    "survey": None,
    "properties": {},
}
RECORDS = [FULL_RECORD, NULLS_RECORD]


def _ms(value: Any) -> int:
    """fastavro and Apache Avro return timestamp-millis as an aware datetime; decode() keeps the int."""
    if isinstance(value, datetime):
        assert value.tzinfo is not None
        return (value - datetime(1970, 1, 1, tzinfo=UTC)) // _ONE_MS
    assert isinstance(value, int)
    return value


_ONE_MS = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)


def _same(decoded: dict[str, Any], expected: dict[str, Any]) -> None:
    assert _ms(decoded["occurred_at"]) == expected["occurred_at"]
    assert {k: v for k, v in decoded.items() if k != "occurred_at"} == {
        k: v for k, v in expected.items() if k != "occurred_at"
    }


def _header() -> bytes:
    return SINGLE_OBJECT_MAGIC + schema_fingerprint(schema_versions()[1])


# ---- fingerprint -----------------------------------------------------------------------------------------
def test_crc64_avro_spec_vector_for_int() -> None:
    # Avro specification: fingerprint64 of the canonical form "int".
    assert crc64_avro(b'"int"') == 0x7275D51A3F395C8F
    # fastavro reports the same fingerprint as the hex of its little-endian bytes.
    assert fastavro_fingerprint('"int"', "CRC-64-AVRO") == (0x7275D51A3F395C8F).to_bytes(8, "little").hex()


def test_crc64_avro_of_nothing_is_the_empty_constant() -> None:
    assert crc64_avro(b"") == 0xC15D213AA4D7A795


@pytest.mark.parametrize(
    "canonical",
    ['"null"', '"boolean"', '"int"', '"long"', '"float"', '"double"', '"bytes"', '"string"',
     '{"type":"fixed","name":"md5","size":16}', '{"type":"array","items":"long"}'],
)
def test_crc64_avro_agrees_with_fastavro(canonical: str) -> None:
    ours = crc64_avro(canonical.encode()).to_bytes(8, "little").hex()
    assert ours == fastavro_fingerprint(canonical, "CRC-64-AVRO")


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_crc64_avro_agrees_with_fastavro_on_any_text(text: str) -> None:
    assert crc64_avro(text.encode()).to_bytes(8, "little").hex() == fastavro_fingerprint(text, "CRC-64-AVRO")


def test_schema_fingerprint_is_little_endian_crc_of_canonical_form() -> None:
    schema = schema_versions()[1]
    canonical = to_parsing_canonical_form(schema)
    assert schema_fingerprint(schema).hex() == fastavro_fingerprint(canonical, "CRC-64-AVRO")
    assert schema_fingerprint(schema) == crc64_avro(canonical.encode()).to_bytes(8, "little")
    # The raw .avsc (docs, whitespace) canonicalises to the same thing as the parsed schema.
    raw = json.loads(V1_PATH.read_text())
    assert to_parsing_canonical_form(raw) == canonical


# ---- framing and round trips -----------------------------------------------------------------------------
@pytest.mark.parametrize("record", RECORDS, ids=["full", "nulls"])
def test_avro_framing_bytes(record: dict[str, Any]) -> None:
    raw = encode_avro(record)
    assert raw[:2] == b"\xc3\x01"
    assert raw[2:10] == schema_fingerprint(schema_versions()[1])
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema_versions()[1], record)
    assert raw[10:] == body.getvalue()


@pytest.mark.parametrize("record", RECORDS, ids=["full", "nulls"])
def test_avro_round_trip(record: dict[str, Any]) -> None:
    _same(decode(encode_avro(record), MAX), record)


def test_avro_timestamp_millis_decodes_to_exact_epoch_milliseconds() -> None:
    # Decoding keeps timestamp-millis as the long on the wire, so absurd values get a precise reason later.
    decoded = decode(encode_avro(FULL_RECORD), MAX)
    expected = (datetime(2026, 11, 16, 10, 0, 0, 123000, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // \
        timedelta(milliseconds=1)
    assert decoded["occurred_at"] == expected


def test_avro_defaults_fill_missing_optional_fields() -> None:
    minimal = {k: FULL_RECORD[k] for k in ("event_id", "channel", "type", "occurred_at", "identifiers")}
    decoded = decode(encode_avro(minimal), MAX)
    assert (decoded["text"], decoded["issue_ref"], decoded["survey"], decoded["properties"]) == (None, None, None, {})


@pytest.mark.parametrize("record", RECORDS, ids=["full", "nulls"])
def test_json_round_trip(record: dict[str, Any]) -> None:
    raw = encode_json(record)
    assert raw[:1] == b"{"
    assert decode(raw, MAX) == record
    assert decode(b"  \n" + raw, MAX) == record  # leading whitespace is still JSON


def test_json_array_is_decoded_and_left_to_the_validator() -> None:
    assert decode(b"[1, 2]", MAX) == [1, 2]


# ---- interop with Apache Avro's Python implementation (the reference) ---------------------------------
def _reference_schema() -> Any:
    return avro.schema.parse(V1_PATH.read_text())


def _reference_read(body: bytes) -> dict[str, Any]:
    schema = _reference_schema()
    buffer = io.BytesIO(body)
    datum = avro.io.DatumReader(schema, schema).read(avro.io.BinaryDecoder(buffer))
    assert buffer.tell() == len(body), "the reference reader must consume the whole body"
    return datum


def _reference_write(record: dict[str, Any]) -> bytes:
    """Apache Avro writes timestamp-millis from a datetime (exactly: it counts integer microseconds)."""
    datum = {**record, "occurred_at": datetime(1970, 1, 1, tzinfo=UTC) + _ONE_MS * record["occurred_at"]}
    buffer = io.BytesIO()
    avro.io.DatumWriter(_reference_schema()).write(datum, avro.io.BinaryEncoder(buffer))
    return buffer.getvalue()


@pytest.mark.parametrize("record", RECORDS, ids=["full", "nulls"])
def test_reference_reads_what_we_write(record: dict[str, Any]) -> None:
    _same(_reference_read(encode_avro(record)[10:]), record)


@pytest.mark.parametrize("record", RECORDS, ids=["full", "nulls"])
def test_we_read_what_the_reference_writes(record: dict[str, Any]) -> None:
    body = _reference_write(record)
    _same(decode(_header() + body, MAX), record)
    # Byte-identical bodies: both implementations produce the canonical binary encoding.
    assert body == encode_avro(record)[10:]


_text = st.text(max_size=30)
_maps = st.dictionaries(_text, _text, max_size=4)
_interop_records = st.fixed_dictionaries(
    {
        "event_id": _text,
        "channel": _text,
        "type": _text,
        # Within datetime's range: fastavro turns timestamp-millis into a datetime (see test_validate for outside).
        "occurred_at": st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999),
        "identifiers": _maps,
        "text": st.none() | _text,
        "issue_ref": st.none() | _text,
        "survey": st.none() | st.fixed_dictionaries(
            {"kind": _text, "score": st.integers(min_value=-(2**31), max_value=2**31 - 1)}
        ),
        "properties": _maps,
    }
)


@settings(max_examples=60, deadline=None)
@given(_interop_records)
def test_interop_both_directions_for_random_records(record: dict[str, Any]) -> None:
    ours = encode_avro(record)
    _same(_reference_read(ours[10:]), record)
    theirs = _reference_write(record)
    assert theirs == ours[10:]
    _same(decode(_header() + theirs, MAX), record)


# ---- schema evolution --------------------------------------------------------------------------------
def _clear_caches() -> None:
    codec.schema_documents.cache_clear()
    codec.schema_versions.cache_clear()
    codec.default_registry.cache_clear()


@pytest.fixture
def evolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """schemas/ with v1 and a v2 that adds an optional `locale` with a default."""
    v1 = json.loads(V1_PATH.read_text())
    v2 = copy.deepcopy(v1)
    v2["doc"] = "Version 2: adds locale."
    v2["fields"].append({"name": "locale", "type": ["null", "string"], "default": None})
    (tmp_path / "interaction.v1.avsc").write_text(json.dumps(v1))
    (tmp_path / "interaction.v2.avsc").write_text(json.dumps(v2))
    with monkeypatch.context() as patch:
        patch.setattr(codec, "SCHEMA_DIR", tmp_path)
        _clear_caches()
        try:
            yield
        finally:
            _clear_caches()
    _clear_caches()


def test_schema_evolution_v1_bytes_read_with_v2_reader(evolved: None) -> None:
    assert sorted(schema_versions()) == [1, 2]
    assert codec.current_version() == 2
    raw = encode_avro(FULL_RECORD, version=1)
    assert raw[2:10] == schema_fingerprint(schema_versions()[1])
    decoded = decode(raw, MAX)
    assert decoded["locale"] is None
    _same({k: v for k, v in decoded.items() if k != "locale"}, FULL_RECORD)


def test_schema_evolution_v2_bytes(evolved: None) -> None:
    raw = encode_avro({**FULL_RECORD, "locale": "de-DE"})
    assert raw[2:10] == schema_fingerprint(schema_versions()[2]) != schema_fingerprint(schema_versions()[1])
    decoded = decode(raw, MAX)
    assert decoded["locale"] == "de-DE"
    _same({k: v for k, v in decoded.items() if k != "locale"}, FULL_RECORD)
    # Defaulted field left out by the producer
    assert decode(encode_avro(NULLS_RECORD), MAX)["locale"] is None


def test_schema_evolution_caches_restored_after_fixture() -> None:
    # Runs in the normal layout (whatever order the tests ran in): only v1 is known.
    assert codec.SCHEMA_DIR == V1_PATH.parent
    assert 1 in schema_versions()
    assert "locale" not in decode(encode_avro(FULL_RECORD, version=1), MAX)


# ---- decode errors -------------------------------------------------------------------------------------
def _reason(raw: bytes | None, max_bytes: int = MAX) -> str:
    with pytest.raises(DecodeError) as info:
        decode(raw, max_bytes)
    return info.value.reason


def test_empty_record() -> None:
    assert _reason(b"") == "empty_record"
    assert _reason(None) == "empty_record"


def test_too_large_boundary() -> None:
    raw = encode_json({"event_id": "x" * 50})
    assert _reason(raw, len(raw) - 1) == "too_large"
    assert decode(raw, len(raw)) == {"event_id": "x" * 50}


@pytest.mark.parametrize("raw", [b"hello", b"\x00\x01\x02", b'"a json string"', b"123", b"\xc3", b"\x01\xc3"])
def test_unknown_encoding(raw: bytes) -> None:
    assert _reason(raw) == "unknown_encoding"


@pytest.mark.parametrize("raw", [b'{"event_id": "x1", "channel": "web",', b"{'a': 1}", b'{"a": NaN}', b"[1,]"])
def test_malformed_json(raw: bytes) -> None:
    assert _reason(raw) == "malformed_json"


@pytest.mark.parametrize("raw", [b'{"event_id": "\xff\xfe"}', b'{"a": "\xed\xa0\x80"}', b'{"\xc3": 1}'])
def test_invalid_utf8_json(raw: bytes) -> None:
    assert _reason(raw) == "invalid_utf8"


@pytest.mark.parametrize("raw", [b"[" * 2000 + b"]" * 2000, b'{"a":' * 2000 + b"1" + b"}" * 2000])
def test_too_deeply_nested_json(raw: bytes) -> None:
    assert _reason(raw) == "too_deeply_nested"


def test_unknown_schema() -> None:
    body = encode_avro(FULL_RECORD)[10:]
    assert _reason(SINGLE_OBJECT_MAGIC + b"\x00" * 8 + body) == "unknown_schema"
    # The fingerprint's bytes in big-endian order are not ours either.
    big_endian = crc64_avro(to_parsing_canonical_form(schema_versions()[1]).encode()).to_bytes(8, "big")
    assert _reason(SINGLE_OBJECT_MAGIC + big_endian + body) == "unknown_schema"


@pytest.mark.parametrize("cut", [1, 3, 10])
def test_malformed_avro_truncated(cut: int) -> None:
    assert _reason(encode_avro(FULL_RECORD)[:-cut]) == "malformed_avro"


def test_malformed_avro_header_only_and_trailing_bytes() -> None:
    assert _reason(_header()) == "malformed_avro"
    with pytest.raises(DecodeError) as info:
        decode(encode_avro(FULL_RECORD) + b"\x00\x00", MAX)
    assert info.value.reason == "malformed_avro"
    assert "2 trailing bytes" in info.value.detail


def test_avro_invalid_utf8_in_string() -> None:
    body = bytearray(encode_avro({**NULLS_RECORD, "event_id": "abc"})[10:])
    assert body[1:4] == b"abc"
    body[1:4] = b"\xff\xfe\xfd"
    assert _reason(_header() + bytes(body)) == "invalid_utf8"


def test_decode_error_carries_reason_and_detail() -> None:
    error = DecodeError("too_large", "3 bytes > 2")
    assert (error.reason, error.detail, str(error)) == ("too_large", "3 bytes > 2", "too_large: 3 bytes > 2")


# ---- byte order marks ----------------------------------------------------------------------------------
BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("record", RECORDS, ids=["full", "nulls"])
@pytest.mark.parametrize("space", [b"", b" ", b"\n", b"\r\n", b"\t \n  "], ids=["none", "space", "lf", "crlf", "mix"])
def test_utf8_bom_before_json_is_accepted(record: dict[str, Any], space: bytes) -> None:
    assert decode(BOM + space + encode_json(record), MAX) == record


def test_utf8_bom_before_a_json_array_is_left_to_the_validator() -> None:
    assert decode(BOM + b"[1, 2]", MAX) == [1, 2]


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=10), st.text(max_size=20) | st.integers(-(2**63), 2**63 - 1) | st.none(),
                       max_size=5))
def test_utf8_bom_changes_nothing_for_any_json_object(obj: dict[str, Any]) -> None:
    raw = encode_json(obj)
    assert decode(BOM + raw, MAX) == decode(raw, MAX) == obj


@pytest.mark.parametrize("raw", [BOM, BOM + b"  ", BOM + b"hello", BOM + BOM + b"{}", BOM + b"\xc3\x01" + b"\x00" * 9])
def test_utf8_bom_before_anything_but_json_is_unknown_encoding(raw: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode(raw, MAX)
    assert info.value.reason == "unknown_encoding"
    assert "byte order mark" in info.value.detail


@pytest.mark.parametrize(("raw", "reason"), [
    (BOM + b'{"event_id": "\xff"}', "invalid_utf8"),
    (BOM + b'{"event_id": ', "malformed_json"),
    (BOM + b"[" * 2000 + b"]" * 2000, "too_deeply_nested"),
])
def test_utf8_bom_then_the_usual_json_reasons(raw: bytes, reason: str) -> None:
    assert _reason(raw) == reason


def test_utf8_bom_counts_towards_the_size_limit() -> None:
    raw = BOM + encode_json({"event_id": "x"})
    assert _reason(raw, len(raw) - 1) == "too_large"
    assert decode(raw, len(raw)) == {"event_id": "x"}


_TEXT = '{"event_id": "e-ü", "type": "page_view"}'


@pytest.mark.parametrize(("raw", "named"), [
    (_TEXT.encode("utf-16"), "UTF-16LE (byte order mark FF FE)"),  # Python writes a little-endian mark
    (b"\xfe\xff" + _TEXT.encode("utf-16-be"), "UTF-16BE (byte order mark FE FF)"),
    (b"\xff\xfe" + _TEXT.encode("utf-16-le"), "UTF-16LE (byte order mark FF FE)"),
    (_TEXT.encode("utf-32"), "UTF-32LE (byte order mark FF FE 00 00)"),
    (b"\x00\x00\xfe\xff" + _TEXT.encode("utf-32-be"), "UTF-32BE (byte order mark 00 00 FE FF)"),
    (_TEXT.encode("utf-16-le"), "UTF-16LE"),
    (_TEXT.encode("utf-16-be"), "UTF-16BE"),
    (_TEXT.encode("utf-32-le"), "UTF-32LE"),
    (_TEXT.encode("utf-32-be"), "UTF-32BE"),
    ((" \n" + _TEXT).encode("utf-16-le"), "UTF-16LE"),
    (("  " + _TEXT).encode("utf-16-be"), "UTF-16BE"),
    ("[1]".encode("utf-16-le"), "UTF-16LE"),
])
def test_wide_unicode_json_is_unknown_encoding_naming_it(raw: bytes, named: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(raw, MAX)
    assert info.value.reason == "unknown_encoding"
    assert info.value.detail == f"JSON must be UTF-8; this looks like {named}"


@pytest.mark.parametrize("raw", [b"\x00\x01\x02", b"\x01\x00", b"\x00\x00\x00\x01", b"A\x00"])
def test_binary_with_nul_bytes_is_not_called_utf16(raw: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode(raw, MAX)
    assert info.value.reason == "unknown_encoding"
    assert "UTF-" not in info.value.detail

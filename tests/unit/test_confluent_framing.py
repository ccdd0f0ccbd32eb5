"""Confluent framing (00 + 4-byte big-endian schema id + Avro body) with a schema registry configured: decoding
with the writer the registry gave for the id, the verdicts on the registry's answers (schemas.confluent.judge),
and the framing refused with a clear reason when no registry is configured."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from cem.domain.reasons import Reason
from schemas.codec import (
    DecodeError,
    SchemaNotFetched,
    confluent_ids,
    decode,
    encode_confluent,
    new_registry,
    schema_documents,
)
from schemas.confluent import RegistryUnavailable, judge, redacted

V1: dict[str, Any] = schema_documents()[max(schema_documents())]
RECORD = {"event_id": "e-1", "channel": "web", "type": "page_view", "occurred_at": 1_794_823_200_123,
          "identifiers": {"anonymous_id": "a-1"}}
MAX = 1_000_000


def with_locale() -> dict[str, Any]:
    schema = copy.deepcopy(V1)
    schema["fields"].append({"name": "locale", "type": ["null", "string"], "default": None})
    return schema


def registry_with(schema_id: int, document: Any) -> Any:
    registry = new_registry()
    registry.confluent_enabled = True
    registry.add_confluent(schema_id, judge(schema_id, 200, {"schema": json.dumps(document)},
                                            registry.reader_document, "http://registry"), now=0.0)
    return registry


@pytest.mark.parametrize("schema_id", [1, 255, 256, 65_536, 2**31 - 1, 2**32 - 1])
def test_a_record_is_decoded_with_the_writer_of_its_id(schema_id: int) -> None:
    raw = encode_confluent({**RECORD, "locale": "de-DE"}, schema_id, with_locale())
    assert raw[:5] == b"\x00" + schema_id.to_bytes(4, "big")
    decoded = decode(raw, MAX, registry_with(schema_id, with_locale()))
    assert decoded["event_id"] == "e-1" and "locale" not in decoded  # resolved to the reader: the extra field goes
    assert decode(encode_confluent(RECORD, schema_id, V1), MAX, registry_with(schema_id, V1))["event_id"] == "e-1"


def test_an_id_not_looked_up_yet_is_not_a_verdict_on_the_record() -> None:
    registry = registry_with(7, V1)
    with pytest.raises(SchemaNotFetched) as caught:
        decode(encode_confluent(RECORD, 8, V1), MAX, registry)
    assert caught.value.schema_id == 8


def test_an_id_the_registry_does_not_know_is_dead_lettered_with_the_reason() -> None:
    registry = new_registry()
    registry.confluent_enabled = True
    registry.add_confluent(9, judge(9, 404, None, registry.reader_document, "http://registry:8081"), now=0.0)
    with pytest.raises(DecodeError) as caught:
        decode(encode_confluent(RECORD, 9, V1), MAX, registry)
    assert caught.value.reason is Reason.UNKNOWN_SCHEMA
    assert caught.value.detail == ("schema id 9 is unknown to the schema registry at http://registry:8081: register "
                                   "the writer schema there before publishing records that name it")


def test_a_writer_the_reader_cannot_read_and_a_schema_that_is_not_avro_are_refused() -> None:
    incompatible = copy.deepcopy(V1)
    incompatible["fields"] = [f for f in incompatible["fields"] if f["name"] != "identifiers"]
    verdict = judge(3, 200, {"schema": json.dumps(incompatible)}, V1, "http://r")
    assert isinstance(verdict, str) and verdict.startswith("schema id 3 of the schema registry at http://r is refused")
    assert "identifiers" in verdict
    assert judge(4, 200, {"schema": "{}", "schemaType": "PROTOBUF"}, V1, "http://r") == \
        "schema id 4 is a PROTOBUF schema, not Avro"


@pytest.mark.parametrize("status,body", [(500, None), (503, None), (401, None), (200, {"unexpected": 1}),
                                         (200, None), (302, None)])
def test_an_answer_that_says_nothing_about_the_id_is_an_outage(status: int, body: Any) -> None:
    with pytest.raises(RegistryUnavailable):
        judge(5, status, body, V1, "http://r")


def test_framing_without_a_registry_is_refused_with_what_to_set() -> None:
    raw = encode_confluent(RECORD, 12, V1)
    for registry in (None, new_registry()):  # a registry object with Confluent framing off
        with pytest.raises(DecodeError) as caught:
            decode(raw, MAX, registry)
        assert caught.value.reason is Reason.UNKNOWN_ENCODING
        assert "schema id 12" in caught.value.detail and "CEM_SCHEMA_REGISTRY_URL" in caught.value.detail


@pytest.mark.parametrize("raw", [b"\x00", b"\x00\x00\x00\x00\x01"])
def test_a_frame_without_a_body_is_malformed(raw: bytes) -> None:
    registry = registry_with(1, V1)
    with pytest.raises(DecodeError) as caught:
        decode(raw, MAX, registry)
    assert caught.value.reason is Reason.MALFORMED_AVRO


def test_trailing_and_truncated_bodies_are_malformed() -> None:
    registry = registry_with(1, V1)
    raw = encode_confluent(RECORD, 1, V1)
    for bad in (raw + b"\x00", raw[:-3]):
        with pytest.raises(DecodeError) as caught:
            decode(bad, MAX, registry)
        assert caught.value.reason is Reason.MALFORMED_AVRO


def test_ids_to_look_up_and_when_a_refused_one_is_looked_up_again() -> None:
    registry = registry_with(1, V1)
    registry.add_confluent(2, "unknown", now=100.0)
    values: list[bytes | None] = [encode_confluent(RECORD, i, V1) for i in (1, 2, 3)] + [b'{"a": 1}', None, b"\x00"]
    assert confluent_ids(values) == {1, 2, 3}
    assert registry.unresolved_ids({1, 2, 3}, now=130.0, recheck_seconds=60.0) == {3}
    assert registry.unresolved_ids({1, 2, 3}, now=161.0, recheck_seconds=60.0) == {2, 3}


def test_the_url_is_shown_without_its_credentials() -> None:
    assert redacted("https://user:s3cret@registry.example:8443/apis/ccompat/v7/") == \
        "https://registry.example:8443/apis/ccompat/v7"

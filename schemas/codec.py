"""Wire codec for channel records: Avro single-object encoding or JSON, told apart by the first bytes.

Avro framing (README "Avro framing"): bytes C3 01, the 8-byte little-endian CRC-64-AVRO fingerprint of the
writer schema's canonical form, then the Avro binary body. The fingerprint names the writer schema without a
registry, so every version kept in schemas/ stays readable and producers can move to a newer version at
their own pace.
"""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import orjson
from fastavro.schema import to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).parent
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
_JSON_STARTS = (b"{", b"[")
_EMPTY = 0xC15D213AA4D7A795


class DecodeError(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def crc64_avro(data: bytes) -> int:
    """The Rabin fingerprint from the Avro specification (CRC-64-AVRO)."""
    fp = _EMPTY
    table = _fp_table()
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@cache
def _fp_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


def schema_fingerprint(parsed: Any) -> bytes:
    return crc64_avro(to_parsing_canonical_form(parsed).encode()).to_bytes(8, "little")


@cache
def schema_versions() -> dict[int, Any]:
    """Every Interaction schema version kept in schemas/, parsed: {1: ..., 2: ...}."""
    versions = {}
    for path in sorted(SCHEMA_DIR.glob("interaction.v*.avsc")):
        version = int(path.name.split(".v")[1].split(".")[0])
        versions[version] = fastavro.parse_schema(json.loads(path.read_text()))
    return versions


def current_version() -> int:
    return max(schema_versions())


@cache
def _writers_by_fingerprint() -> dict[bytes, Any]:
    """Decoding reads timestamps as plain longs: validation then judges absurd values with a precise reason,
    where fastavro's datetime conversion would fail on years outside 1..9999. The canonical form (and so the
    fingerprint) ignores logical types, so the plain schema names the same writer."""
    return {schema_fingerprint(s): _without_logical_types(s) for s in schema_versions().values()}


def _without_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        plain = {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
        return plain
    if isinstance(schema, list):
        return [_without_logical_types(item) for item in schema]
    return schema


def encode_avro(record: dict[str, Any], version: int | None = None) -> bytes:
    schema = schema_versions()[version or current_version()]
    body = io.BytesIO()
    body.write(SINGLE_OBJECT_MAGIC)
    body.write(schema_fingerprint(schema))
    fastavro.schemaless_writer(body, schema, record)
    return body.getvalue()


def encode_json(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)


def decode(raw: bytes | None, max_bytes: int) -> Any:
    """Decode one record to a dict. Raises DecodeError with a dead-letter reason."""
    if not raw:
        return _fail("empty_record")
    if len(raw) > max_bytes:
        return _fail("too_large", f"{len(raw)} bytes > {max_bytes}")
    if raw[:2] == SINGLE_OBJECT_MAGIC:
        return _decode_avro(raw)
    if raw[:1] in _JSON_STARTS or raw.lstrip()[:1] in _JSON_STARTS:
        return _decode_json(raw)
    return _fail("unknown_encoding", "neither JSON nor Avro single-object encoding (C3 01)")


def _decode_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        message = str(exc)
        if "UTF-8" in message or "surrogate" in message:
            return _fail("invalid_utf8", message[:200])
        if "recursion" in message.lower() or "depth" in message.lower():
            return _fail("too_deeply_nested", message[:200])
        return _fail("malformed_json", message[:200])


def _decode_avro(raw: bytes) -> Any:
    writer = _writers_by_fingerprint().get(raw[2:10])
    if writer is None:
        return _fail("unknown_schema", f"writer fingerprint {raw[2:10].hex()} is not in schemas/")
    reader = _reader_schema()
    buffer = io.BytesIO(raw)
    buffer.seek(10)
    try:
        # A record written with the current schema needs no schema resolution: passing no reader schema skips
        # fastavro's per-call deep comparison of the two schemas and its resolving read (about 3 us a record).
        record = fastavro.schemaless_reader(buffer, writer, None if writer is reader else reader)
    except UnicodeDecodeError as exc:
        return _fail("invalid_utf8", str(exc)[:200])
    except Exception as exc:  # fastavro raises many kinds on truncated or corrupt bodies
        return _fail("malformed_avro", f"{type(exc).__name__}: {str(exc)[:180]}")
    if buffer.tell() != len(raw):
        return _fail("malformed_avro", f"{len(raw) - buffer.tell()} trailing bytes after the record")
    return record


@cache
def _reader_schema() -> Any:
    """The current schema, as the very object _writers_by_fingerprint() holds for it, so _decode_avro can tell
    a record written with the current schema by identity."""
    current = schema_versions()[current_version()]
    writer = _writers_by_fingerprint().get(schema_fingerprint(current))
    return writer if writer is not None else _without_logical_types(current)


def _fail(reason: str, detail: str = "") -> Any:
    raise DecodeError(reason, detail)

"""Wire codec for channel records: Avro single-object encoding or JSON, told apart by the first bytes.

Avro framing (README "Encodings"): bytes C3 01, the 8-byte little-endian CRC-64-AVRO fingerprint of the
writer schema's canonical form, then the Avro binary body. The fingerprint names the writer schema: one of the
versions kept in schemas/, or one registered at run time on the `<prefix>.schemas` topic (schemas.evolution
checks it, streams.schema_feed adds it to the worker's SchemaRegistry), so producers can move to a newer
schema at their own pace, even before the pipeline ships it.

With a schema registry configured (CEM_SCHEMA_REGISTRY_URL), records in Confluent framing are accepted as well:
byte 00, the 4-byte big-endian schema id, then the Avro binary body. The writer schema of an id is fetched from
the registry before its batch is decoded (schemas.confluent) and kept here; decoding itself never waits on the
network.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import orjson
from fastavro.schema import to_parsing_canonical_form

from cem.domain.reasons import Reason

SCHEMA_DIR = Path(__file__).parent
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
CONFLUENT_HEADER_BYTES = 5  # 00 and a 4-byte big-endian schema id
_JSON_STARTS = (b"{", b"[")
UTF8_BOM = b"\xef\xbb\xbf"
_JSON_FIRST_BYTES = frozenset(b"{[ \t\r\n")
# Byte order marks of the wide Unicode encodings, longest first (the UTF-32LE mark starts with UTF-16LE's).
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"), (b"\xff\xfe", "UTF-16LE"),
              (b"\xfe\xff", "UTF-16BE"))
MAX_REFUSALS_KEPT = 1_000
_EMPTY = 0xC15D213AA4D7A795


class SchemaNotFetched(Exception):
    """A record in Confluent framing whose schema id has not been looked up in the registry yet: a fault of the
    caller (ids are fetched before a batch is decoded), never a verdict on the record."""

    def __init__(self, schema_id: int) -> None:
        super().__init__(f"schema id {schema_id} has not been fetched from the schema registry")
        self.schema_id = schema_id


class DecodeError(Exception):
    def __init__(self, reason: Reason, detail: str = "") -> None:
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
def schema_documents() -> dict[int, Any]:
    """Every Interaction schema version kept in schemas/, as the JSON documents of its files: {1: ..., 2: ...}."""
    documents = {}
    for path in SCHEMA_DIR.glob("interaction.v*.avsc"):
        version = int(path.name.split(".v")[1].split(".")[0])
        documents[version] = json.loads(path.read_text())
    return dict(sorted(documents.items()))


@cache
def schema_versions() -> dict[int, Any]:
    """Every Interaction schema version kept in schemas/, parsed by fastavro: {1: ..., 2: ...}."""
    return {version: fastavro.parse_schema(document) for version, document in schema_documents().items()}


def current_version() -> int:
    return max(schema_versions())


def plain_schema(parsed: Any) -> Any:
    """The form decoding reads with: timestamps stay plain longs, so validation judges absurd values with a
    precise reason where fastavro's datetime conversion would fail on years outside 1..9999. The canonical form
    (and so the fingerprint) ignores logical types, so the plain schema names the same writer."""
    return _without_logical_types(parsed)


def _without_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        plain = {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
        return plain
    if isinstance(schema, list):
        return [_without_logical_types(item) for item in schema]
    return schema


@dataclass(frozen=True)
class Writer:
    """A writer schema the decoder accepts: its fingerprint, its plain parsed form and the JSON document."""

    fingerprint: bytes
    plain: Any
    document: Any


class SchemaRegistry:
    """The writer schemas a decoder accepts, by fingerprint: the versions kept in schemas/ plus those registered
    at run time. Writes copy the map under a lock and swap it in; lookups read whichever map is current without
    locking, so the schema feed may add writers from any thread while records are decoded."""

    def __init__(self, documents: dict[int, Any]) -> None:
        builtin = {}
        for document in documents.values():
            parsed = fastavro.parse_schema(document)
            builtin[schema_fingerprint(parsed)] = Writer(schema_fingerprint(parsed), plain_schema(parsed), document)
        self.reader_document = documents[max(documents)]
        self.reader_fingerprint = schema_fingerprint(fastavro.parse_schema(self.reader_document))
        # The very object the reader's own Writer holds, so decoding tells a current-version record by identity.
        self.reader = builtin[self.reader_fingerprint].plain
        self.builtin = frozenset(builtin)
        self._writers: dict[bytes, Writer] = builtin
        self._refused: dict[bytes, str] = {}
        self._lock = threading.Lock()
        # Confluent framing: off unless a registry is configured; writers by schema id, and why an id is unusable
        # (with the time it was looked up, so that it is looked up again later).
        self.confluent_enabled = False
        self._confluent: dict[int, Writer] = {}
        self._confluent_refused: dict[int, tuple[str, float]] = {}

    def writer(self, fingerprint: bytes) -> Writer | None:
        return self._writers.get(fingerprint)

    def add(self, writer: Writer) -> bool:
        """Accept records written with `writer` (already checked: schemas.evolution). False if already known."""
        with self._lock:
            if writer.fingerprint in self._writers:
                return False
            self._writers = {**self._writers, writer.fingerprint: writer}
            self._refused = {k: v for k, v in self._refused.items() if k != writer.fingerprint}
            return True

    def refuse(self, fingerprint: bytes, reason: str) -> None:
        """Remember why a registered writer was refused, for the detail of its records' dead letters."""
        with self._lock:
            if fingerprint not in self._writers and len(self._refused) < MAX_REFUSALS_KEPT:
                self._refused = {**self._refused, fingerprint: reason}

    def refusal(self, fingerprint: bytes) -> str | None:
        return self._refused.get(fingerprint)

    def confluent_writer(self, schema_id: int) -> Writer | str | None:
        """The writer of a registry schema id, why it cannot be used, or None when it was never looked up."""
        found = self._confluent.get(schema_id)
        if found is not None:
            return found
        refused = self._confluent_refused.get(schema_id)
        return refused[0] if refused is not None else None

    def add_confluent(self, schema_id: int, writer: Writer | str, now: float) -> None:
        """What the registry said about an id: its writer (checked), or why its records cannot be read."""
        with self._lock:
            if isinstance(writer, Writer):
                # A version kept in schemas/ is taken as it is: the current one then decodes without resolution.
                writer = self._writers.get(writer.fingerprint, writer)
                self._confluent = {**self._confluent, schema_id: writer}
            else:
                kept = dict(list(self._confluent_refused.items())[-MAX_REFUSALS_KEPT + 1:])
                self._confluent_refused = {**kept, schema_id: (writer, now)}

    def unresolved_ids(self, schema_ids: set[int], now: float, recheck_seconds: float) -> set[int]:
        """The ids to look up: never looked up, or found unusable more than `recheck_seconds` ago."""
        return {i for i in schema_ids if i not in self._confluent
                and (i not in self._confluent_refused or now - self._confluent_refused[i][1] > recheck_seconds)}

    def registered(self) -> list[bytes]:
        """Fingerprints added at run time (not kept in schemas/)."""
        return [fp for fp in self._writers if fp not in self.builtin]


@cache
def default_registry() -> SchemaRegistry:
    """The versions kept in schemas/ only: what decode() uses when it is given no registry."""
    return SchemaRegistry(schema_documents())


def new_registry() -> SchemaRegistry:
    """A registry of its own for one worker, which its schema feed extends."""
    return SchemaRegistry(schema_documents())


def encode_avro(record: dict[str, Any], version: int | None = None, schema: Any = None) -> bytes:
    """Single-object encoding with a version kept in schemas/ (the current one by default), or with `schema`
    (a schema document or a parsed schema) for a writer that is not kept here."""
    if schema is None:
        schema = schema_versions()[version or current_version()]
    else:
        schema = fastavro.parse_schema(schema)
    body = io.BytesIO()
    body.write(SINGLE_OBJECT_MAGIC)
    body.write(schema_fingerprint(schema))
    fastavro.schemaless_writer(body, schema, record)
    return body.getvalue()


def encode_json(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)


def decode(raw: bytes | None, max_bytes: int, registry: SchemaRegistry | None = None) -> Any:
    """Decode one record to a dict, Avro records with the writers `registry` knows (by default the versions kept
    in schemas/). Raises DecodeError with a dead-letter reason."""
    if not raw:
        return _fail(Reason.EMPTY_RECORD)
    if len(raw) > max_bytes:
        return _fail(Reason.TOO_LARGE, f"{len(raw)} bytes > {max_bytes}")
    if raw[:2] == SINGLE_OBJECT_MAGIC:
        return _decode_avro(raw, registry or default_registry())
    if raw[:1] == CONFLUENT_MAGIC and registry is not None and registry.confluent_enabled:
        return _decode_confluent(raw, registry)
    if raw[:1] in _JSON_STARTS or raw.lstrip()[:1] in _JSON_STARTS:
        return _decode_json(raw)
    if raw[:3] == UTF8_BOM:  # some Windows tools write one; JSON parsers may ignore it (RFC 8259, section 8.1)
        body = raw[3:]
        if body.lstrip()[:1] in _JSON_STARTS:
            return _decode_json(body)
        return _fail(Reason.UNKNOWN_ENCODING, "a UTF-8 byte order mark followed by neither a JSON object nor an array")
    wide = _wide_encoding(raw)
    if wide is not None:
        return _fail(Reason.UNKNOWN_ENCODING, f"JSON must be UTF-8; this looks like {wide}")
    if raw[:1] == CONFLUENT_MAGIC and len(raw) > CONFLUENT_HEADER_BYTES:
        return _fail(Reason.UNKNOWN_ENCODING, f"Confluent framing (00, schema id {confluent_schema_id(raw)}) needs a "
                     "schema registry: set CEM_SCHEMA_REGISTRY_URL, or publish Avro single-object encoding (C3 01)")
    return _fail(Reason.UNKNOWN_ENCODING, "neither JSON nor Avro single-object encoding (C3 01)")


def confluent_schema_id(raw: bytes) -> int:
    return int.from_bytes(raw[1:CONFLUENT_HEADER_BYTES], "big")


def confluent_ids(values: list[bytes | None]) -> set[int]:
    """The schema ids named by the records in Confluent framing among `values`."""
    return {confluent_schema_id(v) for v in values
            if v and v[:1] == CONFLUENT_MAGIC and len(v) > CONFLUENT_HEADER_BYTES}


def encode_confluent(record: dict[str, Any], schema_id: int, schema: Any) -> bytes:
    """Confluent framing of `record` written with `schema` (a document or parsed schema) under registry id
    `schema_id`: what Confluent's Avro serializer writes."""
    body = io.BytesIO()
    body.write(CONFLUENT_MAGIC + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), record)
    return body.getvalue()


def _wide_encoding(raw: bytes) -> str | None:
    """UTF-16 or UTF-32, told by a byte order mark or, without one, by where the NUL bytes of the first
    characters are (RFC 4627, section 3: the first two characters of JSON text are ASCII)."""
    for bom, name in _WIDE_BOMS:
        if raw.startswith(bom):
            return f"{name} (byte order mark {bom.hex(' ').upper()})"
    head = raw[:4]
    if len(head) == 4 and head[:3] == b"\x00\x00\x00" and head[3] in _JSON_FIRST_BYTES:
        return "UTF-32BE"
    if len(head) == 4 and head[0] in _JSON_FIRST_BYTES and head[1:] == b"\x00\x00\x00":
        return "UTF-32LE"
    if len(head) >= 2 and head[0] == 0 and head[1] in _JSON_FIRST_BYTES:
        return "UTF-16BE"
    if len(head) >= 2 and head[0] in _JSON_FIRST_BYTES and head[1] == 0:
        return "UTF-16LE"
    return None


def _decode_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        wide = _wide_encoding(raw)
        if wide is not None:  # `{` then NUL: UTF-16LE or UTF-32LE text without a byte order mark
            return _fail(Reason.UNKNOWN_ENCODING, f"JSON must be UTF-8; this looks like {wide}")
        message = str(exc)
        if "UTF-8" in message or "surrogate" in message:
            return _fail(Reason.INVALID_UTF8, message[:200])
        if "recursion" in message.lower() or "depth" in message.lower():
            return _fail(Reason.TOO_DEEPLY_NESTED, message[:200])
        return _fail(Reason.MALFORMED_JSON, message[:200])


def _decode_avro(raw: bytes, registry: SchemaRegistry) -> Any:
    known = registry.writer(raw[2:10])
    if known is None:
        return _fail(Reason.UNKNOWN_SCHEMA, _unknown_schema_detail(raw[2:10], registry))
    return _read_body(raw, 10, known.plain, registry.reader)


def _decode_confluent(raw: bytes, registry: SchemaRegistry) -> Any:
    if len(raw) <= CONFLUENT_HEADER_BYTES:
        return _fail(Reason.MALFORMED_AVRO,
                     f"{len(raw)} bytes: Confluent framing needs 00, a 4-byte schema id and a body")
    schema_id = confluent_schema_id(raw)
    known = registry.confluent_writer(schema_id)
    if known is None:
        raise SchemaNotFetched(schema_id)
    if isinstance(known, str):
        return _fail(Reason.UNKNOWN_SCHEMA, known)
    return _read_body(raw, CONFLUENT_HEADER_BYTES, known.plain, registry.reader)


def _read_body(raw: bytes, start: int, writer: Any, reader: Any) -> Any:
    buffer = io.BytesIO(raw)
    buffer.seek(start)
    try:
        # A record written with the current schema needs no schema resolution: passing no reader schema skips
        # fastavro's per-call deep comparison of the two schemas and its resolving read (about 3 us a record).
        record = fastavro.schemaless_reader(buffer, writer, None if writer is reader else reader)
    except UnicodeDecodeError as exc:
        return _fail(Reason.INVALID_UTF8, str(exc)[:200])
    except Exception as exc:  # fastavro raises many kinds on truncated or corrupt bodies
        return _fail(Reason.MALFORMED_AVRO, f"{type(exc).__name__}: {str(exc)[:180]}")
    if buffer.tell() != len(raw):
        return _fail(Reason.MALFORMED_AVRO, f"{len(raw) - buffer.tell()} trailing bytes after the record")
    return record


def _unknown_schema_detail(fingerprint: bytes, registry: SchemaRegistry) -> str:
    refusal = registry.refusal(fingerprint)
    if refusal is not None:
        return f"writer schema {fingerprint.hex()} was registered but refused: {refusal}"[:500]
    return (f"writer schema {fingerprint.hex()} is neither kept in schemas/ nor registered; register it with "
            "`cem schemas register FILE.avsc` before publishing records written with it")


def _fail(reason: Reason, detail: str = "") -> Any:
    raise DecodeError(reason, detail)

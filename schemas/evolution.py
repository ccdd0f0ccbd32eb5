"""Which writer schemas the pipeline may accept, and the messages that register them at run time.

The rule is Avro schema resolution (specification, "Schema Resolution") with our current schema as the reader:
a record written with the writer schema must be readable with the reader schema. So a writer may add fields
(the reader skips them) and may leave out fields that have a default in the reader; a field both have must
resolve (the same type, an Avro promotion such as int to long, every branch of a writer union readable). The
check is Apache Avro's own ReaderWriterCompatibilityChecker (the `avro` package), a port of the Java
implementation's SchemaCompatibility, rather than a home-made reading of the specification.

Registration messages on `<prefix>.schemas` (compacted): key = the fingerprint in hex, value = a JSON object
{"fingerprint": hex, "schema": the schema's JSON text, exactly as registered}. Keeping the text verbatim leaves
room for a signature field over it; a reader ignores fields it does not know.
"""

from __future__ import annotations

import json
from typing import Any

import fastavro
import orjson

from schemas.codec import Writer, plain_schema, schema_documents, schema_fingerprint


class SchemaProblem(Exception):
    """A schema that cannot be accepted; the message says why, for a person."""


class IncompatibleSchema(SchemaProblem):
    """A valid record schema whose records the current reader schema cannot read."""


def incompatibilities(reader: Any, writer: Any) -> list[str]:
    """Why records written with `writer` cannot be read with `reader` (schema documents); empty if they can."""
    import avro.schema
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer)))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = sorted({kind.value for kind in result.incompatibilities})
    places = sorted(_named_location(reader, location) for location in result.locations if location != "/")
    return [f"{', '.join(kinds)}: {'; '.join(sorted(result.messages))} (at {', '.join(places) or '/'})"]


def _named_location(reader: Any, location: str) -> str:
    """A checker location such as /fields/7/type/1 with field names instead of indexes: survey/type/1."""
    node: Any = reader
    out: list[str] = []
    parts = [p for p in location.split("/") if p]
    i = 0
    while i < len(parts):
        part = parts[i]
        if part == "fields" and i + 1 < len(parts) and isinstance(node, dict) and parts[i + 1].isdigit():
            fields = node.get("fields", [])
            index = int(parts[i + 1])
            node = fields[index] if index < len(fields) else None
            out.append(node["name"] if isinstance(node, dict) else parts[i + 1])
            i += 2
            continue
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            node = None
        out.append(part)
        i += 1
    return "/".join(out)


def validated_writer(text: str | bytes, reader: Any) -> Writer:
    """The writer schema in `text` (an .avsc document), checked: JSON, a record fastavro and Apache Avro both
    parse, whose records `reader` (a schema document) can read. Raises SchemaProblem."""
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SchemaProblem(f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(document, dict) or document.get("type") != "record":
        raise SchemaProblem("not an Avro record schema (a JSON object with \"type\": \"record\")")
    try:
        parsed = fastavro.parse_schema(document)
    except Exception as exc:  # fastavro raises several kinds for an invalid schema
        raise SchemaProblem(f"not a valid Avro schema: {type(exc).__name__}: {str(exc)[:200]}") from None
    try:
        problems = incompatibilities(reader, document)
    except Exception as exc:  # Apache Avro is stricter than fastavro on a few points (names, defaults)
        raise SchemaProblem(f"not a valid Avro schema: {type(exc).__name__}: {str(exc)[:200]}") from None
    if problems:
        raise IncompatibleSchema("records written with it cannot be read with the reader schema: "
                                 + "; ".join(problems))
    return Writer(schema_fingerprint(parsed), plain_schema(parsed), document)


def registration_message(text: str) -> tuple[bytes, bytes]:
    """The key and value that register the schema `text` (already validated) on the schemas topic."""
    fingerprint = schema_fingerprint(fastavro.parse_schema(json.loads(text))).hex()
    return fingerprint.encode(), orjson.dumps({"fingerprint": fingerprint, "schema": text})


def writer_from_message(key: bytes | None, value: bytes | None, reader: Any) -> Writer:
    """The writer a schemas-topic message registers, checked against `reader`. Raises SchemaProblem for a
    message that does not register a usable writer (a tombstone, garbage, a fingerprint that does not match)."""
    if value is None:
        raise SchemaProblem("a tombstone: nothing to register")
    try:
        message = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise SchemaProblem(f"the value is not JSON: {str(exc)[:200]}") from None
    if not isinstance(message, dict) or not isinstance(message.get("schema"), str) \
            or not isinstance(message.get("fingerprint"), str):
        raise SchemaProblem("the value is not {\"fingerprint\": hex, \"schema\": schema text}")
    writer = validated_writer(message["schema"], reader)
    claimed = {message["fingerprint"].lower(), (key or b"").decode("ascii", "replace").lower()}
    if claimed != {writer.fingerprint.hex()}:
        raise SchemaProblem(f"the key and the fingerprint field must both be the schema's fingerprint "
                            f"{writer.fingerprint.hex()}")
    return writer


def fingerprint_of_key(key: bytes | None) -> bytes | None:
    """The fingerprint a message's key names, if it is 16 hex digits."""
    try:
        fingerprint = bytes.fromhex((key or b"").decode("ascii"))
    except ValueError:
        return None
    return fingerprint if len(fingerprint) == 8 else None


def check_versions(documents: dict[int, Any] | None = None) -> list[str]:
    """Problems with the versions kept in schemas/ (empty when there are none). Every version must parse; each
    must read the records of every older version (backward compatibility of every pair: the decoder resolves
    each straight to the current one, and a rollback reads what an intermediate version wrote), and its
    predecessor must read its records (so producers and workers may upgrade in either order, the newer writer
    registered first); and no two versions may share a fingerprint."""
    documents = schema_documents() if documents is None else documents
    problems: list[str] = []
    fingerprints: dict[bytes, int] = {}
    for version, document in documents.items():
        try:
            fingerprint = schema_fingerprint(fastavro.parse_schema(document))
        except Exception as exc:
            problems.append(f"v{version}: not a valid Avro schema: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if fingerprint in fingerprints:
            problems.append(f"v{version} has the canonical form of v{fingerprints[fingerprint]} (only docs or "
                            "logical types differ), so records cannot tell them apart: keep one")
        fingerprints.setdefault(fingerprint, version)
    if problems:
        return problems
    versions = sorted(documents)
    pairs = {(new, old) for i, old in enumerate(versions) for new in versions[i + 1:]}  # every newer reads older
    pairs |= {(old, new) for old, new in zip(versions, versions[1:], strict=False)}
    for reader, writer in sorted(pairs):
        try:
            found = incompatibilities(documents[reader], documents[writer])
        except Exception as exc:
            found = [f"{type(exc).__name__}: {str(exc)[:200]}"]
        problems.extend(f"v{reader} cannot read records written with v{writer}: {p}" for p in found)
    return problems

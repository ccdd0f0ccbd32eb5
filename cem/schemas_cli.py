"""`cem schemas register FILE.avsc` and `cem schemas check`: writer schemas registered at run time, and the
versions kept in schemas/ (README, "Encodings")."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import fastavro

from cem.kafka import ensure_topics, produce
from cem.preflight import check_kafka
from cem.settings import Settings
from schemas.codec import default_registry, schema_documents, schema_fingerprint
from schemas.evolution import SchemaProblem, check_versions, registration_message, validated_writer
from schemas.internal import signature_headers


def register_schema(settings: Settings, path: Path) -> int:
    """Check that records written with the schema in `path` are readable with the current reader schema, then
    publish it on the schemas topic, which every worker reads at start-up and follows."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        return 2
    registry = default_registry()
    try:
        writer = validated_writer(text, registry.reader_document)
    except SchemaProblem as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    if writer.fingerprint in registry.builtin:
        version = next(v for v, d in schema_documents().items() if _fingerprint(d) == writer.fingerprint)
        print(f"{path} is version {version} kept in schemas/ (fingerprint {writer.fingerprint.hex()}): "
              "workers already accept it, nothing to register")
        return 0
    key, value = registration_message(text)
    check_kafka(settings)  # the schema is checked offline first; only publishing it needs the broker
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, [(settings.schemas_topic, key, value, signature_headers(settings.signing_key,
                                                                                          value))]))
    print(f"registered writer schema {writer.fingerprint.hex()} on {settings.schemas_topic}: every worker reads "
          "it before it consumes records, so records written with it may be published now")
    return 0


def _fingerprint(document: Any) -> bytes:
    return schema_fingerprint(fastavro.parse_schema(document))


def check_schemas() -> int:
    """Exit 1 when the versions kept in schemas/ are not compatible with each other (schemas.evolution)."""
    problems = check_versions()
    for problem in problems:
        print(f"schemas/: {problem}", file=sys.stderr)
    if problems:
        return 1
    versions = ", ".join(f"v{v}" for v in schema_documents())
    print(f"schemas/: {versions} compatible (each reads the records of every older one, and its predecessor reads "
          "its records)")
    return 0

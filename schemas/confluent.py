"""The schema registry client behind Confluent framing (CEM_SCHEMA_REGISTRY_URL): the writer schema of a schema id,
fetched once with `GET <url>/schemas/ids/<id>` (the Confluent Schema Registry REST API, which Apicurio Registry
and Karapace speak too), checked like a schema registered on the schemas topic (schemas.evolution) and kept in the
worker's SchemaRegistry.

What the registry answers decides the fate of the records:
- the schema: its records are decoded and resolved against the current reader schema;
- "no such id" (HTTP 404), a schema that is not Avro, or one the reader cannot read: the records are bad, each
  is dead-lettered `unknown_schema` with the reason;
- anything else (no answer, a timeout, a 5xx, a 401): the registry is unavailable, RegistryUnavailable is raised,
  and the caller retries its batch (nothing is acknowledged meanwhile): an outage never dead-letters a record.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from schemas.codec import SchemaRegistry, Writer, confluent_ids
from schemas.evolution import SchemaProblem, validated_writer

# An id found unusable is looked up again after this long: a registry restored from a backup may know it by then.
RECHECK_SECONDS = 60.0
NOT_FOUND = 404


class RegistryUnavailable(Exception):
    """The registry could not say what a schema id is; the message says why (never a credential)."""


def redacted(url: str) -> str:
    """The registry URL without a user or password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}".rstrip("/")


def judge(schema_id: int, status: int, body: Any, reader: Any, where: str) -> Writer | str:
    """What the registry's answer to `GET /schemas/ids/<id>` means: the writer, or why its records are bad.
    Raises RegistryUnavailable for an answer that says nothing about the id."""
    if status == NOT_FOUND:
        return (f"schema id {schema_id} is unknown to the schema registry at {where}: register the writer schema "
                "there before publishing records that name it")
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise RegistryUnavailable(f"the schema registry at {where} answered HTTP {status} for schema id {schema_id}")
    kind = body.get("schemaType", "AVRO") or "AVRO"
    if kind != "AVRO":
        return f"schema id {schema_id} is a {kind} schema, not Avro"
    try:
        return validated_writer(body["schema"], reader)
    except SchemaProblem as exc:
        return f"schema id {schema_id} of the schema registry at {where} is refused: {exc}"[:500]


class ConfluentSchemas:
    """Looks up the schema ids of a batch's records before the batch is decoded."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self.url = url.rstrip("/")
        self.where = redacted(url)
        self.timeout_seconds = timeout_seconds

    async def resolve(self, values: list[bytes | None], registry: SchemaRegistry, now: float) -> int:
        """Fetch the schema of every id named in `values` that `registry` does not know yet; returns how many
        were looked up. Raises RegistryUnavailable when the registry cannot answer for one of them."""
        missing = registry.unresolved_ids(confluent_ids(values), now, RECHECK_SECONDS)
        if not missing:
            return 0
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for schema_id in sorted(missing):
                    async with session.get(f"{self.url}/schemas/ids/{schema_id}") as response:
                        body = await response.json(content_type=None) if response.status == 200 else None
                        registry.add_confluent(schema_id, judge(schema_id, response.status, body,
                                                                registry.reader_document, self.where), now)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise RegistryUnavailable(f"the schema registry at {self.where} cannot be reached: "
                                      f"{type(exc).__name__}: {str(exc)[:200]}") from None
        return len(missing)

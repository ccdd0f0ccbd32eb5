"""The alert wire: an alert revision on `<prefix>.alerts` (schemas/alert.v1.avsc) as JSON or Avro binary, and an
operator's action on `<prefix>.alert_actions` (schemas/alert_action.v1.avsc) as JSON, checked before it is applied."""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import orjson

from cem.domain.alerts import AlertRow

SCHEMA_DIR = Path(__file__).parent
SCHEMA_HEADER = "cem.schema"
ALERT_SCHEMA_NAME = b"alert.v1"
ACTIONS = ("ack", "resolve")


class InvalidAction(ValueError):
    pass


@cache
def alert_schema() -> Any:
    """The schema as kept, with its timestamps read as epoch milliseconds (as in JSON), not datetimes."""
    document = json.loads((SCHEMA_DIR / "alert.v1.avsc").read_text())
    for item in document["fields"]:
        if isinstance(item["type"], dict):
            item["type"].pop("logicalType", None)
    return fastavro.parse_schema(document)


def encode_alert(row: AlertRow, fmt: str = "json") -> tuple[bytes, list[tuple[str, bytes]]]:
    """The message value and headers of one revision."""
    record = row.as_record()
    if fmt == "avro":
        out = io.BytesIO()
        fastavro.schemaless_writer(out, alert_schema(), record)
        return out.getvalue(), [(SCHEMA_HEADER, ALERT_SCHEMA_NAME)]
    return orjson.dumps(record), []


def decode_alert(value: bytes, headers: Any = ()) -> dict[str, Any]:
    """An alert message, JSON or Avro (named by its cem.schema header)."""
    names = {k: v for k, v in (headers or ())}
    if names.get(SCHEMA_HEADER) == ALERT_SCHEMA_NAME:
        record = fastavro.schemaless_reader(io.BytesIO(value), alert_schema(), None)
        assert isinstance(record, dict)
        return record
    decoded: dict[str, Any] = orjson.loads(value)
    return decoded


def parse_action(value: bytes | None) -> dict[str, Any]:
    """An action message, checked: InvalidAction says what is wrong."""
    try:
        message = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise InvalidAction(f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(message, dict):
        raise InvalidAction("not a JSON object")
    problems = []
    for name, limit in (("action_id", 128), ("alert_id", 128), ("actor", 200)):
        value_ = message.get(name)
        if not isinstance(value_, str) or not 0 < len(value_) <= limit:
            problems.append(f"{name} must be a string of 1..{limit} characters")
    if message.get("action") not in ACTIONS:
        problems.append(f"action must be one of {list(ACTIONS)}")
    note = message.get("note", "")
    if not isinstance(note, str) or len(note) > 2000:
        problems.append("note must be a string of at most 2000 characters")
    at_ms = message.get("at_ms")
    if not isinstance(at_ms, int) or isinstance(at_ms, bool) or at_ms <= 0:
        problems.append("at_ms must be a positive integer (epoch milliseconds)")
    if problems:
        raise InvalidAction("; ".join(problems))
    return {"action_id": message["action_id"], "alert_id": message["alert_id"], "action": message["action"],
            "actor": message["actor"], "note": note, "at_ms": at_ms}


def encode_action(action: dict[str, Any]) -> bytes:
    return orjson.dumps(parse_action(orjson.dumps(action)))

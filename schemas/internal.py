"""Messages cem writes to its own topics: resolver batches and control requests, signed and validated.

Every message on an internal topic carries an HMAC-SHA256 of its value, keyed with `CEM_SECRET_KEY`, in the
`cem.signature` header. A consumer verifies the signature first and then the message's shape field by field, so
a message that cem did not write (a forged erasure, a batch that skipped validation) or that is malformed
becomes a dead letter with a reason instead of an exception that stalls the stage.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from typing import Any

import orjson

from cem.domain.model import Interaction
from cem.domain.reasons import Reason

SIGNATURE_HEADER = "cem.signature"
CONTROL_KINDS = frozenset({"forget"})
WIRE_FIELDS = 16  # Interaction.to_wire
LEGACY_WIRE_FIELDS = 15  # before text signals: still accepted, so a rolling upgrade loses no batch
MAX_REQUEST_ID_CHARS = 128


class InternalMessageError(Exception):
    """Why a message on an internal topic was not accepted; `reason` is a dead-letter reason code."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def sign(key: bytes, value: bytes) -> bytes:
    return hmac.new(key, value, hashlib.sha256).hexdigest().encode()


def signature_headers(key: bytes, value: bytes) -> list[tuple[str, bytes]]:
    return [(SIGNATURE_HEADER, sign(key, value))]


def verify(key: bytes, value: bytes, headers: Any) -> None:
    """Raises InternalMessageError(Reason.BAD_SIGNATURE) unless `headers` hold a valid signature of `value`."""
    signature = header_value(headers, SIGNATURE_HEADER)
    if signature is None:
        raise InternalMessageError(Reason.BAD_SIGNATURE, "no cem.signature header: not written by a cem process")
    if not hmac.compare_digest(signature, sign(key, value)):
        raise InternalMessageError(Reason.BAD_SIGNATURE, "cem.signature does not match: wrong key or altered value")


def header_value(headers: Any, name: str) -> bytes | None:
    """A header's value from Faust's or aiokafka's representation (a mapping or a list of pairs)."""
    if not headers:
        return None
    items = headers.items() if hasattr(headers, "items") else headers
    for key, value in items:
        if key == name:
            return bytes(value) if value is not None else None
    return None


# ---- resolver batches ---------------------------------------------------------------------------------------
def encode_batch(events: list[Interaction]) -> bytes:
    return orjson.dumps([event.to_wire() for event in events])


@dataclass(frozen=True)
class ControlRequest:
    """An erasure request as the resolver applies it. It names the identifier by a keyed hash, never by value."""

    control: str
    request_id: str
    id_type: str
    value_key: str
    requested_ms: int
    force: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"control": self.control, "request_id": self.request_id, "id_type": self.id_type,
                "value_key": self.value_key, "requested_ms": self.requested_ms, "force": self.force}


def decode_resolve_message(value: bytes | None) -> list[Interaction] | ControlRequest:
    """A message of the resolver topic: a batch of events (a JSON list) or a control request (a JSON object)."""
    if not value:
        raise InternalMessageError(Reason.INVALID_INTERNAL_MESSAGE, "empty message")
    try:
        message = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InternalMessageError(Reason.INVALID_INTERNAL_MESSAGE, f"not JSON: {str(exc)[:120]}") from None
    if isinstance(message, dict):
        return parse_control(message)
    if not isinstance(message, list):
        raise InternalMessageError(Reason.INVALID_INTERNAL_MESSAGE, "neither a batch (list) nor a control (object)")
    return [event_from_wire(index, row) for index, row in enumerate(message)]


def parse_control(message: Any) -> ControlRequest:
    if not isinstance(message, dict):
        raise InternalMessageError(Reason.INVALID_CONTROL, "a control request is a JSON object")
    control = message.get("control")
    if control not in CONTROL_KINDS:
        raise InternalMessageError(Reason.INVALID_CONTROL, f"control must be one of {sorted(CONTROL_KINDS)}")
    request_id = _text(message, "request_id", MAX_REQUEST_ID_CHARS)
    id_type = _text(message, "id_type", 64)
    value_key = _text(message, "value_key", 64)
    if len(value_key) != 64 or any(c not in "0123456789abcdef" for c in value_key):
        raise InternalMessageError(Reason.INVALID_CONTROL, "value_key must be 64 lower-case hex digits (a keyed hash)")
    requested_ms = message.get("requested_ms")
    if not isinstance(requested_ms, int) or isinstance(requested_ms, bool) or requested_ms < 0:
        raise InternalMessageError(Reason.INVALID_CONTROL, "requested_ms must be a non-negative integer")
    force = message.get("force", False)
    if not isinstance(force, bool):
        raise InternalMessageError(Reason.INVALID_CONTROL, "force must be true or false")
    unknown = set(message) - {"control", "request_id", "id_type", "value_key", "requested_ms", "force"}
    if unknown:
        raise InternalMessageError(Reason.INVALID_CONTROL, f"unknown fields: {', '.join(sorted(unknown))[:120]}")
    return ControlRequest(str(control), request_id, id_type, value_key, int(requested_ms), force)


def _text(message: dict[str, Any], name: str, max_chars: int) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_chars:
        raise InternalMessageError(Reason.INVALID_CONTROL, f"{name} must be a string of 1..{max_chars} characters")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_opt_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def event_from_wire(index: int, row: Any) -> Interaction:
    """One wire row, checked field by field: a malformed row fails here with its position, not deep in the
    resolver or the warehouse writer."""
    problem = _wire_problem(row)
    if problem is not None:
        raise InternalMessageError(Reason.INVALID_INTERNAL_MESSAGE, f"event {index}: {problem}")
    try:
        return Interaction.from_wire(row)
    except ValueError as exc:  # the text signals, checked by their own module
        raise InternalMessageError(Reason.INVALID_INTERNAL_MESSAGE, f"event {index}: {exc}") from None


def _wire_problem(row: Any) -> str | None:  # noqa: C901 - one check per field reads best as a flat list
    if not isinstance(row, list) or len(row) not in (WIRE_FIELDS, LEGACY_WIRE_FIELDS):
        return f"a wire event is a list of {WIRE_FIELDS} fields"
    (event_id, channel, event_type, occurred_ms, identifiers, fingerprint, text, issue_ref, survey_kind,
     survey_score, properties, sentiment, device, os_family, browser) = row[:LEGACY_WIRE_FIELDS]
    if not (isinstance(event_id, str) and event_id and isinstance(channel, str) and isinstance(event_type, str)):
        return "event_id, channel and type must be strings"
    if not _is_int(occurred_ms):
        return "occurred_ms must be an integer"
    if not isinstance(identifiers, list) or not identifiers or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
            for pair in identifiers):
        return "identifiers must be a non-empty list of [type, value] pairs"
    if not isinstance(fingerprint, str):
        return "fingerprint must be a string"
    if not (_is_opt_str(text) and _is_opt_str(issue_ref) and _is_opt_str(survey_kind)):
        return "text, issue_ref and survey kind must be strings or null"
    if survey_score is not None and not _is_int(survey_score):
        return "survey score must be an integer or null"
    if not isinstance(properties, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in properties.items()):
        return "properties must be a map of strings"
    if sentiment is not None and not (isinstance(sentiment, int | float) and not isinstance(sentiment, bool)
                                      and math.isfinite(sentiment)):
        return "sentiment must be a number or null"
    if not (isinstance(device, str) and isinstance(os_family, str) and isinstance(browser, str)):
        return "device, os and browser must be strings"
    return None

"""Dead letters: what a rejected record becomes on `<prefix>.deadletter`.

The value is the original bytes, untouched, as long as they fit in one message the worker may write
(`CEM_MESSAGE_MAX_BYTES`). A larger original keeps only its first bytes; its full length and SHA-256 travel in
headers, so a dead letter can always be written and the stage never stalls (or, worse, acks the batch) on a
record too large to dead-letter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from cem.domain.model import Interaction

# Room kept for the detail and the other headers: a dead letter's value plus this stays under the limit.
HEADER_ROOM_BYTES = 4_096
MAX_DETAIL_CHARS = 500


@dataclass(frozen=True)
class DeadLetter:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def dead_letter(source: str, value: bytes | None, reason: str, detail: str, now_ms: int,
                max_bytes: int) -> DeadLetter:
    """The dead letter of one record. `source` names it (`topic/partition/offset`, or `<resolve topic>#id` for
    an event the resolver refused), so a replayed dead letter carries the same key and consumers deduplicate."""
    original = value or b""
    room = max(0, max_bytes - HEADER_ROOM_BYTES - len(source.encode()))
    headers = [
        ("cem.reason", reason.encode()),
        ("cem.detail", detail[:MAX_DETAIL_CHARS].encode("utf-8", "replace")),
        ("cem.source", source.encode()),
        ("cem.failed_at_ms", str(now_ms).encode()),
    ]
    if len(original) > room:
        headers += [
            ("cem.truncated", b"true"),
            ("cem.original_bytes", str(len(original)).encode()),
            ("cem.original_sha256", hashlib.sha256(original).hexdigest().encode()),
        ]
        original = original[:room]
    return DeadLetter(source.encode(), original, headers)


def contract_record(event: Interaction) -> dict[str, object]:
    """An event in the input contract's JSON shape (normalised identifiers, epoch-millisecond time): what the
    resolver's dead letters carry, so the event can be published again once the cause is fixed."""
    record: dict[str, object] = {
        "event_id": event.event_id,
        "channel": event.channel,
        "type": event.type,
        "occurred_at": event.occurred_ms,
        "identifiers": dict(event.identifiers),
        "properties": event.properties,
    }
    if event.text is not None:
        record["text"] = event.text
    if event.issue_ref is not None:
        record["issue_ref"] = event.issue_ref
    if event.survey_kind is not None:
        record["survey"] = {"kind": event.survey_kind, "score": event.survey_score}
    return record


def event_dead_letter(resolve_topic: str, event: Interaction, reason: str, detail: str, now_ms: int,
                      max_bytes: int, suffix: str = "") -> DeadLetter:
    """The dead letter of an event the resolver could not keep (refused by ClickHouse, a conflicting
    duplicate): keyed by the event itself, identical on every replay."""
    source = f"{resolve_topic}#{event.event_id}{suffix}"
    return dead_letter(source, orjson.dumps(contract_record(event)), reason, detail, now_ms, max_bytes)

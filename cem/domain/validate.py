"""Turns a decoded record (a dict from JSON or Avro) into an Interaction, or a Rejection with a stable reason:
the input contract's checks (`check_record`), then enrichment (`enriched`, with cem.domain.enrich).

The reasons are part of the dead-letter contract (README, "Dead letters"); never rename one.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from cem.domain.enrich import device_of, sentiment
from cem.domain.identifiers import IdentifierRules, normalise_all
from cem.domain.model import SURVEY_SCALES, Interaction, Rejection
from cem.domain.reasons import Reason
from cem.domain.text import analyse

TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
MAX_EVENT_ID_CHARS = 128
MAX_SHORT_FIELD_CHARS = 256
MAX_PROPERTY_VALUE_CHARS = 4_096
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Limits:
    channels: frozenset[str]
    min_event_ms: int
    max_future_skew_ms: int
    max_text_chars: int = 20_000
    max_identifiers: int = 50
    max_properties: int = 200


@dataclass(frozen=True)
class CheckedRecord:
    """A record's fields once every contract check passed, normalised; enrichment comes next."""

    event_id: str
    channel: str
    type: str
    occurred_ms: int
    identifiers: tuple[tuple[str, str], ...]
    text: str | None
    issue_ref: str | None
    survey_kind: str | None
    survey_score: int | None
    properties: dict[str, str]


def build_interaction(
    record: Any, topic_channel: str | None, rules: IdentifierRules, limits: Limits, now_ms: int
) -> Interaction | Rejection:
    """The ingest step for one decoded record: the contract checks, then enrichment (cem.domain.enrich)."""
    checked = check_record(record, topic_channel, rules, limits, now_ms)
    if isinstance(checked, Rejection):
        return checked
    return enriched(checked)


def check_record(
    record: Any, topic_channel: str | None, rules: IdentifierRules, limits: Limits, now_ms: int
) -> CheckedRecord | Rejection:
    """Every check of the input contract, in the README's order; the first that fails names the reason."""
    if not isinstance(record, dict):
        return Rejection(Reason.NOT_AN_OBJECT, type(record).__name__)
    event_id = _check_event_id(record.get("event_id"))
    if isinstance(event_id, Rejection):
        return event_id
    channel = _check_channel(record.get("channel", topic_channel), topic_channel, limits)
    if isinstance(channel, Rejection):
        return channel
    event_type = _check_type(record.get("type"))
    if isinstance(event_type, Rejection):
        return event_type
    if record.get("occurred_at") is None:
        return Rejection(Reason.MISSING_FIELD, "occurred_at")
    occurred_ms = check_event_time(record["occurred_at"], limits, now_ms)
    if isinstance(occurred_ms, Rejection):
        return occurred_ms
    identifiers = _check_identifiers(record.get("identifiers"), rules, limits)
    if isinstance(identifiers, Rejection):
        return identifiers
    text = _check_text(record.get("text"), limits)
    if isinstance(text, Rejection):
        return text
    issue_ref = _check_issue_ref(record.get("issue_ref"))
    if isinstance(issue_ref, Rejection):
        return issue_ref
    survey = _check_survey(record["survey"]) if record.get("survey") is not None else (None, None)
    if isinstance(survey, Rejection):
        return survey
    properties = _check_properties(record.get("properties"), limits)
    if isinstance(properties, Rejection):
        return properties
    return CheckedRecord(event_id, channel, event_type, occurred_ms, identifiers, text, issue_ref, survey[0],
                         survey[1], properties)


def enriched(checked: CheckedRecord) -> Interaction:
    """The Interaction of a checked record: its content fingerprint, sentiment, text signals and device."""
    device, os_family, browser = device_of(checked.properties.get("user_agent", ""))
    c = checked
    return Interaction(
        event_id=c.event_id,
        channel=c.channel,
        type=c.type,
        occurred_ms=c.occurred_ms,
        identifiers=c.identifiers,
        fingerprint=content_fingerprint((c.channel, c.type, c.occurred_ms, c.identifiers, c.text, c.issue_ref,
                                         c.survey_kind, c.survey_score, c.properties)),
        text=c.text,
        issue_ref=c.issue_ref,
        survey_kind=c.survey_kind,
        survey_score=c.survey_score,
        properties=c.properties,
        sentiment=sentiment(c.text),
        device=device,
        os=os_family,
        browser=browser,
        text_signals=analyse(c.text),
    )


def _check_event_id(event_id: Any) -> str | Rejection:
    if event_id is None or event_id == "":
        return Rejection(Reason.MISSING_FIELD, "event_id")
    if not isinstance(event_id, str):
        return Rejection(Reason.WRONG_TYPE, "event_id must be a string")
    if len(event_id) > MAX_EVENT_ID_CHARS or not event_id.strip():
        return Rejection(Reason.INVALID_EVENT_ID, f"event_id must be 1..{MAX_EVENT_ID_CHARS} visible characters")
    return event_id


def _check_channel(channel: Any, topic_channel: str | None, limits: Limits) -> str | Rejection:
    if channel is None:
        return Rejection(Reason.MISSING_FIELD, "channel")
    if not isinstance(channel, str):
        return Rejection(Reason.WRONG_TYPE, "channel must be a string")
    if channel not in limits.channels:
        return Rejection(Reason.UNKNOWN_CHANNEL, channel[:64])
    if topic_channel is not None and channel != topic_channel:
        return Rejection(Reason.CHANNEL_MISMATCH, f"record says {channel[:64]!r}, topic is cem.raw.{topic_channel}")
    return channel


def _check_type(event_type: Any) -> str | Rejection:
    if event_type is None or event_type == "":
        return Rejection(Reason.MISSING_FIELD, "type")
    if not isinstance(event_type, str):
        return Rejection(Reason.WRONG_TYPE, "type must be a string")
    if not TYPE_PATTERN.match(event_type):
        return Rejection(Reason.INVALID_TYPE, "type must match " + TYPE_PATTERN.pattern)
    return event_type


def _check_identifiers(raw_ids: Any, rules: IdentifierRules,
                       limits: Limits) -> tuple[tuple[str, str], ...] | Rejection:
    if raw_ids is None or raw_ids == {}:
        return Rejection(Reason.MISSING_FIELD, "identifiers")
    if not isinstance(raw_ids, dict) or not all(isinstance(value, str) for value in raw_ids.values()):
        return Rejection(Reason.WRONG_TYPE, "identifiers must be a map of type to string")
    if len(raw_ids) > limits.max_identifiers:
        return Rejection(Reason.TOO_MANY_IDENTIFIERS, f"{len(raw_ids)} > {limits.max_identifiers}")
    unknown = rules.unknown_types(raw_ids)
    if unknown:
        return Rejection(Reason.UNKNOWN_IDENTIFIER_TYPE, ",".join(unknown)[:200])
    identifiers = normalise_all(raw_ids, rules)
    if not identifiers:
        return Rejection(Reason.NO_VALID_IDENTIFIER, "every identifier is empty, a placeholder or malformed")
    return identifiers


def _check_text(text: Any, limits: Limits) -> str | None | Rejection:
    if text is None:
        return None
    if not isinstance(text, str):
        return Rejection(Reason.WRONG_TYPE, "text must be a string")
    if len(text) > limits.max_text_chars:
        return Rejection(Reason.TEXT_TOO_LONG, f"{len(text)} > {limits.max_text_chars} characters")
    return text


def _check_issue_ref(issue_ref: Any) -> str | None | Rejection:
    if issue_ref is None:
        return None
    if not isinstance(issue_ref, str):
        return Rejection(Reason.WRONG_TYPE, "issue_ref must be a string")
    if len(issue_ref) > MAX_SHORT_FIELD_CHARS:
        return Rejection(Reason.FIELD_TOO_LONG, "issue_ref")
    return issue_ref.strip() or None


def parse_event_time(value: Any) -> int | None:
    """Epoch milliseconds from an ISO-8601 string (naive means UTC), epoch milliseconds, or a datetime."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value == value and abs(value) < 1e15 else None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return (moment - EPOCH) // ONE_MS  # integer arithmetic: float timestamps lose the last millisecond
    if isinstance(value, str) and 0 < len(value) <= 40:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        return parse_event_time(moment)
    return None


def check_event_time(value: Any, limits: Limits, now_ms: int) -> int | Rejection:
    """Epoch milliseconds of `occurred_at`, or the rejection. Details give times in ISO-8601, and name the unit
    a number was probably sent in when it is not milliseconds (epoch seconds are the common mistake)."""
    occurred_ms = parse_event_time(value)
    if occurred_ms is None:
        hint = " (a number in a string: send it as a JSON number)" if isinstance(value, str) and \
            value.strip().lstrip("-").isdigit() else ""
        return Rejection(Reason.INVALID_TIMESTAMP, "occurred_at must be ISO-8601 UTC or epoch milliseconds" + hint)
    latest_ms = now_ms + limits.max_future_skew_ms
    number = isinstance(value, int | float) and not isinstance(value, bool)
    read = f"occurred_at {value!r} read as epoch milliseconds is" if number else "occurred_at is"
    if occurred_ms < limits.min_event_ms:
        detail = f"{read} {iso_ms(occurred_ms)}, before the earliest accepted time {iso_ms(limits.min_event_ms)}"
        if number and limits.min_event_ms <= value * 1000 <= latest_ms:
            detail += f"; it looks like epoch seconds ({iso_ms(int(value * 1000))}): send epoch milliseconds"
        return Rejection(Reason.TIMESTAMP_TOO_OLD, detail)
    if occurred_ms > latest_ms:
        detail = (f"{read} {iso_ms(occurred_ms)}, more than {limits.max_future_skew_ms / 3_600_000:g} h after "
                  f"now ({iso_ms(now_ms)})")
        for unit, per_ms in (("microseconds", 1_000), ("nanoseconds", 1_000_000)):
            if number and limits.min_event_ms <= value / per_ms <= latest_ms:
                detail += f"; it looks like epoch {unit} ({iso_ms(int(value // per_ms))}): send epoch milliseconds"
                break
        return Rejection(Reason.TIMESTAMP_IN_FUTURE, detail)
    return occurred_ms


def iso_ms(ms: int) -> str:
    """2026-11-20T10:00:00.123Z, or words for a time outside the years 1..9999 (which ISO-8601 cannot show)."""
    try:
        moment = EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return "a time outside the years 1-9999"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def content_fingerprint(content: tuple[Any, ...]) -> str:
    """Same event_id and same fingerprint: a natural duplicate (a retry). Different fingerprint: a conflict.
    Taken over the normalised content, so a retry re-encoded as Avro instead of JSON is still natural."""
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(canonical, digest_size=8).hexdigest()


def _check_survey(survey: Any) -> tuple[str | None, int | None] | Rejection:
    if not isinstance(survey, dict):
        return Rejection(Reason.WRONG_TYPE, "survey must be an object")
    kind, score = survey.get("kind"), survey.get("score")
    if kind not in SURVEY_SCALES:
        return Rejection(Reason.INVALID_SURVEY, f"kind must be one of {sorted(SURVEY_SCALES)}")
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score) \
            or score != int(score):
        return Rejection(Reason.INVALID_SURVEY, "score must be a whole number")
    low, high = SURVEY_SCALES[kind]
    if not low <= score <= high:
        return Rejection(Reason.INVALID_SURVEY, f"{kind} score must be {low}..{high}")
    return kind, int(score)


def _check_properties(properties: Any, limits: Limits) -> dict[str, str] | Rejection:
    if properties is None:
        return {}
    if not isinstance(properties, dict):
        return Rejection(Reason.WRONG_TYPE, "properties must be a map of strings")
    if len(properties) > limits.max_properties:
        return Rejection(Reason.TOO_MANY_PROPERTIES, f"{len(properties)} > {limits.max_properties}")
    out: dict[str, str] = {}
    for key, value in properties.items():
        if type(value) is str:  # the common case first: one check instead of four
            if len(key) > MAX_SHORT_FIELD_CHARS or len(value) > MAX_PROPERTY_VALUE_CHARS:
                return Rejection(Reason.FIELD_TOO_LONG, f"properties.{str(key)[:64]}")
            out[key] = value
            continue
        # JSON producers send numbers and booleans for order_total and the like; the contract is strings.
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = repr(value)
        elif value is None:
            continue
        elif not isinstance(value, str):
            return Rejection(Reason.WRONG_TYPE, f"properties.{str(key)[:64]} must be a string")
        if len(key) > MAX_SHORT_FIELD_CHARS or len(value) > MAX_PROPERTY_VALUE_CHARS:
            return Rejection(Reason.FIELD_TOO_LONG, f"properties.{str(key)[:64]}")
        out[key] = value
    return out

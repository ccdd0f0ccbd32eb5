"""One tracking-SDK message (Segment, RudderStack or PostHog shape) -> one input-contract event, or a Rejection.

Pure: the receive time is passed in. The rules are documented in docs/collector.md ("Mapping"); the collector's
HTTP side is cem/collect_http.py.

Two properties make a retried SDK request a natural duplicate for the resolver (same event_id, same content):
nothing that changes between two attempts (the SDK's `sentAt`, our receive time) is copied into the event, and
the clock-skew correction is applied only past a tolerance, in whole seconds, so the jitter of the network
between two attempts does not move the event time.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from cem.domain.model import Rejection
from cem.domain.reasons import Reason
from cem.domain.validate import iso_ms, parse_event_time


class Dialect(StrEnum):
    SEGMENT = "segment"  # Segment and RudderStack: the same message spec
    POSTHOG = "posthog"


@dataclass(frozen=True)
class MapRules:
    channels: frozenset[str]
    skew_tolerance_ms: int = 5_000


@dataclass(frozen=True)
class Mapped:
    channel: str
    event_id: str
    event: dict[str, Any]


# Segment message types -> contract types; a track event takes its own (slugged) name.
SEGMENT_TYPES = {"identify": "identify", "page": "page_view", "screen": "screen_view", "group": "group",
                 "alias": "alias"}
POSTHOG_TYPES = {"$pageview": "page_view", "$screen": "screen_view", "$identify": "identify", "$set": "identify",
                 "$create_alias": "alias", "$groupidentify": "group"}
# Libraries whose events come from a browser or an app (context.library.name, or PostHog's `$lib`).
WEB_LIBRARIES = frozenset({"analytics.js", "analytics-next", "rudder-sdk-js", "rudderstack-js", "posthog-js",
                           "web"})
MOBILE_LIBRARIES = frozenset({"analytics-ios", "analytics-android", "analytics-react-native", "analytics-kotlin",
                              "analytics-swift", "analytics-flutter", "rudder-sdk-android", "rudder-sdk-ios",
                              "rudder-sdk-flutter", "rudder-sdk-react-native", "posthog-ios", "posthog-android",
                              "posthog-react-native", "posthog-flutter"})
# PostHog properties that are identifiers or person updates: never copied into the event's properties (an
# identifier kept in a property would escape `cem forget`).
POSTHOG_PERSON_KEYS = frozenset({"$set", "$set_once", "$unset", "$anon_distinct_id", "$device_id", "distinct_id",
                                 "alias"})
POSTHOG_RENAMED = {"$current_url": "url", "$ip": "ip", "$raw_user_agent": "user_agent", "$useragent": "user_agent"}
_NOT_IN_TYPE = re.compile(r"[^a-z0-9_.:-]+")


def map_message(message: Any, dialect: Dialect, batch_sent_at: Any, received_ms: int, default_channel: str,
                rules: MapRules) -> Mapped | Rejection:
    """The contract event of one SDK message. A message the collector cannot turn into an event for a topic (not
    an object, no channel) is a Rejection; any other defect (no id, no identifier, a bad time) travels in the
    event, and the worker dead-letters it with the contract's reason like any producer's record."""
    if not isinstance(message, dict):
        return Rejection(Reason.NOT_AN_OBJECT, type(message).__name__)
    if dialect is Dialect.POSTHOG:
        event = _posthog_event(message)
        library = _text(_dict(message.get("properties")).get("$lib"))
        explicit = _dict(message.get("properties")).get("channel")
    else:
        event = _segment_event(message)
        library = _text(_dict(_dict(message.get("context")).get("library")).get("name"))
        explicit = _dict(message.get("properties")).get("channel", message.get("channel"))
    channel = channel_of(explicit, library, default_channel, rules.channels)
    if channel is None:
        return Rejection(Reason.UNKNOWN_CHANNEL, "no channel property, no known library, and the write key has no "
                                                 "default channel")
    event["channel"] = channel
    sent_at = _first(message.get("sentAt"), message.get("sent_at"), batch_sent_at)
    raw_time = _first(message.get("timestamp"), message.get("originalTimestamp"))
    event["occurred_at"] = corrected_time(raw_time, sent_at, received_ms, rules.skew_tolerance_ms)
    if raw_time is not None:
        event["properties"]["client_timestamp"] = raw_time if isinstance(raw_time, str) else str(raw_time)
    return Mapped(channel, event.get("event_id") or "", event)


def channel_of(explicit: Any, library: str, default_channel: str, channels: frozenset[str]) -> str | None:
    """The first that names one of our channels: the message's own `channel` (a property, or RudderStack's
    top-level field), the library that sent it (browser -> web, app -> mobile), the write key's default."""
    if isinstance(explicit, str) and explicit in channels:
        return explicit
    if library in WEB_LIBRARIES and "web" in channels:
        return "web"
    if library in MOBILE_LIBRARIES and "mobile" in channels:
        return "mobile"
    return default_channel if default_channel in channels else None


def corrected_time(raw_time: Any, sent_at: Any, received_ms: int, tolerance_ms: int) -> Any:
    """The event time: the SDK's `timestamp` moved by the device's clock error (receive time − `sentAt`) when that
    error is past `tolerance_ms`, rounded to whole seconds. No timestamp: the receive time. An unreadable
    timestamp is passed on as it is, for the worker to dead-letter `invalid_timestamp`."""
    if raw_time is None:
        return iso_ms(received_ms)
    occurred_ms = parse_event_time(raw_time)
    if occurred_ms is None:
        return raw_time
    sent_ms = parse_event_time(sent_at) if isinstance(sent_at, str) else None
    if sent_ms is not None and abs(received_ms - sent_ms) > tolerance_ms:
        occurred_ms += round((received_ms - sent_ms) / 1000) * 1000
    return iso_ms(occurred_ms)


def type_slug(name: Any) -> str:
    """A contract `type` from a free event name: "Order Completed" -> "order_completed"."""
    ascii_text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    slug = _NOT_IN_TYPE.sub("_", ascii_text.strip().lower()).strip("_")
    if not slug[:1].isalpha():
        slug = "event_" + slug if slug else "event"
    return slug[:64].rstrip("_")


def _segment_event(message: dict[str, Any]) -> dict[str, Any]:
    kind = _text(message.get("type")).lower()
    context = _dict(message.get("context"))
    # A group call's traits describe the group (a company's e-mail), not the person
    own_traits = _dict(message.get("traits")) if kind != "group" else {}
    traits = {**_dict(context.get("traits")), **own_traits}
    identifiers = _identifiers(
        customer_ref=message.get("userId"),
        anonymous_id=message.get("anonymousId") or (message.get("previousId") if kind == "alias" else None),
        device_id=_dict(context.get("device")).get("id"),
        email=traits.get("email"), phone=traits.get("phone"))
    properties = _flat(message.get("properties"))
    extra = {"event_name": message.get("event") if kind == "track" else message.get("name"),
             "category": message.get("category"), "group_id": message.get("groupId"),
             "user_agent": context.get("userAgent"), "ip": context.get("ip"),
             "url": _dict(context.get("page")).get("url"),
             "library": _dict(context.get("library")).get("name"),
             "library_version": _dict(context.get("library")).get("version")}
    properties.update({k: str(v) for k, v in extra.items() if isinstance(v, str | int | float) and v != ""})
    event_type = type_slug(message["event"]) if kind == "track" and message.get("event") else \
        SEGMENT_TYPES.get(kind, type_slug(kind or "track"))
    return {"event_id": _id(message.get("messageId")), "type": event_type, "identifiers": identifiers,
            "properties": properties}


def _posthog_event(message: dict[str, Any]) -> dict[str, Any]:
    name = _text(message.get("event"))
    props = _dict(message.get("properties"))
    person = {**_dict(props.get("$set")), **_dict(message.get("$set"))}
    distinct = message.get("distinct_id", props.get("distinct_id"))
    personless = props.get("$process_person_profile") is False
    if name == "$create_alias":
        customer, anonymous = props.get("alias"), distinct
    elif personless:
        customer, anonymous = None, distinct
    else:
        customer, anonymous = distinct, props.get("$anon_distinct_id")
    identifiers = _identifiers(customer_ref=customer, anonymous_id=anonymous, device_id=props.get("$device_id"),
                               email=person.get("email"), phone=person.get("phone"))
    kept = {POSTHOG_RENAMED.get(k, k): v for k, v in props.items() if k not in POSTHOG_PERSON_KEYS}
    properties = _flat(kept)
    properties["event_name"] = name
    if isinstance(props.get("$lib"), str):
        properties["library"] = props["$lib"]
    return {"event_id": _id(message.get("uuid")), "type": POSTHOG_TYPES.get(name) or type_slug(name or "event"),
            "identifiers": identifiers, "properties": properties}


def _identifiers(**values: Any) -> dict[str, str]:
    """The identifiers that carry a value; numbers (a numeric userId) become text."""
    return {t: str(v) for t, v in values.items()
            if isinstance(v, str | int) and not isinstance(v, bool) and str(v).strip()}


def _flat(properties: Any) -> dict[str, Any]:
    """Contract properties from SDK properties: text, numbers and booleans as they are (the worker turns them into
    text), nested values as compact JSON text, nulls left out."""
    out: dict[str, Any] = {}
    for key, value in _dict(properties).items():
        if value is None:
            continue
        out[str(key)] = orjson.dumps(value).decode() if isinstance(value, dict | list) else value
    return out


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    return str(value) if isinstance(value, str | int) else None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""

"""One HTTP request of a tracking SDK -> its messages and write key, or the refusal to answer (status, code,
message). Pure: the body arrives as bytes, the clock is not needed. The HTTP side is cem/collect_http.py.

Which endpoint takes which body, and what each refusal means to an SDK: docs/collector.md.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from cem.domain.collect_map import Dialect


@dataclass(frozen=True)
class Endpoint:
    dialect: Dialect
    batch: bool  # the body holds {"batch": [...]}; otherwise the body is one message
    message_type: str = ""  # a single-message path of the Segment spec names the message type


SEGMENT_SINGLE = {"track": "track", "t": "track", "identify": "identify", "i": "identify", "page": "page",
                  "p": "page", "screen": "screen", "s": "screen", "group": "group", "g": "group", "alias": "alias",
                  "a": "alias"}
ENDPOINTS: dict[str, Endpoint] = {
    **{f"/v1/{path}": Endpoint(Dialect.SEGMENT, False, kind) for path, kind in SEGMENT_SINGLE.items()},
    "/v1/batch": Endpoint(Dialect.SEGMENT, True),
    "/v1/b": Endpoint(Dialect.SEGMENT, True),
    "/batch": Endpoint(Dialect.POSTHOG, True),
    "/capture": Endpoint(Dialect.POSTHOG, False),  # one event, or a batch (PostHog accepts both here)
}


@dataclass(frozen=True)
class RequestRules:
    write_keys: Mapping[str, str]  # write key -> default channel ("" when the key has none)
    max_event_bytes: int = 32_768
    max_batch_bytes: int = 500_000


@dataclass(frozen=True)
class Refusal:
    """An answer other than 200: the SDK reads `code` and `message` (Segment, RudderStack) or `detail` (PostHog)."""

    status: int
    code: str
    message: str

    def body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "detail": self.message}


@dataclass(frozen=True)
class Envelope:
    """A request's messages once the body, the limits and the key passed."""

    dialect: Dialect
    messages: list[Any]
    sent_at: Any
    default_channel: str


def endpoint_of(path: str) -> Endpoint | None:
    return ENDPOINTS.get(path.rstrip("/") or "/")


def decoded_body(body: bytes, content_encoding: str, limit: int) -> bytes | Refusal:
    """The body, inflated when gzip- or deflate-encoded, refused past `limit` bytes (inflated size: a small
    compressed body can unpack to any size, so it is never inflated further than the limit)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body if len(body) <= limit else too_large(f"the body is over {limit} bytes")
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return Refusal(400, "unsupported_encoding", f"Content-Encoding {encoding[:40]!r}: send gzip or none")
    inflater = zlib.decompressobj(wbits=47 if encoding != "deflate" else 15)  # 47: gzip or zlib header
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        return Refusal(400, "bad_encoding", f"the body is not valid {encoding}: {exc}")
    if len(inflated) > limit:
        return too_large(f"the inflated body is over {limit} bytes")
    if not inflater.eof:
        return Refusal(400, "bad_encoding", f"the {encoding} body is truncated")
    return inflated


def too_large(message: str) -> Refusal:
    return Refusal(413, "too_large", message)


def read_envelope(endpoint: Endpoint, body: bytes, authorization: str, rules: RequestRules) -> Envelope | Refusal:
    """The messages of a decoded body, after its shape, the write key and the size of each message."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Refusal(400, "malformed_json", f"the body is not JSON: {exc}"[:300])
    if not isinstance(payload, dict):
        return Refusal(400, "not_an_object", "the body must be a JSON object")
    key = write_key(payload, authorization)
    if key is None:
        return Refusal(401, "missing_write_key", "no write key: send it in the body (writeKey or api_key), as "
                                                 "HTTP Basic user name, or as a Bearer token")
    if key not in rules.write_keys:
        return Refusal(401, "invalid_write_key", "the write key is not known to this collector")
    if endpoint.batch or (endpoint.dialect is Dialect.POSTHOG and "batch" in payload):
        messages = payload.get("batch")
        if not isinstance(messages, list):
            return Refusal(400, "missing_batch", "the body must hold a `batch` array of messages")
    else:
        messages = [_single(payload, endpoint)]
    for index, message in enumerate(messages):
        size = len(orjson.dumps(message))
        if size > rules.max_event_bytes:
            return too_large(f"message {index} is {size} bytes, over the {rules.max_event_bytes}-byte limit")
    return Envelope(endpoint.dialect, messages, payload.get("sentAt", payload.get("sent_at")),
                    rules.write_keys[key])


def write_key(payload: Mapping[str, Any], authorization: str) -> str | None:
    """The key in the body (Segment's `writeKey`, PostHog's `api_key`), else the HTTP Basic user name (older
    Segment SDKs, RudderStack), else a Bearer token."""
    for field in ("writeKey", "api_key"):
        if isinstance(payload.get(field), str) and payload[field]:
            return str(payload[field])
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user or None
    if scheme.lower() == "bearer":
        return credentials.strip() or None
    return None


def _single(payload: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    """A single-message body without the request's own fields; the path names the type when the body does not."""
    message = {k: v for k, v in payload.items() if k not in ("writeKey", "api_key")}
    if endpoint.message_type and not message.get("type"):
        message["type"] = endpoint.message_type
    return message

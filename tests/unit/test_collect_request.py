"""The collector's request checks: endpoints, the three ways a write key arrives, gzip, size limits, refusals."""

from __future__ import annotations

import base64
import gzip
import zlib

import orjson
import pytest

from cem.config import collect_write_keys
from cem.domain.collect_map import Dialect
from cem.domain.collect_request import (
    Envelope,
    Refusal,
    RequestRules,
    decoded_body,
    endpoint_of,
    read_envelope,
    write_key,
)
from cem.settings import Settings

RULES = RequestRules(write_keys={"wk-web": "web", "wk-none": ""}, max_event_bytes=1_000, max_batch_bytes=5_000)
MESSAGE = {"type": "track", "event": "X", "userId": "u", "messageId": "m1", "timestamp": "2026-11-20T10:00:00Z"}


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def envelope(path: str, body: object, authorization: str = "") -> Envelope | Refusal:
    endpoint = endpoint_of(path)
    assert endpoint is not None, path
    return read_envelope(endpoint, orjson.dumps(body), authorization, RULES)


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/b", "/v1/track", "/v1/t", "/v1/identify", "/v1/i", "/v1/page",
                                  "/v1/p", "/v1/screen", "/v1/s", "/v1/group", "/v1/g", "/v1/alias", "/v1/a",
                                  "/batch/", "/batch", "/capture/", "/capture", "/v1/batch/"])
def test_every_sdk_path_is_an_endpoint(path: str) -> None:
    assert endpoint_of(path) is not None


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/x", "/v2/batch", "/e/", "/v1/batchx"])
def test_other_paths_are_not(path: str) -> None:
    assert endpoint_of(path) is None


def test_short_paths_name_the_message_type() -> None:
    single = {k: v for k, v in MESSAGE.items() if k != "type"}
    for path, kind in (("/v1/t", "track"), ("/v1/i", "identify"), ("/v1/p", "page"), ("/v1/s", "screen"),
                       ("/v1/g", "group"), ("/v1/a", "alias"), ("/v1/page", "page")):
        result = envelope(path, {**single, "writeKey": "wk-web"})
        assert isinstance(result, Envelope)
        assert result.messages == [{**single, "type": kind}]  # the key is not kept in the message
    typed = envelope("/v1/t", {**MESSAGE, "type": "page", "writeKey": "wk-web"})
    assert isinstance(typed, Envelope) and typed.messages[0]["type"] == "page"  # the body's own type wins


def test_the_three_key_styles_and_their_order() -> None:
    batch = {"batch": [MESSAGE], "sentAt": "2026-11-20T10:00:01Z"}
    in_body = envelope("/v1/batch", {**batch, "writeKey": "wk-web"})
    by_basic = envelope("/v1/batch", batch, basic("wk-web"))
    by_bearer = envelope("/v1/batch", batch, "Bearer wk-web")
    for result in (in_body, by_basic, by_bearer):
        assert result == Envelope(Dialect.SEGMENT, [MESSAGE], "2026-11-20T10:00:01Z", "web")
    # Segment 2.4 sends the key in the body and as Basic: the body's key decides.
    assert envelope("/v1/batch", {**batch, "writeKey": "wk-none"}, basic("wk-web")) == \
        Envelope(Dialect.SEGMENT, [MESSAGE], "2026-11-20T10:00:01Z", "")
    assert write_key({}, "basic " + base64.b64encode(b"wk-web:").decode()) == "wk-web"
    assert write_key({"api_key": "ph"}, "") == "ph"


@pytest.mark.parametrize("authorization", ["", basic(""), "Basic !!!notbase64", "Bearer ", "Token wk-web",
                                           "Basic " + base64.b64encode(b"\xff\xfe").decode()])
def test_no_usable_key_is_401(authorization: str) -> None:
    result = envelope("/v1/batch", {"batch": [MESSAGE]}, authorization)
    assert isinstance(result, Refusal) and (result.status, result.code) == (401, "missing_write_key")


@pytest.mark.parametrize(("body", "authorization"), [
    ({"batch": [MESSAGE], "writeKey": "nope"}, ""), ({"batch": [MESSAGE]}, basic("nope")),
    ({"batch": [MESSAGE]}, "Bearer nope"), ({"batch": [MESSAGE], "api_key": "WK-WEB"}, ""),
])
def test_unknown_key_is_401(body: object, authorization: str) -> None:
    result = envelope("/v1/batch", body, authorization)
    assert isinstance(result, Refusal)
    assert (result.status, result.code) == (401, "invalid_write_key")
    assert result.body() == {"code": "invalid_write_key", "message": result.message, "detail": result.message}


def test_posthog_batch_and_capture() -> None:
    event = {"event": "$pageview", "distinct_id": "u", "uuid": "e1", "properties": {}}
    batch = envelope("/batch/", {"batch": [event], "api_key": "wk-web", "sent_at": "2026-11-20T10:00:01Z"})
    assert batch == Envelope(Dialect.POSTHOG, [event], "2026-11-20T10:00:01Z", "web")
    single = envelope("/capture/", {**event, "api_key": "wk-web"})
    assert single == Envelope(Dialect.POSTHOG, [event], None, "web")
    capture_batch = envelope("/capture/", {"batch": [event, event], "api_key": "wk-web"})
    assert isinstance(capture_batch, Envelope) and capture_batch.messages == [event, event]


@pytest.mark.parametrize(("body", "code"), [
    (b"not json", "malformed_json"), (b"[1, 2]", "not_an_object"), (b'"text"', "not_an_object"),
    (b'{"writeKey": "wk-web"}', "missing_batch"), (b'{"writeKey": "wk-web", "batch": {"a": 1}}', "missing_batch"),
    (b"", "malformed_json"),
])
def test_malformed_bodies_are_400(body: bytes, code: str) -> None:
    endpoint = endpoint_of("/v1/batch")
    assert endpoint is not None
    result = read_envelope(endpoint, body, "", RULES)
    assert isinstance(result, Refusal) and (result.status, result.code) == (400, code)


@pytest.mark.parametrize("position", [0, 1, 4])
def test_one_message_over_the_event_limit_is_413(position: int) -> None:
    big = {**MESSAGE, "properties": {"blob": "x" * 1_000}}
    batch = [MESSAGE] * 5
    batch[position] = big
    result = envelope("/v1/batch", {"batch": batch, "writeKey": "wk-web"})
    assert isinstance(result, Refusal) and (result.status, result.code) == (413, "too_large")
    assert f"message {position} " in result.message


def test_a_message_exactly_at_the_limit_passes() -> None:
    base = len(orjson.dumps({**MESSAGE, "properties": {"blob": ""}}))
    exact = {**MESSAGE, "properties": {"blob": "x" * (RULES.max_event_bytes - base)}}
    assert len(orjson.dumps(exact)) == RULES.max_event_bytes
    assert isinstance(envelope("/v1/batch", {"batch": [exact], "writeKey": "wk-web"}), Envelope)


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP", "deflate"])
def test_compressed_bodies_are_inflated(encoding: str) -> None:
    body = orjson.dumps({"batch": [MESSAGE], "writeKey": "wk-web"})
    packed = zlib.compress(body) if encoding == "deflate" else gzip.compress(body)
    assert decoded_body(packed, encoding, 5_000) == body


@pytest.mark.parametrize("size", [5_001, 50_000, 5_000_000])
def test_inflated_size_over_the_batch_limit_is_413(size: int) -> None:
    packed = gzip.compress(b" " * size)  # a small body that inflates past the limit
    result = decoded_body(packed, "gzip", 5_000)
    assert isinstance(result, Refusal) and result.status == 413
    assert decoded_body(b" " * size, "", 5_000) == Refusal(413, "too_large", "the body is over 5000 bytes")


def test_inflated_size_at_the_limit_passes() -> None:
    assert decoded_body(gzip.compress(b" " * 5_000), "gzip", 5_000) == b" " * 5_000


# Fixed ids and a fixed gzip header time: pytest-xdist's workers must collect the same test names.
@pytest.mark.parametrize(("body", "encoding", "code"), [
    (b"plain text", "gzip", "bad_encoding"), (gzip.compress(b"x" * 100, mtime=0)[:20], "gzip", "bad_encoding"),
    (b"{}", "br", "unsupported_encoding"), (b"{}", "compress", "unsupported_encoding"),
], ids=["not-gzip", "gzip-cut-short", "br", "compress"])
def test_bad_or_unsupported_encodings_are_400(body: bytes, encoding: str, code: str) -> None:
    result = decoded_body(body, encoding, 5_000)
    assert isinstance(result, Refusal) and (result.status, result.code) == (400, code)


def test_write_keys_setting() -> None:
    settings = Settings.from_env({"CEM_COLLECT_WRITE_KEYS": " wk-a=web , wk-b, wk-c=survey "})
    assert collect_write_keys(settings) == {"wk-a": "web", "wk-b": "", "wk-c": "survey"}
    with pytest.raises(ValueError, match="not a channel"):
        collect_write_keys(Settings.from_env({"CEM_COLLECT_WRITE_KEYS": "wk=server"}))
    assert "wk-a" not in repr(settings)  # keys are secrets

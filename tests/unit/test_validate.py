"""cem.domain.validate.build_interaction and streams.app.Ingestor: every Rejection reason, normalisation,
coercion, fingerprints and enrichment; garbage never raises."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cem.domain.identifiers import IdentifierRules
from cem.domain.model import Interaction, Rejection
from cem.domain.validate import Limits, build_interaction, content_fingerprint, parse_event_time
from cem.settings import CHANNELS, Settings
from schemas.codec import decode, encode_avro, encode_json
from streams.app import Ingestor
from tests.unit.factories import HOUR_MS, NOW_MS

RULES = IdentifierRules()
MIN_MS = calendar.timegm((2000, 1, 1, 0, 0, 0)) * 1000
LIMITS = Limits(channels=frozenset(CHANNELS), min_event_ms=MIN_MS, max_future_skew_ms=24 * HOUR_MS)
OCCURRED_MS = calendar.timegm((2026, 11, 16, 10, 0, 0)) * 1000 + 123  # 2026-11-16T10:00:00.123Z
assert OCCURRED_MS == 1_794_823_200_123
DROP = object()

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.0 Mobile/15E148 Safari/604.1"
)


def rec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "evt-1",
        "channel": "web",
        "type": "page_view",
        "occurred_at": "2026-11-16T10:00:00.123Z",
        "identifiers": {"email": " Alice@Example.COM "},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not DROP}


def build(record: Any, channel: str | None = "web", limits: Limits = LIMITS, now_ms: int = NOW_MS) -> Any:
    return build_interaction(record, channel, RULES, limits, now_ms)


def ok(record: Any, channel: str | None = "web", limits: Limits = LIMITS) -> Interaction:
    result = build(record, channel, limits)
    assert isinstance(result, Interaction), result
    return result


def reason(record: Any, channel: str | None = "web", limits: Limits = LIMITS, now_ms: int = NOW_MS) -> str:
    result = build(record, channel, limits, now_ms)
    assert isinstance(result, Rejection), result
    return result.reason


# ---- happy path --------------------------------------------------------------------------------------
def test_happy_path_fields() -> None:
    event = ok(rec(text=None, issue_ref=" CASE-1 ", properties={"url": "/p/1"}))
    assert event.event_id == "evt-1"
    assert event.channel == "web"
    assert event.type == "page_view"
    assert event.occurred_ms == 1_794_823_200_123
    assert event.identifiers == (("email", "alice@example.com"),)
    assert event.issue_ref == "CASE-1"
    assert event.properties == {"url": "/p/1"}
    assert (event.text, event.sentiment, event.survey_kind, event.survey_score) == (None, None, None, None)
    assert (event.device, event.os, event.browser) == ("", "", "")
    # The fingerprint is taken over the normalised content, event_id left out (a re-send under another id, or
    # re-encoded, is the same content): 16 hex digits of that exact tuple, identifiers sorted and normalised.
    assert re.fullmatch(r"[0-9a-f]{16}", event.fingerprint), event.fingerprint
    assert event.fingerprint == content_fingerprint(("web", "page_view", 1_794_823_200_123,
                                                     (("email", "alice@example.com"),), None, "CASE-1", None, None,
                                                     {"url": "/p/1"}))


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-11-16T10:00:00.123Z",
        "2026-11-16T10:00:00.123z",
        "2026-11-16T10:00:00.123+00:00",
        "2026-11-16T11:00:00.123+01:00",
        "2026-11-16T10:00:00.123",  # naive means UTC
        "2026-11-16T10:00:00.123999Z",  # sub-millisecond part is dropped, not rounded
        1_794_823_200_123,
        1_794_823_200_123.0,
        datetime(2026, 11, 16, 10, 0, 0, 123000, tzinfo=UTC),
        datetime(2026, 11, 16, 12, 0, 0, 123000, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 11, 16, 10, 0, 0, 123000),
    ],
)
def test_occurred_ms_exact(occurred_at: Any) -> None:
    assert ok(rec(occurred_at=occurred_at)).occurred_ms == 1_794_823_200_123


def test_parse_event_time_is_exact_for_every_millisecond_of_a_second() -> None:
    base = datetime(2026, 11, 16, 10, 0, 0, tzinfo=UTC)
    for ms in range(1000):
        assert parse_event_time(base + timedelta(milliseconds=ms)) == 1_794_823_200_000 + ms
        assert parse_event_time(f"2026-11-16T10:00:00.{ms:03d}Z") == 1_794_823_200_000 + ms


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-16T10:00:00.999999Z", 1_794_823_200_999),
        ("1970-01-01T00:00:00.0005Z", 0),
        ("1969-12-31T23:59:59.9995Z", -1),  # floor, not truncation towards zero
        (datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC), -1),
        ("2026-11-16", 1_794_787_200_000),
    ],
)
def test_parse_event_time_floors_to_the_millisecond(value: Any, expected: int) -> None:
    assert parse_event_time(value) == expected


@pytest.mark.parametrize("value", [True, False, float("nan"), float("inf"), 1e16, "", "x" * 41, "yesterday", [], {}])
def test_parse_event_time_rejects(value: Any) -> None:
    assert parse_event_time(value) is None


def test_channel_from_topic_when_record_has_none() -> None:
    assert ok(rec(channel=DROP), channel="chat").channel == "chat"
    assert ok(rec(channel="store"), channel=None).channel == "store"


def test_limits_boundaries_accepted() -> None:
    ok(rec(event_id="e" * 128))
    ok(rec(type="a" * 64))
    ok(rec(occurred_at=MIN_MS))
    ok(rec(occurred_at=NOW_MS + 24 * HOUR_MS))
    ok(rec(text="x" * 20_000))
    ok(rec(issue_ref="i" * 256))
    ok(rec(properties={"k" * 256: "v" * 4096}))
    ok(rec(properties={str(i): "v" for i in range(200)}))
    ok(rec(identifiers={"email": "a@b.com", "phone": "(415) 555-0123", "anonymous_id": "null"}))


# ---- rejections ---------------------------------------------------------------------------------------
REJECTIONS: list[tuple[str, dict[str, Any], str | None, str]] = [
    ("no event_id", {"event_id": DROP}, "web", "missing_field"),
    ("empty event_id", {"event_id": ""}, "web", "missing_field"),
    ("null event_id", {"event_id": None}, "web", "missing_field"),
    ("int event_id", {"event_id": 123}, "web", "wrong_type"),
    ("blank event_id", {"event_id": "   "}, "web", "invalid_event_id"),
    ("long event_id", {"event_id": "e" * 129}, "web", "invalid_event_id"),
    ("no channel, no topic", {"channel": DROP}, None, "missing_field"),
    ("int channel", {"channel": 5}, "web", "wrong_type"),
    ("unknown channel", {"channel": "fax"}, "web", "unknown_channel"),
    ("unknown channel no topic", {"channel": "fax"}, None, "unknown_channel"),
    ("channel mismatch", {"channel": "web"}, "mobile", "channel_mismatch"),
    ("no type", {"type": DROP}, "web", "missing_field"),
    ("empty type", {"type": ""}, "web", "missing_field"),
    ("int type", {"type": 7}, "web", "wrong_type"),
    ("type with space", {"type": "Page View"}, "web", "invalid_type"),
    ("type upper", {"type": "PageView"}, "web", "invalid_type"),
    ("type too long", {"type": "a" * 65}, "web", "invalid_type"),
    ("type starts with digit", {"type": "1view"}, "web", "invalid_type"),
    ("no occurred_at", {"occurred_at": DROP}, "web", "missing_field"),
    ("null occurred_at", {"occurred_at": None}, "web", "missing_field"),
    ("words occurred_at", {"occurred_at": "yesterday"}, "web", "invalid_timestamp"),
    ("bool occurred_at", {"occurred_at": True}, "web", "invalid_timestamp"),
    ("list occurred_at", {"occurred_at": [1]}, "web", "invalid_timestamp"),
    ("empty occurred_at", {"occurred_at": ""}, "web", "invalid_timestamp"),
    ("too old", {"occurred_at": "1999-12-31T23:59:59.999Z"}, "web", "timestamp_too_old"),
    ("negative epoch", {"occurred_at": -5}, "web", "timestamp_too_old"),
    ("future", {"occurred_at": NOW_MS + 24 * HOUR_MS + 1}, "web", "timestamp_in_future"),
    ("no identifiers", {"identifiers": DROP}, "web", "missing_field"),
    ("empty identifiers", {"identifiers": {}}, "web", "missing_field"),
    ("list identifiers", {"identifiers": ["a"]}, "web", "wrong_type"),
    ("string identifiers", {"identifiers": "a@b.com"}, "web", "wrong_type"),
    ("int identifier value", {"identifiers": {"email": 5}}, "web", "wrong_type"),
    ("null identifier value", {"identifiers": {"email": None}}, "web", "wrong_type"),
    ("51 identifiers", {"identifiers": {f"x{i}": "v" for i in range(51)}}, "web", "too_many_identifiers"),
    ("unknown id type", {"identifiers": {"fax_number": "123", "email": "a@b.com"}}, "web",
     "unknown_identifier_type"),
    ("only placeholders", {"identifiers": {"email": "null", "anonymous_id": "undefined", "device_id": "0"}}, "web",
     "no_valid_identifier"),
    ("malformed email", {"identifiers": {"email": "not-an-email"}}, "web", "no_valid_identifier"),
    ("int text", {"text": 5}, "web", "wrong_type"),
    ("long text", {"text": "x" * 20_001}, "web", "text_too_long"),
    ("int issue_ref", {"issue_ref": 5}, "web", "wrong_type"),
    ("long issue_ref", {"issue_ref": "i" * 257}, "web", "field_too_long"),
    ("survey string", {"survey": "nps"}, "web", "wrong_type"),
    ("survey bad kind", {"survey": {"kind": "stars", "score": 3}}, "web", "invalid_survey"),
    ("survey no kind", {"survey": {"score": 3}}, "web", "invalid_survey"),
    ("nps 11", {"survey": {"kind": "nps", "score": 11}}, "web", "invalid_survey"),
    ("nps -1", {"survey": {"kind": "nps", "score": -1}}, "web", "invalid_survey"),
    ("csat 0", {"survey": {"kind": "csat", "score": 0}}, "web", "invalid_survey"),
    ("csat 6", {"survey": {"kind": "csat", "score": 6}}, "web", "invalid_survey"),
    ("ces 0", {"survey": {"kind": "ces", "score": 0}}, "web", "invalid_survey"),
    ("ces 8", {"survey": {"kind": "ces", "score": 8}}, "web", "invalid_survey"),
    ("score 7.5", {"survey": {"kind": "nps", "score": 7.5}}, "web", "invalid_survey"),
    ("score string", {"survey": {"kind": "nps", "score": "5"}}, "web", "invalid_survey"),
    ("score bool", {"survey": {"kind": "nps", "score": True}}, "web", "invalid_survey"),
    ("score null", {"survey": {"kind": "nps", "score": None}}, "web", "invalid_survey"),
    ("properties list", {"properties": ["a"]}, "web", "wrong_type"),
    ("property list value", {"properties": {"a": [1]}}, "web", "wrong_type"),
    ("property object value", {"properties": {"a": {"b": "c"}}}, "web", "wrong_type"),
    ("201 properties", {"properties": {str(i): "v" for i in range(201)}}, "web", "too_many_properties"),
    ("long property key", {"properties": {"k" * 257: "v"}}, "web", "field_too_long"),
    ("long property value", {"properties": {"k": "v" * 4097}}, "web", "field_too_long"),
]


@pytest.mark.parametrize(
    ("changes", "channel", "expected"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejection_reason(changes: dict[str, Any], channel: str | None, expected: str) -> None:
    assert reason(rec(**changes), channel) == expected


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"event_id": DROP}, "event_id"),
        ({"type": DROP}, "type"),
        ({"occurred_at": DROP}, "occurred_at"),
        ({"identifiers": DROP}, "identifiers"),
        ({"identifiers": {"fax_number": "1", "zz": "2"}}, "fax_number,zz"),
    ],
)
def test_rejection_detail(changes: dict[str, Any], detail: str) -> None:
    result = build(rec(**changes))
    assert isinstance(result, Rejection)
    assert result.detail == detail


@pytest.mark.parametrize("record", [[], "text", 5, None])
def test_not_an_object(record: Any) -> None:
    assert reason(record) == "not_an_object"


def test_tight_limits() -> None:
    tight = Limits(channels=frozenset({"web"}), min_event_ms=MIN_MS, max_future_skew_ms=0, max_text_chars=5,
                   max_identifiers=2, max_properties=1)
    assert reason(rec(text="123456"), limits=tight) == "text_too_long"
    assert isinstance(build(rec(text="12345"), limits=tight), Interaction)
    ids3 = {"email": "a@b.com", "phone": "(415) 555-0123", "anonymous_id": "anon-1"}
    assert reason(rec(identifiers=ids3), limits=tight) == "too_many_identifiers"
    assert reason(rec(properties={"a": "1", "b": "2"}), limits=tight) == "too_many_properties"
    assert reason(rec(channel="chat"), channel=None, limits=tight) == "unknown_channel"
    assert reason(rec(occurred_at=NOW_MS + 1), limits=tight) == "timestamp_in_future"
    assert isinstance(build(rec(occurred_at=NOW_MS), limits=tight), Interaction)


@pytest.mark.parametrize(
    ("survey", "kind", "score"),
    [
        ({"kind": "nps", "score": 0}, "nps", 0),
        ({"kind": "nps", "score": 10}, "nps", 10),
        ({"kind": "csat", "score": 1}, "csat", 1),
        ({"kind": "csat", "score": 5}, "csat", 5),
        ({"kind": "ces", "score": 1}, "ces", 1),
        ({"kind": "ces", "score": 7}, "ces", 7),
        ({"kind": "nps", "score": 9.0}, "nps", 9),
    ],
)
def test_valid_surveys(survey: dict[str, Any], kind: str, score: int) -> None:
    event = ok(rec(channel="survey", type="survey_response", survey=survey), channel="survey")
    assert (event.survey_kind, event.survey_score) == (kind, score)
    assert type(event.survey_score) is int


@pytest.mark.parametrize("score", [float("nan"), float("inf")])
def test_non_finite_survey_score_is_rejected(score: float) -> None:
    assert reason(rec(survey={"kind": "nps", "score": score})) == "invalid_survey"


def test_property_coercion() -> None:
    event = ok(rec(properties={"order_total": 12.5, "qty": 3, "gift": True, "promo": False, "note": None,
                               "s": "x", "big": 10**20, "neg": -0.25}))
    assert event.properties == {"order_total": "12.5", "qty": "3", "gift": "true", "promo": "false", "s": "x",
                                "big": "100000000000000000000", "neg": "-0.25"}


def test_blank_issue_ref_becomes_none() -> None:
    assert ok(rec(issue_ref="   ")).issue_ref is None


# ---- fingerprints --------------------------------------------------------------------------------------
CONTENT: dict[str, Any] = {
    "event_id": "order-1",
    "channel": "commerce",
    "type": "purchase",
    "identifiers": {"email": "Bob@Example.org", "phone": "+1 (415) 555-0199", "customer_ref": "CRM-100001"},
    "text": "Thanks — très bien 👍",
    "issue_ref": "CASE-9",
    "survey": {"kind": "csat", "score": 4},
}


def _via_json(record: dict[str, Any]) -> Interaction:
    return _parse(encode_json(record))


def _via_avro(record: dict[str, Any]) -> Interaction:
    return _parse(encode_avro(record))


def _parse(raw: bytes) -> Interaction:
    decoded = decode(raw, 1_000_000)
    result = build_interaction(decoded, "commerce", RULES, LIMITS, NOW_MS)
    assert isinstance(result, Interaction), result
    return result


def test_fingerprint_same_for_json_and_avro() -> None:
    as_json = _via_json({**CONTENT, "occurred_at": "2026-11-16T10:00:00.123Z",
                         "properties": {"order_total": 12.5, "gift": True}})
    as_avro = _via_avro({**CONTENT, "occurred_at": OCCURRED_MS, "properties": {"order_total": "12.5", "gift": "true"}})
    assert as_json.fingerprint == as_avro.fingerprint
    assert as_json == as_avro  # every field, not only the fingerprint


def test_fingerprint_ignores_event_id_and_identifier_spelling() -> None:
    a = ok(rec(event_id="a", identifiers={"email": " Alice@Example.COM "}))
    b = ok(rec(event_id="b", identifiers={"email": "alice@example.com"}))
    assert a.fingerprint == b.fingerprint


@pytest.mark.parametrize(
    "changes",
    [
        {"occurred_at": "2026-11-16T10:00:00.124Z"},
        {"identifiers": {"email": "alice2@example.com"}},
        {"identifiers": {"email": "alice@example.com", "anonymous_id": "anon-1"}},
        {"text": "hello"},
        {"issue_ref": "CASE-1"},
        {"type": "page_view2"},
        {"survey": {"kind": "nps", "score": 9}},
        {"properties": {"url": "/p/1"}},
        {"properties": {"order_total": 12.50}},
    ],
)
def test_fingerprint_differs_when_content_differs(changes: dict[str, Any]) -> None:
    assert ok(rec(**changes)).fingerprint != ok(rec()).fingerprint


def test_fingerprint_distinguishes_text_from_property() -> None:
    # The fingerprint is positional: the same string in two fields is two different contents.
    assert ok(rec(text="x")).fingerprint != ok(rec(properties={"text": "x"})).fingerprint
    assert content_fingerprint(("a", None)) != content_fingerprint((None, "a"))


# ---- enrichment ----------------------------------------------------------------------------------------
def test_sentiment_only_with_text() -> None:
    assert ok(rec()).sentiment is None
    assert ok(rec(text="")).sentiment is None
    assert ok(rec(text="   ")).sentiment is None
    assert ok(rec(text="Great service, thanks!")).sentiment == 0.807
    assert ok(rec(text="Terrible, awful experience.")).sentiment == -0.7269


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (CHROME_WINDOWS, ("", "Windows", "Chrome")),
        (SAFARI_IPHONE, ("iPhone", "iOS", "Mobile Safari")),
    ],
)
def test_device_from_user_agent(user_agent: str, expected: tuple[str, str, str]) -> None:
    event = ok(rec(properties={"user_agent": user_agent}))
    assert (event.device, event.os, event.browser) == expected
    assert event.properties["user_agent"] == user_agent


# ---- Ingestor: raw bytes never raise -------------------------------------------------------------------
INGESTOR = Ingestor(Settings())


def test_ingestor_parses_json_and_avro() -> None:
    record = {**CONTENT, "occurred_at": OCCURRED_MS, "properties": {}}
    a = INGESTOR.parse(encode_json(record), "commerce", NOW_MS)
    b = INGESTOR.parse(encode_avro(record), "commerce", NOW_MS)
    assert isinstance(a, Interaction) and a == b
    assert a.identifiers == (("customer_ref", "CRM-100001"), ("email", "bob@example.org"),
                             ("phone", "+14155550199"))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", "empty_record"),
        (None, "empty_record"),
        (b"\x00garbage", "unknown_encoding"),
        (b'{"event_id":', "malformed_json"),
        (b"[1,2]", "not_an_object"),
        (b"\xc3\x01" + b"\xff" * 8 + b"\x00", "unknown_schema"),
        (b"{" + b" " * 1_048_576 + b"}", "too_large"),
    ],
)
def test_ingestor_reasons(raw: bytes | None, expected: str) -> None:
    result = INGESTOR.parse(raw, "web", NOW_MS)
    assert isinstance(result, Rejection)
    assert result.reason == expected


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [(-62_135_596_800_001, "timestamp_too_old"), (253_402_300_800_000, "timestamp_in_future")],
)
def test_ingestor_avro_timestamp_outside_datetime_range(occurred_at: int, expected: str) -> None:
    record = {**CONTENT, "occurred_at": occurred_at}
    result = INGESTOR.parse(encode_avro(record), "commerce", NOW_MS)
    assert isinstance(result, Rejection)
    assert result.reason == expected


def _check_never_raises(raw: bytes, channel: str | None) -> None:
    result = INGESTOR.parse(raw, channel, NOW_MS)
    assert isinstance(result, Interaction | Rejection)
    if isinstance(result, Rejection):
        assert result.reason != "internal_error", result.detail


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from([None, *CHANNELS]))
def test_ingestor_garbage_bytes(raw: bytes, channel: str | None) -> None:
    _check_never_raises(raw, channel)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_ingestor_garbage_avro_body(body: bytes) -> None:
    header = encode_avro({**CONTENT, "occurred_at": OCCURRED_MS})[:10]
    _check_never_raises(header + body, "commerce")


_json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12), _json_values, max_size=8), st.sampled_from([None, "web", "chat"]))
def test_ingestor_random_json_objects(record: dict[str, Any], channel: str | None) -> None:
    _check_never_raises(orjson.dumps(record), channel)


# Records that get further into the validator: every field present, each valid or junk.
_field_values = {
    "event_id": st.sampled_from(["e1", "", "  ", "e" * 200]) | _json_scalars,
    "channel": st.sampled_from([*CHANNELS, "fax", ""]) | _json_scalars,
    "type": st.sampled_from(["page_view", "Page View", ""]) | _json_scalars,
    "occurred_at": st.sampled_from(["2026-11-16T10:00:00Z", OCCURRED_MS, "not a time", "2026-13-01"])
    | _json_scalars,
    "identifiers": st.dictionaries(
        st.sampled_from(["email", "phone", "anonymous_id", "device_id", "customer_ref", "social_handle", "x"]),
        st.sampled_from(["a@b.com", "null", "(415) 555-0123", "twitter:@x", "", "0"]) | st.text(max_size=30)
        | _json_scalars,
        max_size=4,
    ) | _json_values,
    "text": _json_scalars,
    "issue_ref": _json_scalars,
    "survey": st.fixed_dictionaries({"kind": st.sampled_from(["nps", "csat", "ces", "x"]) | _json_scalars,
                                     "score": _json_scalars}) | _json_values,
    "properties": st.dictionaries(st.text(max_size=10), _json_values, max_size=4) | _json_values,
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=_field_values), st.sampled_from([None, "web", "chat"]))
def test_ingestor_structured_junk(record: dict[str, Any], channel: str | None) -> None:
    _check_never_raises(orjson.dumps(record), channel)


_avro_text = st.text(max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "event_id": _avro_text,
            "channel": st.sampled_from([*CHANNELS, "fax"]),
            "type": _avro_text,
            "occurred_at": st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999),
            "identifiers": st.dictionaries(st.sampled_from(["email", "phone", "anonymous_id", "x"]), _avro_text,
                                           max_size=3),
            "text": st.none() | _avro_text,
            "issue_ref": st.none() | _avro_text,
            "survey": st.none() | st.fixed_dictionaries(
                {"kind": st.sampled_from(["nps", "csat", "ces", "x"]),
                 "score": st.integers(min_value=-(2**31), max_value=2**31 - 1)}
            ),
            "properties": st.dictionaries(_avro_text, _avro_text, max_size=3),
        }
    )
)
def test_ingestor_random_schema_valid_avro(record: dict[str, Any]) -> None:
    _check_never_raises(encode_avro(record), None)


# ---- timestamp details: ISO times, and the unit a number was probably sent in ------------------------------
SECONDS = OCCURRED_MS // 1000  # 1_794_823_200: 2026-11-16T10:00:00Z in epoch seconds


def _rejection(occurred_at: Any, now_ms: int = NOW_MS) -> Rejection:
    result = build(rec(occurred_at=occurred_at), now_ms=now_ms)
    assert isinstance(result, Rejection), result
    return result


@pytest.mark.parametrize(
    ("value", "read_as", "meant"),
    [
        (SECONDS, "1970-01-21T18:33:43.200Z", "2026-11-16T10:00:00.000Z"),
        (1_764_000_000, "1970-01-21T10:00:00.000Z", "2025-11-24T16:00:00.000Z"),
        (SECONDS + 0.5, "1970-01-21T18:33:43.200Z", "2026-11-16T10:00:00.500Z"),
        (MIN_MS // 1000, "1970-01-11T22:58:04.800Z", "2000-01-01T00:00:00.000Z"),  # the earliest plausible second
        ((NOW_MS + 24 * HOUR_MS) // 1000, "1970-01-21T18:35:16.800Z", "2026-11-17T12:00:00.000Z"),  # the latest
    ],
)
def test_epoch_seconds_are_rejected_with_a_detail_that_says_so(value: Any, read_as: str, meant: str) -> None:
    rejection = _rejection(value)
    assert rejection.reason == "timestamp_too_old"
    assert rejection.detail == (
        f"occurred_at {value!r} read as epoch milliseconds is {read_as}, before the earliest accepted time "
        f"2000-01-01T00:00:00.000Z; it looks like epoch seconds ({meant}): send epoch milliseconds")


def test_epoch_seconds_in_avro_get_the_same_detail() -> None:
    result = INGESTOR.parse(encode_avro({**CONTENT, "occurred_at": SECONDS}), "commerce", NOW_MS)
    assert isinstance(result, Rejection) and result.reason == "timestamp_too_old"
    assert "it looks like epoch seconds (2026-11-16T10:00:00.000Z): send epoch milliseconds" in result.detail


@pytest.mark.parametrize(
    "value",
    [-5, 0, MIN_MS - 1, MIN_MS // 1000 - 1, (NOW_MS + 24 * HOUR_MS) // 1000 + 1, "1999-12-31T23:59:59.999Z"],
    ids=["negative", "zero", "just too old", "seconds before the earliest", "seconds after the latest", "iso"],
)
def test_old_times_that_are_not_seconds_get_no_hint(value: Any) -> None:
    rejection = _rejection(value)
    assert rejection.reason == "timestamp_too_old"
    assert "looks like" not in rejection.detail
    assert "before the earliest accepted time 2000-01-01T00:00:00.000Z" in rejection.detail


def test_old_iso_time_detail() -> None:
    assert _rejection("1999-12-31T23:59:59.999Z").detail == \
        "occurred_at is 1999-12-31T23:59:59.999Z, before the earliest accepted time 2000-01-01T00:00:00.000Z"
    # A zone is converted: 23:59 at -01:00 is 00:59 UTC... of 2000-01-01, so this one is accepted;
    assert isinstance(build(rec(occurred_at="1999-12-31T23:59:00-01:00")), Interaction)
    # and 00:30 at +01:00 is 23:30 UTC the day before: the detail shows the UTC time.
    assert _rejection("2000-01-01T00:30:00+01:00").detail.startswith("occurred_at is 1999-12-31T23:30:00.000Z, ")


@pytest.mark.parametrize(
    ("value", "unit", "meant"),
    [
        (OCCURRED_MS * 1000, "microseconds", "2026-11-16T10:00:00.123Z"),
        (OCCURRED_MS * 1000 + 999, "microseconds", "2026-11-16T10:00:00.123Z"),
        (OCCURRED_MS * 1_000_000, "nanoseconds", "2026-11-16T10:00:00.123Z"),
        (MIN_MS * 1000, "microseconds", "2000-01-01T00:00:00.000Z"),
    ],
)
def test_epoch_micro_and_nanoseconds_are_named_in_the_detail(value: int, unit: str, meant: str) -> None:
    rejection = _rejection(value)
    assert rejection.reason == "timestamp_in_future"
    assert rejection.detail == (
        f"occurred_at {value} read as epoch milliseconds is a time outside the years 1-9999, more than 24 h after "
        f"now (2026-11-16T12:00:00.000Z); it looks like epoch {unit} ({meant}): send epoch milliseconds")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (NOW_MS + 24 * HOUR_MS + 1, "occurred_at 1794916800001 read as epoch milliseconds is 2026-11-17T12:00:00.001Z"),
        ("2026-11-17T12:00:00.001Z", "occurred_at is 2026-11-17T12:00:00.001Z"),
        ("2026-11-17T13:00:00.001+01:00", "occurred_at is 2026-11-17T12:00:00.001Z"),
        (253_402_300_800_000, "occurred_at 253402300800000 read as epoch milliseconds is a time outside the years "
                              "1-9999"),
    ],
)
def test_future_time_detail_shows_iso_times(value: Any, shown: str) -> None:
    rejection = _rejection(value)
    assert rejection.reason == "timestamp_in_future"
    assert rejection.detail == f"{shown}, more than 24 h after now (2026-11-16T12:00:00.000Z)"


def test_skew_in_the_detail_follows_the_limit() -> None:
    half_hour = Limits(channels=frozenset(CHANNELS), min_event_ms=MIN_MS, max_future_skew_ms=HOUR_MS // 2)
    result = build(rec(occurred_at=NOW_MS + HOUR_MS), limits=half_hour)
    assert isinstance(result, Rejection)
    assert result.detail.endswith("more than 0.5 h after now (2026-11-16T12:00:00.000Z)")


@pytest.mark.parametrize("value", ["1794823200", " 1794823200123 ", "-5"])
def test_numbers_in_strings_are_invalid_with_a_hint(value: str) -> None:
    rejection = _rejection(value)
    assert rejection.reason == "invalid_timestamp"
    assert rejection.detail == \
        "occurred_at must be ISO-8601 UTC or epoch milliseconds (a number in a string: send it as a JSON number)"


@pytest.mark.parametrize("value", ["yesterday", "", "12:00", True])
def test_other_invalid_times_get_no_number_hint(value: Any) -> None:
    rejection = _rejection(value)
    assert (rejection.reason, rejection.detail) == \
        ("invalid_timestamp", "occurred_at must be ISO-8601 UTC or epoch milliseconds")


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False,
                                                                      min_value=-1e15, max_value=1e15))
def test_every_timestamp_rejection_detail_shows_an_iso_time(value: Any) -> None:
    result = build(rec(occurred_at=value))
    if isinstance(result, Rejection) and result.reason in ("timestamp_too_old", "timestamp_in_future"):
        assert result.detail != str(value)
        assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", result.detail), result.detail

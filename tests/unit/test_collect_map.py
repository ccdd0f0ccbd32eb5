"""The collector's mapping of real SDK message shapes (as segment-analytics-python 2.4, rudder-sdk-python 2.1,
analytics.js and posthog 7.x build them) to contract events, checked against the worker's own contract checks."""

from __future__ import annotations

from typing import Any

import pytest

from cem.config import identifier_rules
from cem.domain.collect_map import Dialect, Mapped, MapRules, channel_of, corrected_time, map_message, type_slug
from cem.domain.model import Rejection
from cem.domain.reasons import Reason
from cem.domain.validate import check_record, parse_event_time
from cem.settings import CHANNELS, Settings
from streams.ingest import limits_of

RULES = MapRules(channels=frozenset(CHANNELS), skew_tolerance_ms=5_000)
RECEIVED = "2026-11-20T10:00:02.000Z"
RECEIVED_MS = parse_event_time(RECEIVED)
assert RECEIVED_MS is not None

# segment-analytics-python: message built by Client.track/identify/page/screen, then _enqueue (context.library).
SEGMENT_TRACK = {
    "integrations": {}, "anonymousId": None, "properties": {"order_total": 12.5, "items": [{"sku": "A"}],
                                                            "coupon": None},
    "timestamp": "2026-11-20T10:00:00.123+00:00", "context": {"library": {"name": "analytics-python",
                                                                         "version": "2.4.0"}},
    "userId": "u-42", "type": "track", "event": "Order Completed", "messageId": "7c0e-track",
}
SEGMENT_IDENTIFY = {
    "integrations": {}, "anonymousId": "anon-1", "timestamp": "2026-11-20T10:00:00.000+00:00",
    "context": {"library": {"name": "analytics-python", "version": "2.4.0"}}, "type": "identify",
    "userId": "u-42", "traits": {"email": "Jane@Example.com", "phone": "+14155550199", "plan": "pro"},
    "messageId": "7c0e-identify",
}
# rudder-sdk-python: nulls removed (clean), `channel: "server"` added, same library name as Segment's.
RUDDER_PAGE = {
    "integrations": {"All": True}, "anonymousId": "anon-9", "properties": {"path": "/pricing"},
    "timestamp": "2026-11-20T10:00:00+00:00", "context": {"library": {"name": "analytics-python",
                                                                     "version": "2.1.9"}},
    "type": "page", "name": "Pricing", "messageId": "r-page", "channel": "server",
}
# analytics.js, one message to /v1/t: context with userAgent, page, ip; its own sentAt.
BROWSER_TRACK = {
    "type": "track", "event": "Added To Cart", "anonymousId": "b-1", "messageId": "ajs-1",
    "timestamp": "2026-11-20T09:59:00.000Z", "sentAt": "2026-11-20T09:59:00.500Z",
    "context": {"library": {"name": "analytics.js", "version": "next-1.70.0"},
                "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
                "page": {"url": "https://shop.example/cart"}, "ip": "203.0.113.9"},
    "properties": {"sku": "A"},
}
# posthog: capture (with $lib), set ($set), alias ($create_alias), a personless event.
POSTHOG_CAPTURE = {
    "properties": {"$lib": "posthog-python", "$lib_version": "7.91.1", "$current_url": "https://x.example/p",
                   "plan": "pro", "$geoip_disable": True},
    "timestamp": "2026-11-20T10:00:00.500000+00:00", "distinct_id": "u-42", "event": "$pageview",
    "uuid": "0190-aaaa",
}
POSTHOG_SET = {
    "timestamp": "2026-11-20T10:00:00+00:00", "distinct_id": "u-42", "$set": {"email": "jane@example.com"},
    "event": "$set", "uuid": "0190-bbbb", "properties": {"$lib": "posthog-python"},
}


def mapped(message: Any, dialect: Dialect = Dialect.SEGMENT, sent_at: Any = RECEIVED, default: str = "commerce",
           rules: MapRules = RULES) -> Mapped:
    result = map_message(message, dialect, sent_at, RECEIVED_MS, default, rules)
    assert isinstance(result, Mapped), result
    return result


def contract_check(event: dict[str, Any]) -> Any:
    settings = Settings.from_env({})
    return check_record(event, event["channel"], identifier_rules(settings), limits_of(settings), RECEIVED_MS)


def test_segment_track_becomes_a_valid_event_with_its_name_as_type() -> None:
    result = mapped(SEGMENT_TRACK)
    event = result.event
    assert (result.channel, result.event_id) == ("commerce", "7c0e-track")
    assert event["type"] == "order_completed"
    assert event["identifiers"] == {"customer_ref": "u-42"}
    assert event["occurred_at"] == "2026-11-20T10:00:00.123Z"
    assert event["properties"]["event_name"] == "Order Completed"
    assert event["properties"]["items"] == '[{"sku":"A"}]'
    assert "coupon" not in event["properties"]
    assert event["properties"]["client_timestamp"] == SEGMENT_TRACK["timestamp"]
    checked = contract_check(event)
    assert not isinstance(checked, Rejection), checked
    assert checked.properties["order_total"] == "12.5"


def test_segment_identify_traits_email_and_phone_become_identifiers_not_properties() -> None:
    event = mapped(SEGMENT_IDENTIFY).event
    assert event["type"] == "identify"
    assert event["identifiers"] == {"customer_ref": "u-42", "anonymous_id": "anon-1",
                                    "email": "Jane@Example.com", "phone": "+14155550199"}
    assert not {"email", "phone", "plan"} & set(event["properties"])
    checked = contract_check(event)
    assert not isinstance(checked, Rejection), checked
    assert ("email", "jane@example.com") in checked.identifiers


def test_rudderstack_page_keeps_page_name_and_ignores_its_server_channel() -> None:
    result = mapped(RUDDER_PAGE, default="web")
    assert result.channel == "web"  # "server" is not one of ours: the key's default decides
    assert result.event["type"] == "page_view"
    assert result.event["properties"]["event_name"] == "Pricing"
    assert result.event["identifiers"] == {"anonymous_id": "anon-9"}


def test_browser_message_takes_web_channel_user_agent_ip_url_and_its_own_sent_at() -> None:
    result = mapped(BROWSER_TRACK, sent_at=None, default="commerce")
    props = result.event["properties"]
    assert result.channel == "web"
    assert (props["user_agent"], props["ip"], props["url"]) == (
        BROWSER_TRACK["context"]["userAgent"], "203.0.113.9", "https://shop.example/cart")
    # sentAt 09:59:00.5, received 10:00:02: the device is 61.5 s behind; corrected in whole seconds.
    assert result.event["occurred_at"] == "2026-11-20T10:00:02.000Z"
    checked = contract_check(result.event)
    assert not isinstance(checked, Rejection), checked


def test_posthog_capture_set_alias_and_personless() -> None:
    page = mapped(POSTHOG_CAPTURE, Dialect.POSTHOG).event
    assert (page["type"], page["identifiers"], page["event_id"]) == ("page_view", {"customer_ref": "u-42"},
                                                                     "0190-aaaa")
    assert page["properties"]["url"] == "https://x.example/p"
    assert page["properties"]["library"] == "posthog-python"
    person = mapped(POSTHOG_SET, Dialect.POSTHOG).event
    assert person["type"] == "identify"
    assert person["identifiers"] == {"customer_ref": "u-42", "email": "jane@example.com"}
    alias = mapped({"event": "$create_alias", "distinct_id": "anon-7", "uuid": "0190-cccc",
                    "properties": {"distinct_id": "anon-7", "alias": "u-42"},
                    "timestamp": "2026-11-20T10:00:00+00:00"}, Dialect.POSTHOG).event
    assert (alias["type"], alias["identifiers"]) == ("alias", {"customer_ref": "u-42", "anonymous_id": "anon-7"})
    assert "alias" not in alias["properties"] and "distinct_id" not in alias["properties"]
    personless = mapped({"event": "Signed Up", "distinct_id": "d-1", "uuid": "0190-dddd", "timestamp": RECEIVED,
                         "properties": {"$process_person_profile": False, "$anon_distinct_id": "x"}},
                        Dialect.POSTHOG).event
    assert (personless["type"], personless["identifiers"]) == ("signed_up", {"anonymous_id": "d-1"})


def test_segment_alias_links_the_previous_id() -> None:
    event = mapped({"type": "alias", "previousId": "anon-3", "userId": "u-9", "messageId": "al-1",
                    "timestamp": RECEIVED, "context": {}}).event
    assert (event["type"], event["identifiers"]) == ("alias", {"customer_ref": "u-9", "anonymous_id": "anon-3"})


def test_numeric_user_id_and_message_id_become_text() -> None:
    event = mapped({**SEGMENT_TRACK, "userId": 42, "messageId": 1001}).event
    assert (event["event_id"], event["identifiers"]) == ("1001", {"customer_ref": "42"})


@pytest.mark.parametrize(("explicit", "library", "default", "expected"), [
    ("email", "analytics.js", "commerce", "email"),  # an explicit channel wins
    ("server", "analytics.js", "commerce", "web"),  # not ours: the library decides
    (None, "analytics-android", "commerce", "mobile"),
    (None, "posthog-react-native", "", "mobile"),
    (None, "analytics-python", "survey", "survey"),  # a server library: the key's default
    (None, "analytics-python", "", None),  # nothing decides
    ("Email", "", "", None),  # channel names are exact
])
def test_channel_rule(explicit: Any, library: str, default: str, expected: str | None) -> None:
    assert channel_of(explicit, library, default, frozenset(CHANNELS)) == expected


def test_explicit_channel_property_routes_the_event() -> None:
    message = {**SEGMENT_TRACK, "properties": {"channel": "store"}}
    assert mapped(message).channel == "store"


def test_no_channel_and_not_an_object_are_rejections() -> None:
    assert map_message(SEGMENT_TRACK, Dialect.SEGMENT, None, RECEIVED_MS, "", RULES) == Rejection(
        Reason.UNKNOWN_CHANNEL, "no channel property, no known library, and the write key has no default channel")
    for wrong in ([], "text", 3, None):
        result = map_message(wrong, Dialect.SEGMENT, None, RECEIVED_MS, "web", RULES)
        assert isinstance(result, Rejection) and result.reason is Reason.NOT_AN_OBJECT


@pytest.mark.parametrize(("sent_at", "expected"), [
    ("2026-11-20T10:00:01.990Z", "2026-11-20T10:00:00.000Z"),  # 10 ms of latency: within tolerance, untouched
    ("2026-11-20T10:00:06.000Z", "2026-11-20T10:00:00.000Z"),  # 4 s ahead: within tolerance
    ("2026-11-20T09:00:02.000Z", "2026-11-20T11:00:00.000Z"),  # device 1 h behind
    ("2026-11-20T11:00:01.600Z", "2026-11-20T09:00:00.000Z"),  # device 1 h ahead; 400 ms of latency rounded off
    ("2026-11-20T11:00:01.400Z", "2026-11-20T09:00:01.000Z"),  # the same, 600 ms of latency: rounded to 1 s
    (None, "2026-11-20T10:00:00.000Z"),
    ("not a time", "2026-11-20T10:00:00.000Z"),
])
def test_clock_skew_correction(sent_at: Any, expected: str) -> None:
    assert corrected_time("2026-11-20T10:00:00.000Z", sent_at, RECEIVED_MS, 5_000) == expected


def test_retries_with_a_new_sent_at_map_to_the_same_event() -> None:
    """Each attempt of an SDK carries a fresh sentAt and arrives at another time: the event must not change, or the
    resolver would see a conflicting duplicate instead of a retry."""
    first = map_message(BROWSER_TRACK, Dialect.SEGMENT, None, RECEIVED_MS, "web", RULES)
    later = RECEIVED_MS + 30_123
    retry = map_message({**BROWSER_TRACK, "sentAt": "2026-11-20T09:59:30.620Z"}, Dialect.SEGMENT, None, later,
                        "web", RULES)
    assert first == retry
    server = map_message(SEGMENT_TRACK, Dialect.SEGMENT, "2026-11-20T10:00:01.993Z", RECEIVED_MS, "web", RULES)
    server_retry = map_message(SEGMENT_TRACK, Dialect.SEGMENT, "2026-11-20T10:00:31.000Z", RECEIVED_MS + 29_030,
                               "web", RULES)
    assert server == server_retry


def test_missing_or_unreadable_times() -> None:
    assert corrected_time(None, None, RECEIVED_MS, 5_000) == RECEIVED
    assert corrected_time("yesterday", RECEIVED, RECEIVED_MS, 5_000) == "yesterday"  # the worker dead-letters it
    event = mapped({**SEGMENT_TRACK, "timestamp": None, "originalTimestamp": "2026-11-20T09:00:00Z"}).event
    assert event["occurred_at"] == "2026-11-20T09:00:00.000Z"


def test_defects_travel_to_the_worker_checks() -> None:
    """No messageId, no identifier: the event goes out, and the contract names the reason."""
    no_id = mapped({**SEGMENT_TRACK, "messageId": None}).event
    assert contract_check(no_id) == Rejection(Reason.MISSING_FIELD, "event_id")
    nobody = mapped({**SEGMENT_TRACK, "userId": None, "anonymousId": ""}).event
    assert contract_check(nobody) == Rejection(Reason.MISSING_FIELD, "identifiers")


@pytest.mark.parametrize(("name", "slug"), [
    ("Order Completed", "order_completed"), ("$autocapture", "autocapture"), ("checkout/step 2", "checkout_step_2"),
    ("404 page", "event_404_page"), ("", "event"), ("Ünïcode Évent", "unicode_event"), ("$", "event"),
    ("a" * 80, "a" * 64), ("signup.completed:v2", "signup.completed:v2"),
])
def test_type_slug_matches_the_contract_pattern(name: str, slug: str) -> None:
    from cem.domain.validate import TYPE_PATTERN

    assert type_slug(name) == slug
    assert TYPE_PATTERN.match(type_slug(name))


def test_group_traits_describe_the_group_not_the_person() -> None:
    event = mapped({"type": "group", "groupId": "acme", "userId": "u-1", "messageId": "g-1", "timestamp": RECEIVED,
                    "traits": {"email": "billing@acme.example", "name": "Acme"},
                    "context": {"traits": {"email": "jane@acme.example"}}}).event
    assert (event["type"], event["identifiers"]) == ("group", {"customer_ref": "u-1", "email": "jane@acme.example"})
    assert event["properties"]["group_id"] == "acme"


def test_track_takes_the_person_traits_of_its_context() -> None:
    event = mapped({**SEGMENT_TRACK, "context": {"traits": {"email": "jane@example.com", "phone": "+1 415 555 0199"}}}
                   ).event
    assert event["identifiers"] == {"customer_ref": "u-42", "email": "jane@example.com", "phone": "+1 415 555 0199"}

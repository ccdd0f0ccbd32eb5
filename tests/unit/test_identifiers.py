"""cem.domain.identifiers: normalisation per type and the placeholder block-list."""

from __future__ import annotations

import pytest

from cem.domain.identifiers import IdentifierRules, normalise_all, normalise_phone

RULES = IdentifierRules()
GB = IdentifierRules(default_region="GB")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" Alice@Example.COM ", "alice@example.com"),
        ("customer.1@example.org", "customer.1@example.org"),
        ("Customer.0@Example.org ", "customer.0@example.org"),
        ("first+tag@sub.example.co.uk", "first+tag@sub.example.co.uk"),
        ("zoë@exämple.org", "zoë@exämple.org"),
    ],
)
def test_email_trim_and_lower(value: str, expected: str) -> None:
    assert RULES.normalise("email", value) == expected


@pytest.mark.parametrize("value", ["no-at-sign", "a@b", "@example.com", "a b@example.com", "a@b@example.com", "a@"])
def test_malformed_email_is_none(value: str) -> None:
    assert RULES.normalise("email", value) is None


@pytest.mark.parametrize(
    ("rules", "value", "expected"),
    [
        (RULES, "(415) 555-0123", "+14155550123"),
        (RULES, "415.555.0123", "+14155550123"),
        (RULES, "+1 (415) 555-0123", "+14155550123"),
        (RULES, "+44 20 7946 0018", "+442079460018"),
        (RULES, " +44 (0)20 7946 0018 ", "+442079460018"),
        (GB, "020 7946 0018", "+442079460018"),
        (GB, "+1 415 555 0123", "+14155550123"),
    ],
)
def test_phone_to_e164(rules: IdentifierRules, value: str, expected: str) -> None:
    assert rules.normalise("phone", value) == expected


def test_phone_default_region_is_part_of_the_cache_key() -> None:
    assert GB.normalise("phone", "020 7946 0018") == "+442079460018"
    assert RULES.normalise("phone", "020 7946 0018") != "+442079460018"
    assert normalise_phone("020 7946 0018", "GB") == "+442079460018"


@pytest.mark.parametrize("value", ["abc", "12", "+", "555", "+44 20"])
def test_impossible_phone_is_none(value: str) -> None:
    assert RULES.normalise("phone", value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Twitter:@Foo", "twitter:foo"),
        (" twitter : @Foo ", "twitter:foo"),
        ("@Foo", "foo"),
        ("instagram:bar_baz", "instagram:bar_baz"),
    ],
)
def test_social_handle(value: str, expected: str) -> None:
    assert RULES.normalise("social_handle", value) == expected


@pytest.mark.parametrize("value", ["twitter:@", "twitter:", ":foo", "@"])
def test_incomplete_social_handle_is_none(value: str) -> None:
    assert RULES.normalise("social_handle", value) is None


@pytest.mark.parametrize(
    ("id_type", "value", "expected"),
    [
        ("anonymous_id", " anon-4f2a ", "anon-4f2a"),
        ("device_id", "Dev-ABC", "Dev-ABC"),  # opaque ids keep their case
        ("customer_ref", "CRM-100001", "CRM-100001"),
    ],
)
def test_opaque_ids_are_trimmed_only(id_type: str, value: str, expected: str) -> None:
    assert RULES.normalise(id_type, value) == expected


BLOCKED = [
    "null", "NULL", '"null"', "'null'", " Null ", "undefined", "Undefined", "anonymous", "unknown", "guest", "0",
    "-1", "n/a", "N/A", "", "   ", "00000000-0000-0000-0000-000000000000", "0000000000000000", "NaN", "none",
    "[object Object]", "xxxxxxx", "9999999",
]


@pytest.mark.parametrize("id_type", ["anonymous_id", "device_id", "customer_ref", "social_handle", "phone"])
@pytest.mark.parametrize("value", BLOCKED)
def test_blocked_values_are_none(id_type: str, value: str) -> None:
    assert RULES.normalise(id_type, value) is None


@pytest.mark.parametrize(
    "value",
    ["test@test.com", "TEST@test.com", " test@example.com ", "null@example.com", "NULL@Example.com",
     "undefined@company.com", '"null"', "null", ""],
)
def test_blocked_emails_are_none(value: str) -> None:
    assert RULES.normalise("email", value) is None


@pytest.mark.parametrize("value", ["0000000000", "+0000000", "-1"])
def test_blocked_phones_are_none(value: str) -> None:
    assert RULES.normalise("phone", value) is None


def test_too_long_value_is_none() -> None:
    long_value = "a" * 250 + "@example.com"
    assert len(long_value) > 256
    assert RULES.normalise("email", long_value) is None
    assert RULES.normalise("anonymous_id", "x" * 257) is None
    assert RULES.normalise("anonymous_id", "x" * 255 + "y") == "x" * 255 + "y"


@pytest.mark.parametrize("value", ["anon-123", "dev-8c1e", "1234", "nullable", "guest-42", "user-7", "O"])
def test_normal_values_pass(value: str) -> None:
    assert not RULES.is_blocked(value)
    assert RULES.normalise("anonymous_id", value) == value


def test_custom_block_list() -> None:
    rules = IdentifierRules(blocked_values=frozenset({"shared-kiosk"}), blocked_patterns=(r"^kiosk-\d+$",))
    assert rules.normalise("device_id", "Shared-Kiosk") is None
    assert rules.normalise("device_id", "kiosk-12") is None
    assert rules.normalise("device_id", "null") == "null"  # the defaults were replaced


def test_normalise_all_drops_blocked_and_sorts() -> None:
    raw = {
        "phone": "(415) 555-0123",
        "email": " Bob@X.com ",
        "anonymous_id": "undefined",
        "device_id": "00000000-0000-0000-0000-000000000000",
        "customer_ref": '"null"',
        "social_handle": "Twitter:@Bob",
    }
    assert normalise_all(raw, RULES) == (
        ("email", "bob@x.com"),
        ("phone", "+14155550123"),
        ("social_handle", "twitter:bob"),
    )


def test_normalise_all_dedups_equal_results() -> None:
    # One map holds one value per type, so equal results come from re-normalising: idempotent and unique.
    first = normalise_all({"email": "Bob@X.com", "phone": "+1 415 555 0123"}, RULES)
    again = normalise_all(dict(first), RULES)
    assert first == again == (("email", "bob@x.com"), ("phone", "+14155550123"))
    assert len(set(first)) == len(first)


def test_normalise_all_of_only_placeholders_is_empty() -> None:
    assert normalise_all({"email": "null", "anonymous_id": "anonymous", "device_id": "0", "phone": ""}, RULES) == ()

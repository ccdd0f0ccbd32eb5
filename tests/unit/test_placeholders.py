"""The default block-list, class by class: what clients and CRMs send when they do not know the identifier, and the
real values next to them that must keep linking."""

from __future__ import annotations

import pytest

from cem.domain.identifiers import IdentifierRules, is_placeholder_phone, normalise_all
from cem.domain.identity import IdentityGraph

RULES = IdentifierRules()


@pytest.mark.parametrize(
    "value",
    [
        # placeholder local parts, at any domain
        "noemail@noemail.com", "NoEmail@gmail.com", "no-email@shop.com", "no_email@shop.com", "nomail@shop.com",
        "customer@example.com", "Customer@Shop.com", "client@shop.com", "none@shop.com", "noreply@shop.com",
        "donotreply@shop.com", "do-not-reply@shop.com", "nobody@shop.com", "dummy@shop.com", "fake@shop.com",
        "tbd@shop.com", "unknown@shop.com", "guest@shop.com", "0@shop.com", "xxxxxx@shop.com",
        # placeholder domains
        "jane@noemail.com", "jane@no-email.com", "jane@nomail.com", "jane@none.com", "jane@null.com",
        "jane@fake.com", "jane@invalid.com", "jane@test.com",
        # reserved top-level domains
        "jane@shop.test", "jane@mail.example", "jane@host.invalid", "jane@localhost.localhost",
        # one character at a one-character domain, repeated characters
        "x@x.com", "X@X.COM", "a@b.co", "xx@xx.com", "aaa@aaa.org",
    ],
)
def test_placeholder_emails_are_none(value: str) -> None:
    assert RULES.normalise("email", value) is None


@pytest.mark.parametrize(
    "value",
    ["jane.doe@gmail.com", "jane@email.com", "jane@mail.com", "jo@x.com", "x@company.com", "jane@x.co.uk",
     "customer.7@example.org", "customer.0@example.org", "customers@shop.com", "client.care@shop.com",
     "test.pilot@gmail.com", "nobody.special@gmail.com", "jane@testing.com", "jane@contest.com",
     "ab@ab.com", "jane@example.org", "ios.dev@shop.com"],
)
def test_real_emails_pass(value: str) -> None:
    assert RULES.normalise("email", value) == value.lower()


@pytest.mark.parametrize(
    "value",
    ["1234567890", "123-456-7890", "(123) 456-7890", "+1 123 456 7890", "0123456789", "9876543210",
     "(987) 654-3210", "555-555-5555", "(555) 555-5555", "(999) 999-9999", "999.999.9999", "+1 (999) 999-9999",
     "1111111111", "+44 2222 222222", "555-123-4567", "(415) 765-4321", "+33 1 23 45 67 89"],
)
def test_placeholder_phones_are_none(value: str) -> None:
    assert RULES.normalise("phone", value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("+1 (415) 555-0123", "+14155550123"), ("+44 20 7946 0018", "+442079460018"),
     ("+1 212 736 5000", "+12127365000"), ("+33 1 42 68 53 00", "+33142685300"), ("(415) 555-1234", "+14155551234"),
     ("+1 415 555 5556", "+14155555556"), ("+49 30 1234 5670", "+493012345670")],
)
def test_real_phones_pass(value: str, expected: str) -> None:
    assert RULES.normalise("phone", value) == expected


def test_placeholder_phone_check_needs_a_parsable_number() -> None:
    assert not is_placeholder_phone("not a number")
    assert is_placeholder_phone("+15555555555")
    assert not is_placeholder_phone("+14155550123")


def test_phone_placeholders_can_be_switched_off() -> None:
    assert IdentifierRules(block_placeholder_phones=False).normalise("phone", "1234567890") == "+11234567890"


@pytest.mark.parametrize(
    "value",
    ["twitter:null", "Twitter:@null", "twitter:undefined", "instagram:none", "facebook:unknown", "twitter:0",
     "twitter:n/a", "tiktok:anonymous", "twitter:tbd", "twitter:xx", "null", "@undefined"],
)
def test_placeholder_social_handles_are_none(value: str) -> None:
    assert RULES.normalise("social_handle", value) is None


@pytest.mark.parametrize("value", ["twitter:nullbyte", "twitter:none_such", "instagram:tbd_studio", "twitter:x0"])
def test_real_social_handles_pass(value: str) -> None:
    assert RULES.normalise("social_handle", value) == value


@pytest.mark.parametrize(
    "value",
    ["ios", "iOS", "android", "Android", "iphone", "iPhone", "ipad", "web", "unknown", "desktop", "mobile", "tablet",
     "browser", "Web Browser", "simulator", "iPhone Simulator", "emulator", "kiosk", "device", "iPhone14,2",
     "iPad13,18", "x86_64", "arm64", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X)", "iOS 17.2",
     "android-14", "Windows 11", "macos_14.1"],
)
@pytest.mark.parametrize("id_type", ["device_id", "anonymous_id"])
def test_generic_device_names_are_none(id_type: str, value: str) -> None:
    assert RULES.normalise(id_type, value) is None


@pytest.mark.parametrize("value", ["dev-8c1e", "ios-7f3a9c", "android-a1b2c3d4", "kiosk-42", "web-5f2a",
                                   "6F9619FF-8B86-D011-B42D-00C04FC964FF"])
def test_real_device_ids_pass(value: str) -> None:
    assert RULES.normalise("device_id", value) == value


def test_device_names_block_only_device_types() -> None:
    # "web" is no device id, but a CRM may well have a customer whose reference is WEB-1 or an email ios@corp.com.
    assert RULES.normalise("customer_ref", "WEB-1") == "WEB-1"
    assert RULES.normalise("email", "ios@corp.com") == "ios@corp.com"


@pytest.mark.parametrize(
    "value",
    ["TBD", "tbd", "TBA", "todo", "pending", "placeholder", "dummy", "N/A", "not provided", "missing", "xx", "xxx",
     "CRM-0", "crm-000", "CUST_0", "id#0", "ref:0000", "CRM-null", "user-undefined", "crm-none", "CRM-TBD",
     "crm-xxx", "acct n/a"],
)
@pytest.mark.parametrize("id_type", ["customer_ref", "anonymous_id", "device_id"])
def test_placeholder_refs_are_none(id_type: str, value: str) -> None:
    assert RULES.normalise(id_type, value) is None


@pytest.mark.parametrize("value", ["CRM-1", "CRM-10", "CRM-100000", "CRM-0001", "crm-01", "CUST_10",
                                   "crm-nullable", "crm-test-7", "A-0B", "0-CRM", "2023-00"])
def test_real_refs_pass(value: str) -> None:
    assert RULES.normalise("customer_ref", value) == value


def test_the_attackers_placeholders_glue_nobody() -> None:
    """20 people sharing each of the placeholders the attacker tried stay 20 customers."""
    placeholders = {
        "email": ["noemail@noemail.com", "customer@example.com", "x@x.com"],
        "phone": ["1234567890", "555-555-5555", "(999) 999-9999"],
        "social_handle": ["twitter:null"],
        "device_id": ["ios"],
        "customer_ref": ["CRM-0", "TBD"],
    }
    for id_type, values in placeholders.items():
        for value in values:
            graph = IdentityGraph()
            customers = set()
            for person in range(20):
                raw = {id_type: value, "anonymous_id": f"anon-{person + 1}"}
                identifiers = normalise_all(raw, RULES)
                assert identifiers == (("anonymous_id", f"anon-{person + 1}"),), (id_type, value)
                customers.add(graph.attribute(f"{value}-{person}", person, identifiers).customer_id)
            assert len(customers) == 20, (id_type, value)


def test_extra_values_and_patterns_still_apply() -> None:
    # A back-reference in an extra pattern counts its own groups, not those of the default patterns.
    rules = IdentifierRules(blocked_values=RULES.blocked_values | {"shared-kiosk"},
                            blocked_patterns=(*RULES.blocked_patterns, r"^[^@]+@example\.(com|org|net)$",
                                              r"^(ab)\1$"))
    assert rules.normalise("device_id", "abab") is None
    assert rules.normalise("device_id", "Shared-Kiosk") is None
    assert rules.normalise("email", "jane@example.org") is None
    assert rules.normalise("device_id", "ios") is None  # the defaults of each type stay
    assert rules.normalise("email", "jane@shop.org") == "jane@shop.org"

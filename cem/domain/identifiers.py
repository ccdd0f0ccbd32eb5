"""Identifier normalisation and the placeholder block-list. Pure; results are cached because the same
identifiers recur on most events of a customer.

The block-list (docs/identity.md, "Placeholders") has a part for every type and parts for one type: placeholder
e-mail local parts and domains, phone numbers made of one repeated digit or a run of digits, generic device names.
A value that slips through and is shared by many people is caught by shared-identifier detection instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from threading import Lock

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata

from cem.domain.model import IDENTIFIER_TYPES, Identifier

# Values that clients send when they do not know the id. PostHog's list plus what we have seen in the field.
DEFAULT_BLOCKED_VALUES: frozenset[str] = frozenset(
    {
        "", "null", "none", "nil", "undefined", "anonymous", "anon", "unknown", "guest", "0", "-1",
        "n/a", "na", "nan", "[object object]", "false", "true", "test", "user", "default", "email",
        "test@test.com", "test@example.com", "user@example.com", "email@example.com",
        "noreply@example.com", "no-reply@example.com", "none@none.com", "null@null.com",
        # Typed into forms and CRM fields when the real value is unknown; also checked as e-mail local parts.
        "tbd", "tba", "todo", "pending", "placeholder", "dummy", "fake", "sample", "example", "missing", "empty",
        "blank", "invalid", "notprovided", "not provided", "not available", "declined", "nobody", "noone",
        "no-one", "someone", "customer", "client", "noemail", "no-email", "no_email", "nomail", "no-mail",
        "noreply", "no-reply", "no_reply", "donotreply", "do-not-reply", "do_not_reply", "donotemail", "unknown user",
    }
)
DEFAULT_BLOCKED_PATTERNS: tuple[str, ...] = (
    r"^0+$",  # all zeros, including zero-filled device ids without dashes
    r"^[0-]+$",  # 00000000-0000-0000-0000-000000000000
    r"^-?1$",
    r"^(.)\1{5,}$",  # one repeated character: xxxxxxx, 9999999
    r"^\+?0+$",
    r"^x{2,}$",  # xx, xxx
    # A prefix, a separator, then nothing real: CRM-0, cust_000, twitter:null, user-undefined, id#tbd
    r"^[a-z][a-z0-9_]{0,19}[-_:/# ]+(0+|null|none|nil|undefined|unknown|nan|n/?a|tbd|tba|test|x+)$",
)
# E-mail: placeholder domains (never a person's mailbox) and patterns of the whole address.
DEFAULT_BLOCKED_EMAIL_DOMAINS: frozenset[str] = frozenset(
    {"noemail.com", "no-email.com", "noemail.net", "nomail.com", "none.com", "null.com", "fake.com", "invalid.com",
     "test.com", "noreply.com", "donotreply.com"}
)
DEFAULT_BLOCKED_EMAIL_PATTERNS: tuple[str, ...] = (
    r"\.(test|example|invalid|localhost)$",  # top-level domains reserved for tests and examples (RFC 2606)
    r"^[^@]@[^@.]\.[a-z]{2,}$",  # one character at a one-character domain: x@x.com, a@b.co
    r"^([a-z0-9])\1*@\1+\.[a-z]{2,}$",  # xx@xx.com, aaa@aaa.org
)
# Device and browser ids: generic names and model or OS strings that SDKs send instead of an id.
DEFAULT_BLOCKED_DEVICE_NAMES: frozenset[str] = frozenset(
    {"ios", "android", "iphone", "ipad", "ipod", "web", "www", "browser", "web browser", "desktop", "mobile",
     "mobile web", "mobile app", "app", "tablet", "phone", "smartphone", "pc", "mac", "macos", "windows", "linux",
     "chrome", "safari", "firefox", "edge", "device", "unknown device", "simulator", "emulator", "iphone simulator",
     "android emulator", "generic", "kiosk", "pos", "terminal", "tv", "console", "watch", "other", "server"}
)
DEFAULT_BLOCKED_DEVICE_PATTERNS: tuple[str, ...] = (
    r"^(iphone|ipad|ipod|watch|appletv)\d+,\d+$",  # hardware model identifiers: one per model, not per device
    r"^(x86_64|arm64|aarch64|amd64|i386)$",
    r"^mozilla/",  # a user agent
    r"^(ios|ipados|android|windows|macos|mac os x|linux)[ _/-]?v?[\d.]+$",  # an OS and its version
)
DEVICE_TYPES: frozenset[str] = frozenset({"device_id", "anonymous_id"})
# Phone numbers (national significant number) that are a run of digits: 1234567890, (987) 654-3210.
ASCENDING_DIGITS = "01234567890123456789"
DESCENDING_DIGITS = "98765432109876543210"


class Patterns:
    """Regexes tried one by one: joined into one, a back-reference would count the groups of the others."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.compiled = tuple(re.compile(p) for p in patterns)

    def match(self, value: str) -> bool:
        return any(p.match(value) for p in self.compiled)

    def search(self, value: str) -> bool:
        return any(p.search(value) for p in self.compiled)


# Results of IdentifierRules.normalise kept per rules object; cleared whole when full (cheap and bounded).
NORMALISED_CACHE_MAX = 262_144


@dataclass(frozen=True)
class IdentifierRules:
    default_region: str = "US"
    blocked_values: frozenset[str] = DEFAULT_BLOCKED_VALUES
    blocked_patterns: tuple[str, ...] = DEFAULT_BLOCKED_PATTERNS
    types: tuple[str, ...] = IDENTIFIER_TYPES
    max_value_chars: int = 256
    blocked_email_domains: frozenset[str] = DEFAULT_BLOCKED_EMAIL_DOMAINS
    blocked_email_patterns: tuple[str, ...] = DEFAULT_BLOCKED_EMAIL_PATTERNS
    blocked_device_names: frozenset[str] = DEFAULT_BLOCKED_DEVICE_NAMES
    blocked_device_patterns: tuple[str, ...] = DEFAULT_BLOCKED_DEVICE_PATTERNS
    block_placeholder_phones: bool = True
    _compiled: Patterns = field(init=False, repr=False, compare=False)
    _email_compiled: Patterns = field(init=False, repr=False, compare=False)
    _device_compiled: Patterns = field(init=False, repr=False, compare=False)
    _known_types: frozenset[str] = field(init=False, repr=False, compare=False)
    _cache: dict[tuple[str, str], str | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", Patterns(self.blocked_patterns))
        object.__setattr__(self, "_email_compiled", Patterns(self.blocked_email_patterns))
        object.__setattr__(self, "_device_compiled", Patterns(self.blocked_device_patterns))
        preload_phone_metadata()
        object.__setattr__(self, "_known_types", frozenset(self.types))
        object.__setattr__(self, "_cache", {})

    def unknown_types(self, id_types: Iterable[str]) -> list[str]:
        """The identifier types this rule set does not know, sorted (empty when all are known)."""
        known = self._known_types
        return sorted(t for t in id_types if t not in known)

    def is_blocked(self, value: str) -> bool:
        bare = value.strip().strip("\"'").strip().lower()
        return bare in self.blocked_values or self._compiled.match(bare)

    def normalise(self, id_type: str, value: str) -> str | None:
        """The canonical form of one identifier, or None when it must never link anyone.

        Memoised per rules object: a customer's identifiers recur on most of its events, and the uncached path
        (three block-list checks, and phonenumbers for phones) costs several microseconds."""
        key = (id_type, value)
        cache = self._cache
        try:
            return cache[key]
        except KeyError:
            pass
        result = self._normalise_uncached(id_type, value)
        if len(cache) >= NORMALISED_CACHE_MAX:
            cache.clear()
        cache[key] = result
        return result

    def _normalise_uncached(self, id_type: str, value: str) -> str | None:
        if len(value) > self.max_value_chars:
            return None
        if self.is_blocked(value):
            return None
        normalised = _normalise(id_type, value.strip(), self.default_region)
        if normalised is None or self.is_blocked(normalised) or self.is_placeholder(id_type, normalised):
            return None
        return normalised

    def is_placeholder(self, id_type: str, normalised: str) -> bool:
        """The checks of one type, on the normalised value."""
        if id_type == "email":
            # A placeholder local part ("null@x.com", "customer@shop.com") is no identity either.
            local, _, domain = normalised.rpartition("@")
            return (self.is_blocked(local) or domain in self.blocked_email_domains
                    or self._email_compiled.search(normalised))
        if id_type == "phone":
            return self.block_placeholder_phones and is_placeholder_phone(normalised)
        if id_type == "social_handle":
            return self.is_blocked(normalised.rpartition(":")[2])  # twitter:null, instagram:undefined
        if id_type in DEVICE_TYPES:
            bare = normalised.lower()
            return bare in self.blocked_device_names or self._device_compiled.search(bare)
        return False


@lru_cache(maxsize=262_144)
def _normalise(id_type: str, value: str, default_region: str) -> str | None:
    if id_type == "email":
        email = value.lower()
        local, at, domain = email.partition("@")
        if not at or not local or "." not in domain or " " in email or "@" in domain:
            return None
        return email
    if id_type == "phone":
        return normalise_phone(value, default_region)
    if id_type == "social_handle":
        platform, sep, handle = value.lower().partition(":")
        if not sep:
            return value.lower().lstrip("@") or None
        handle = handle.strip().lstrip("@")
        return f"{platform.strip()}:{handle}" if platform.strip() and handle else None
    return value or None


def normalise_phone(value: str, default_region: str) -> str | None:
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_placeholder_phone(e164: str) -> bool:
    """One repeated digit (555-555-5555, (999) 999-9999) or a run of digits (1234567890, 987-654-3210; also
    555-123-4567, whose last seven digits are a run), after the country code."""
    try:
        national = phonenumbers.national_significant_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return False
    if len(set(national)) == 1:
        return True
    for digits in (national, national[-7:]):
        if len(digits) >= 7 and (digits in ASCENDING_DIGITS or digits in DESCENDING_DIGITS):
            return True
    return False


_preload_lock = Lock()
_preloaded = False


def preload_phone_metadata() -> None:
    """Load every region's phone metadata now, once per process. phonenumbers loads it lazily on first use under
    a lock that an exception during the load leaves held, which would hang every later parse: never load lazily
    while events flow. Costs about 60 ms and 2 MB."""
    global _preloaded
    with _preload_lock:
        if not _preloaded:
            PhoneMetadata.load_all()
            _preloaded = True


def normalise_all(raw: dict[str, str], rules: IdentifierRules) -> tuple[Identifier, ...]:
    """Normalised, de-duplicated, sorted identifiers; unusable values are dropped."""
    normalise = rules.normalise
    found: set[Identifier] = set()
    for id_type, value in raw.items():
        normalised = normalise(id_type, value)
        if normalised is not None:
            found.add((id_type, normalised))
    if len(found) == 1:
        return (found.pop(),)
    return tuple(sorted(found))

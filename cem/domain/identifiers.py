"""Identifier normalisation and the placeholder block-list. Pure; results are cached because the same
identifiers recur on most events of a customer."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import phonenumbers

from cem.domain.model import IDENTIFIER_TYPES, Identifier

# Values that clients send when they do not know the id. PostHog's list plus what we have seen in the field.
DEFAULT_BLOCKED_VALUES: frozenset[str] = frozenset(
    {
        "", "null", "none", "nil", "undefined", "anonymous", "anon", "unknown", "guest", "0", "-1",
        "n/a", "na", "nan", "[object object]", "false", "true", "test", "user", "default", "email",
        "test@test.com", "test@example.com", "user@example.com", "email@example.com",
        "noreply@example.com", "no-reply@example.com", "none@none.com", "null@null.com",
    }
)
DEFAULT_BLOCKED_PATTERNS: tuple[str, ...] = (
    r"^0+$",  # all zeros, including zero-filled device ids without dashes
    r"^[0-]+$",  # 00000000-0000-0000-0000-000000000000
    r"^-?1$",
    r"^(.)\1{5,}$",  # one repeated character: xxxxxxx, 9999999
    r"^\+?0+$",
)


# Results of IdentifierRules.normalise kept per rules object; cleared whole when full (cheap and bounded).
NORMALISED_CACHE_MAX = 262_144


@dataclass(frozen=True)
class IdentifierRules:
    default_region: str = "US"
    blocked_values: frozenset[str] = DEFAULT_BLOCKED_VALUES
    blocked_patterns: tuple[str, ...] = DEFAULT_BLOCKED_PATTERNS
    types: tuple[str, ...] = IDENTIFIER_TYPES
    max_value_chars: int = 256
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _known_types: frozenset[str] = field(init=False, repr=False, compare=False)
    _cache: dict[tuple[str, str], str | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", re.compile("|".join(f"(?:{p})" for p in self.blocked_patterns)))
        object.__setattr__(self, "_known_types", frozenset(self.types))
        object.__setattr__(self, "_cache", {})

    def unknown_types(self, id_types: Iterable[str]) -> list[str]:
        """The identifier types this rule set does not know, sorted (empty when all are known)."""
        known = self._known_types
        return sorted(t for t in id_types if t not in known)

    def is_blocked(self, value: str) -> bool:
        bare = value.strip().strip("\"'").strip().lower()
        return bare in self.blocked_values or bool(self._compiled.match(bare))

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
        if normalised is None or self.is_blocked(normalised):
            return None
        # An email whose local part is a placeholder ("null@x.com") is no identity either.
        if id_type == "email" and self.is_blocked(normalised.split("@", 1)[0]):
            return None
        return normalised


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

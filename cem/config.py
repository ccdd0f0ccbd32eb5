"""Domain configuration objects built from Settings: the one place CEM_* strings become typed rules."""

from __future__ import annotations

import tomllib
from pathlib import Path

from cem.domain.alerts import AlertEngine, RuleFileError, RuleSet, parse_rules
from cem.domain.collect_map import MapRules
from cem.domain.collect_request import RequestRules
from cem.domain.identifiers import DEFAULT_BLOCKED_PATTERNS, DEFAULT_BLOCKED_VALUES, IdentifierRules
from cem.domain.identity import DEFAULT_TYPE_LIMITS, IDENTIFIER_PRIORITY
from cem.domain.model import IDENTIFIER_TYPES
from cem.domain.resolver import DAY_MS, ResolverConfig
from cem.settings import CHANNELS, Settings


def _items(text: str, sep: str = ",") -> list[str]:
    return [item.strip() for item in text.split(sep) if item.strip()]


def extra_types(settings: Settings) -> tuple[str, ...]:
    return tuple(t for t in _items(settings.identifier_types_extra) if t not in IDENTIFIER_TYPES)


def type_limits(settings: Settings) -> dict[str, int]:
    limits = dict(DEFAULT_TYPE_LIMITS)
    for id_type in extra_types(settings):
        limits.setdefault(id_type, 5)
    for item in _items(settings.identifier_limits):
        id_type, _, number = item.partition("=")
        if not number.strip().isdigit():
            raise ValueError(f"CEM_IDENTIFIER_LIMITS: {item!r} is not type=number")
        limits[id_type.strip()] = int(number)
    return limits


def identifier_priority(settings: Settings) -> dict[str, int]:
    """The built-in types' order, strongest first, then the extra types in the order given (weakest last)."""
    priority = dict(IDENTIFIER_PRIORITY)
    for rank, id_type in enumerate(extra_types(settings), start=len(IDENTIFIER_PRIORITY)):
        priority.setdefault(id_type, rank)
    return priority


def weak_identifier_types(settings: Settings) -> frozenset[str]:
    return frozenset(_items(settings.weak_identifier_types))


def identifier_rules(settings: Settings) -> IdentifierRules:
    return IdentifierRules(
        default_region=settings.phone_default_region,
        blocked_values=DEFAULT_BLOCKED_VALUES | {v.lower() for v in _items(settings.blocked_values_extra)},
        blocked_patterns=DEFAULT_BLOCKED_PATTERNS + tuple(_items(settings.blocked_patterns_extra, ";;")),
        types=IDENTIFIER_TYPES + extra_types(settings),
    )


def resolver_config(settings: Settings) -> ResolverConfig:
    return ResolverConfig(
        dedup_window_ms=int(settings.dedup_window_days * DAY_MS),
        session_gap_ms=int(settings.session_gap_minutes * 60_000),
        fcr_window_ms=int(settings.fcr_window_days * DAY_MS),
        type_limits=type_limits(settings),
        identifier_priority=identifier_priority(settings),
        weak_identifier_types=weak_identifier_types(settings),
        shared_weak_threshold=settings.shared_weak_threshold,
    )


def collect_write_keys(settings: Settings) -> dict[str, str]:
    """CEM_COLLECT_WRITE_KEYS, `key=channel,key2`: each write key with its default channel ("" for none)."""
    keys: dict[str, str] = {}
    for item in _items(settings.collect_write_keys):
        key, _, channel = item.partition("=")
        if channel.strip() and channel.strip() not in CHANNELS:
            raise ValueError(f"CEM_COLLECT_WRITE_KEYS: {channel.strip()!r} is not a channel ({', '.join(CHANNELS)})")
        keys[key.strip()] = channel.strip()
    return keys


def collect_rules(settings: Settings) -> tuple[RequestRules, MapRules]:
    return (RequestRules(write_keys=collect_write_keys(settings), max_event_bytes=settings.collect_max_event_bytes,
                         max_batch_bytes=settings.collect_max_batch_bytes),
            MapRules(channels=frozenset(CHANNELS),
                     skew_tolerance_ms=int(settings.collect_clock_skew_tolerance_seconds * 1000)))


DEFAULT_ALERT_RULES = Path(__file__).parent / "alert_rules.toml"


def alert_rules(settings: Settings) -> RuleSet:
    """The rule file of CEM_ALERT_RULES (default: the built-in one), validated: RuleFileError says what is wrong."""
    path = Path(settings.alert_rules) if settings.alert_rules else DEFAULT_ALERT_RULES
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleFileError(f"CEM_ALERT_RULES: cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError(f"CEM_ALERT_RULES: {path} is not valid TOML: {exc}") from None
    try:
        return parse_rules(document, CHANNELS)
    except RuleFileError as exc:
        raise RuleFileError(f"CEM_ALERT_RULES: {path}: {exc}") from None


def alert_engine(settings: Settings, rules: RuleSet | None = None) -> AlertEngine:
    return AlertEngine(rules or alert_rules(settings), idle_ms=int(settings.alert_idle_seconds * 1000),
                       lateness_ms=int(settings.alert_lateness_seconds * 1000),
                       retention_ms=int(settings.dedup_window_days * DAY_MS))

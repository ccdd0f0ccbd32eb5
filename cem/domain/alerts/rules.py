"""Alert rules: their typed form and the validation of a rule file (TOML, docs/alerts.md "Rule file").

`parse_rules(document, channels)` takes the parsed TOML document (a dict) and returns a RuleSet, or raises
RuleFileError listing every problem found, each naming the rule by its position and name. Unknown keys are errors
(a misspelt threshold must not silently fall back to its default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from cem.domain.text.cues import EMOTIONS

HOUR_MS = 3_600_000
DEFAULT_DIGITAL = ("web", "mobile", "chat", "email", "social")
DEFAULT_PHONE = ("call_center",)
SEVERITIES = ("low", "medium", "high", "critical")


class RuleFileError(ValueError):
    """The rule file is malformed: the worker refuses to start."""


@dataclass(frozen=True)
class Detractor:
    """A survey answer at or under a threshold whose comment is negative or effortful."""

    name: str
    severity: str = "high"
    nps_max: int = 6
    csat_max: int = 2
    ces_max: int = 3
    comment_sentiment_max: float = -0.5  # text sentiment, -5..+5
    comment_effort_max: float = -2.0  # effort, -5 (very hard)..+5
    kind: str = "detractor"


@dataclass(frozen=True)
class RepeatContact:
    """`min_contacts` contacts about one issue within `window_hours`."""

    name: str
    severity: str = "medium"
    min_contacts: int = 2
    window_hours: float = 168.0
    kind: str = "repeat_contact"


@dataclass(frozen=True)
class ChannelSwitch:
    """A journey that moves from a digital channel to the phone, or reaches `max_channels` channels."""

    name: str
    severity: str = "medium"
    digital_channels: tuple[str, ...] = DEFAULT_DIGITAL
    phone_channels: tuple[str, ...] = DEFAULT_PHONE
    max_channels: int = 3
    kind: str = "channel_switch"


@dataclass(frozen=True)
class SlaBreach:
    """A journey still unresolved `hours` after its first contact (by priority, else by channel, else default)."""

    name: str
    severity: str = "high"
    hours: float = 48.0
    hours_by_channel: Mapping[str, float] = field(default_factory=dict)
    hours_by_priority: Mapping[str, float] = field(default_factory=dict)
    priority_property: str = "priority"
    kind: str = "sla_breach"

    def deadline_ms(self, first_ms: int, channel: str, priority: str) -> int:
        hours = self.hours_by_priority.get(priority, self.hours_by_channel.get(channel, self.hours))
        return first_ms + int(hours * HOUR_MS)


@dataclass(frozen=True)
class ChannelTrend:
    """On a channel, the events showing `emotion` (or a negative text) in an hour reach `min_count` and `factor`
    times the hour before."""

    name: str
    severity: str = "high"
    channels: tuple[str, ...] = ()  # empty: every channel
    emotion: str = "anger"  # an emotion of cem.domain.text, or "negative" (text sentiment <= -0.5)
    factor: float = 2.0
    min_count: int = 5
    kind: str = "channel_trend"


@dataclass(frozen=True)
class CustomerDrop:
    """A customer's text sentiment falls by `drop` or more from her previous text within `window_hours`."""

    name: str
    severity: str = "medium"
    drop: float = 4.0
    window_hours: float = 24.0
    kind: str = "customer_drop"


Rule = Detractor | RepeatContact | ChannelSwitch | SlaBreach | ChannelTrend | CustomerDrop
KINDS: dict[str, type[Any]] = {cls.kind: cls for cls in (Detractor, RepeatContact, ChannelSwitch, SlaBreach,  # type: ignore[attr-defined]
                                                           ChannelTrend, CustomerDrop)}
JOURNEY_KINDS = frozenset({"repeat_contact", "channel_switch", "sla_breach"})


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()

    def of(self, cls: type[Any]) -> list[Any]:
        return [rule for rule in self.rules if isinstance(rule, cls)]

    def named(self, name: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.name == name), None)


def parse_rules(document: Mapping[str, Any], channels: Sequence[str]) -> RuleSet:
    problems: list[str] = []
    extra = set(document) - {"rule"}
    if extra:
        problems.append(f"unknown top-level keys {sorted(extra)} (rules are [[rule]] tables)")
    entries = document.get("rule", [])
    if not isinstance(entries, list):
        raise RuleFileError("`rule` must be an array of tables: write each rule as [[rule]]")
    rules: list[Rule] = []
    names: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        rule, found = _parse_rule(index, entry, channels)
        problems += found
        if rule is not None:
            if rule.name in names:
                problems.append(f"rule #{index} ({rule.name}): the name is used twice")
            names.add(rule.name)
            rules.append(rule)
    if problems:
        raise RuleFileError("invalid alert rules:\n  " + "\n  ".join(problems))
    return RuleSet(tuple(rules))


def _parse_rule(index: int, entry: Any, channels: Sequence[str]) -> tuple[Rule | None, list[str]]:
    if not isinstance(entry, Mapping):
        return None, [f"rule #{index}: not a table"]
    name, kind = entry.get("name"), entry.get("kind")
    where = f"rule #{index} ({name})" if isinstance(name, str) else f"rule #{index}"
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        return None, [f"{where}: `name` must be letters, digits, - and _"]
    if kind not in KINDS:
        return None, [f"{where}: `kind` must be one of {sorted(KINDS)}, got {kind!r}"]
    cls = KINDS[kind]
    known = {f.name: f for f in fields(cls)}
    problems = [f"{where}: unknown key {key!r} for kind {kind} (known: {sorted(set(known) - {'kind'})})"
                for key in entry if key not in known]
    values: dict[str, Any] = {}
    for key, value in entry.items():
        if key in known and key not in ("kind", "name"):
            converted = _convert(value, cls.__dataclass_fields__[key].default, key)
            if isinstance(converted, str) and converted.startswith("!"):
                problems.append(f"{where}: {converted[1:]}")
            else:
                values[key] = converted
    if problems:
        return None, problems
    rule = cls(name=name, **values)
    problems += _check(where, rule, channels)
    return (rule if not problems else None), problems


def _convert(value: Any, default: Any, key: str) -> Any:
    """The value in the type of the field's default, or a problem as "!<text>"."""
    if isinstance(default, bool) or isinstance(value, bool):
        return f"!`{key}` must not be a boolean"
    if isinstance(default, int) and not isinstance(default, bool):
        return value if isinstance(value, int) else f"!`{key}` must be an integer, got {value!r}"
    if isinstance(default, float):
        return float(value) if isinstance(value, int | float) else f"!`{key}` must be a number, got {value!r}"
    if isinstance(default, str):
        return value if isinstance(value, str) else f"!`{key}` must be a string, got {value!r}"
    if isinstance(default, tuple):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        return f"!`{key}` must be a list of strings, got {value!r}"
    # a mapping (its default comes from a factory)
    if isinstance(value, Mapping) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                          for v in value.values()):
        return {str(k): float(v) for k, v in value.items()}
    return f"!`{key}` must be a table of numbers, got {value!r}"


def _check(where: str, rule: Rule, channels: Sequence[str]) -> list[str]:  # noqa: C901 - one check per line
    problems: list[str] = []
    if rule.severity not in SEVERITIES:
        problems.append(f"severity must be one of {list(SEVERITIES)}")
    named: list[str] = []
    if isinstance(rule, ChannelSwitch):
        named = [*rule.digital_channels, *rule.phone_channels]
        if rule.max_channels < 2:
            problems.append("max_channels must be 2 or more")
    elif isinstance(rule, SlaBreach):
        named = list(rule.hours_by_channel)
        hours = [rule.hours, *rule.hours_by_channel.values(), *rule.hours_by_priority.values()]
        if any(h <= 0 for h in hours):
            problems.append("every SLA must be a positive number of hours")
    elif isinstance(rule, ChannelTrend):
        named = list(rule.channels)
        if rule.emotion not in (*EMOTIONS, "negative"):
            problems.append(f"emotion must be one of {[*EMOTIONS, 'negative']}, got {rule.emotion!r}")
        if rule.factor <= 1 or rule.min_count < 1:
            problems.append("factor must be above 1 and min_count at least 1")
    elif isinstance(rule, RepeatContact):
        if rule.min_contacts < 2 or rule.window_hours <= 0:
            problems.append("min_contacts must be 2 or more and window_hours positive")
    elif isinstance(rule, CustomerDrop):
        if rule.drop <= 0 or rule.window_hours <= 0:
            problems.append("drop and window_hours must be positive")
    unknown = sorted(set(named) - set(channels))
    if unknown:
        problems.append(f"unknown channels {unknown} (known: {', '.join(channels)})")
    return [f"{where}: {p}" for p in problems]

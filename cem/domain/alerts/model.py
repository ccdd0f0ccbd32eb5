"""What the alert rules read (facts of a resolver batch) and write (alert revisions, SLA timers).

The facts are built from the resolver's Effects by `batch_facts`, the one place that knows the resolver's shape: the
rules never see the resolver's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cem.domain.journeys import NON_CONTACT_TYPES, RESOLUTION_TYPE
from cem.domain.model import stable_id

OPEN = "open"
WITHDRAWN = "withdrawn"


@lru_cache(maxsize=65_536)  # a withdrawal check names the same alerts batch after batch
def alert_id_for(rule: str, customer_id: str, issue: str) -> str:
    """Deterministic: the same rule, customer and issue always name the same alert (replays, duplicates)."""
    return stable_id("al", rule, customer_id, issue)


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One revision of an alert, as alert_log stores it and `cem.alerts` carries it. `revision` is the version of
    the resolver batch that wrote it: it grows with every change of any alert, so the latest revision wins."""

    alert_id: str
    revision: int
    state: str  # OPEN or WITHDRAWN (the cause disappeared); acknowledged/resolved are operators' actions
    rule: str
    kind: str
    severity: str
    customer_id: str  # the customer's id when the alert was raised (docs/alerts.md, "Merges")
    issue: str  # the issue_ref, "event:<event id>" or "<channel>@<hour>"
    journey_id: str
    channel: str
    event_ms: int  # event time of the cause
    due_ms: int  # the SLA deadline (sla_breach), else 0
    raised_ms: int  # processing time of this revision
    detail: str  # what triggered it; never an identifier of the customer
    evidence: tuple[str, ...] = ()  # event ids

    def as_record(self) -> dict[str, Any]:
        return {"alert_id": self.alert_id, "revision": self.revision, "state": self.state, "rule": self.rule,
                "kind": self.kind, "severity": self.severity, "customer_id": self.customer_id, "issue": self.issue,
                "journey_id": self.journey_id, "channel": self.channel, "event_ms": self.event_ms,
                "due_ms": self.due_ms, "raised_ms": self.raised_ms, "detail": self.detail,
                "evidence": list(self.evidence)}


@dataclass(frozen=True, slots=True)
class TimerRow:
    """A pending SLA deadline of an unresolved journey; `cleared` once resolved in time or raised."""

    rule: str
    journey_id: str
    customer_id: str
    issue_ref: str
    channel: str
    priority: str
    first_ms: int
    deadline_ms: int
    cleared: bool = False


@dataclass(frozen=True, slots=True)
class EventFacts:
    event_id: str
    customer_id: str
    journey_id: str
    issue_ref: str
    channel: str
    type: str
    occurred_ms: int
    survey_kind: str = ""
    survey_score: int | None = None
    text_sentiment: float | None = None  # -5..+5
    effort: float | None = None  # -5..+5
    emotions: tuple[str, ...] = ()
    priority: str = ""


@dataclass(frozen=True, slots=True, order=True)
class Contact:
    ms: int
    channel: str
    event_id: str


@dataclass(frozen=True, slots=True)
class JourneyFacts:
    journey_id: str
    customer_id: str
    issue_ref: str
    contacts: tuple[Contact, ...]  # in event time
    resolved_ms: int | None  # the earliest resolution


@dataclass
class BatchFacts:
    version: int
    events: list[EventFacts] = field(default_factory=list)  # only events an event rule can read (text or survey)
    journeys: list[JourneyFacts] = field(default_factory=list)
    journey_aliases: list[tuple[str, str]] = field(default_factory=list)  # absorbed journey id -> kept one
    channel_latest: dict[str, int] = field(default_factory=dict)  # per channel, the latest event time of the batch
    priorities: dict[str, str] = field(default_factory=dict)  # journey id -> the priority its events carry


@dataclass
class AlertChanges:
    """What one evaluation writes: alert revisions and SLA timer rows."""

    alerts: list[AlertRow] = field(default_factory=list)
    timers: list[TimerRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.alerts or self.timers)


@dataclass
class AlertSnapshot:
    """The alert state as the warehouse holds it (sinks.alert_store): the latest revision of recent alerts, pending
    timers, per-channel clocks, hourly emotion counts and recent text sentiments."""

    alerts: list[AlertRow] = field(default_factory=list)
    timers: list[TimerRow] = field(default_factory=list)
    channel_clocks: list[tuple[str, int, int]] = field(default_factory=list)  # channel, max event ms, last seen
    hourly: list[tuple[str, int, str, int]] = field(default_factory=list)  # channel, hour ms, emotion|negative, n
    texts: list[tuple[str, int, float, str]] = field(default_factory=list)  # customer, ms, sentiment, event id


def batch_facts(effects: Any, priority_property: str = "priority") -> BatchFacts:
    """The facts of a resolver batch (cem.domain.resolver.Effects). Most events carry neither text nor a survey:
    for them only their channel's clock and their journey's priority are read, so no EventFacts is built (the
    alert path must stay a small fraction of the resolver's per-event cost, docs/performance.md)."""
    facts = BatchFacts(effects.version)
    latest = facts.channel_latest
    latest_of = latest.get
    priorities = facts.priorities
    events = facts.events
    for row in effects.interactions:
        event = row.interaction
        channel, occurred_ms = event.channel, event.occurred_ms
        if latest_of(channel, -1) < occurred_ms:
            latest[channel] = occurred_ms
        properties = event.properties
        priority = properties.get(priority_property) if properties else None
        if priority and row.journey_id:
            priorities[row.journey_id] = priority
        signals = event.text_signals
        if signals is None and event.survey_kind is None:
            continue
        events.append(EventFacts(
            event.event_id, row.customer_id, row.journey_id, event.issue_ref or "", channel, event.type,
            occurred_ms, event.survey_kind or "", event.survey_score,
            signals.sentiment if signals and signals.sentences else None,
            signals.effort if signals else None,
            tuple(label for label, _ in signals.emotions) if signals else (),
            priority or ""))
    for journey in effects.journeys.values():
        contacts: list[tuple[int, str, str]] = []
        resolved: int | None = None
        for event_id, (ms, channel, kind) in journey.events.items():
            if kind not in NON_CONTACT_TYPES:
                contacts.append((ms, channel, event_id))
            elif kind == RESOLUTION_TYPE and (resolved is None or ms < resolved):
                resolved = ms
        contacts.sort()
        facts.journeys.append(JourneyFacts(journey.journey_id, journey.customer_id, journey.issue_ref,
                                           tuple(Contact(*c) for c in contacts), resolved))
    facts.journey_aliases = [(alias.from_id, alias.into_id) for alias in effects.journey_aliases]
    return facts

"""Traffic with known alerts: detractors, repeat contacts, channel switches and SLA breaches, some of them caused
or withdrawn by late events, and the alerts each should end as, computed here from the scenario itself (never by
the alert engine).

The traffic comes in three phases that the caller publishes one after the other:

1. `contacts`: every journey's contacts, the resolutions that come in time, and surveys, all within one hour of
   event time from the base; the SLA deadlines all lie beyond it, so no SLA can fire yet.
2. `clock`: one event per channel, 30 hours on, moves the watermark past every deadline: each journey still
   unresolved gets its `sla_breach` alert.
3. `late`: events from before that point, published after the SLA alerts: resolutions before the deadline (the
   alert is withdrawn), resolutions after it (it stays open), a repeat contact and detractor surveys that fire on
   their own time.

The rules are `RULES_TOML` (the four kinds above; the trend and drop rules are left out so that the texts used
here cannot raise anything else). One email per person on every channel: no identity resolution is involved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cem.settings import Settings
from devtools.simulate import recent_base_ms
from schemas.codec import encode_json

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
SLA_HOURS = 24
SLA_HOURS_BY_CHANNEL = {"chat": 8}
SLA_HOURS_BY_PRIORITY = {"urgent": 4}
DIGITAL = ("web", "mobile", "chat", "email", "social")
PHONE = ("call_center",)
MAX_CHANNELS = 3
CLOCK_HOURS = 30  # event time of the clock phase, after the base: past every deadline of the scenario
NEGATIVE = "Terrible service, nobody helps and I am furious. Awful and useless."
POSITIVE = "Great service, the agent was really helpful, thank you so much!"
RULES_TOML = f"""\
[[rule]]
name = "detractor"
kind = "detractor"
severity = "high"

[[rule]]
name = "repeat_contact"
kind = "repeat_contact"
severity = "medium"
min_contacts = 2
window_hours = 168

[[rule]]
name = "channel_escalation"
kind = "channel_switch"
severity = "medium"
max_channels = {MAX_CHANNELS}

[[rule]]
name = "sla_breach"
kind = "sla_breach"
severity = "high"
hours = {SLA_HOURS}
hours_by_channel = {{ chat = {SLA_HOURS_BY_CHANNEL["chat"]} }}
hours_by_priority = {{ urgent = {SLA_HOURS_BY_PRIORITY["urgent"]} }}
"""
PHASES = ("contacts", "clock", "late")
CONTACT_TYPES = {"chat": "chat_message", "call_center": "call_ended", "email": "email_reply",
                 "support": "ticket_opened"}


@dataclass(frozen=True)
class ExpectedAlert:
    rule: str
    person: int
    issue: str  # the issue_ref, or `event:<id>` for a survey without one
    states: tuple[str, ...]  # the revisions on the topic, in order: ("open",) or ("open", "withdrawn")


@dataclass
class Journey:
    person: int
    issue: str
    contacts: list[tuple[str, int]]  # (channel, event ms), in event-time order
    priority: str = ""
    resolved_ms: int | None = None
    resolved_late: bool = False  # published in the late phase, after the watermark passed the deadline


@dataclass
class AlertScenario:
    base_ms: int
    seed: int = 1
    events: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=lambda: {p: [] for p in PHASES})
    journeys: list[Journey] = field(default_factory=list)
    surveys: list[tuple[int, str, str, int, str]] = field(default_factory=list)  # person, issue, kind, score, text
    person_of: dict[str, int] = field(default_factory=dict)  # event id -> person
    resent: int = 0  # copies of an event sent again (the resolver drops them)
    people: int = 0

    # ---- building --------------------------------------------------------------------------------------
    def person(self) -> int:
        self.people += 1
        return self.people - 1

    def emit(self, phase: str, person: int, channel: str, event_type: str, at_ms: int, **extra: Any) -> str:
        event_id = f"al{self.seed}-{sum(len(v) for v in self.events.values()):04d}"
        record: dict[str, Any] = {"event_id": event_id, "channel": channel, "type": event_type, "occurred_at": at_ms,
                                  "identifiers": {"email": f"alert.person{person}@example.com"}}
        record.update({k: v for k, v in extra.items() if v is not None})
        self.events[phase].append((channel, record))
        self.person_of[event_id] = person
        return event_id

    def journey(self, channels: Iterable[str], *, start_min: int, resolve_after_min: int | None = None,
                resolve_late_after_min: int | None = None, priority: str = "",
                late_contact_after_min: int | None = None) -> Journey:
        """One person's journey: contacts 10 minutes apart from `start_min` after the base; resolved in the
        contacts phase, or late (in the late phase), or never; maybe a contact that arrives late."""
        person = self.person()
        issue = f"AL{self.seed}-{person:03d}"
        start = self.base_ms + start_min * MINUTE_MS
        journey = Journey(person, issue, [], priority)
        properties = {"priority": priority} if priority else {}
        for i, channel in enumerate(channels):
            at = start + i * 10 * MINUTE_MS
            journey.contacts.append((channel, at))
            self.emit("contacts", person, channel, CONTACT_TYPES[channel], at, issue_ref=issue,
                      properties=properties, text="Where is my order?")
        if late_contact_after_min is not None:
            channel = journey.contacts[0][0]
            at = start + late_contact_after_min * MINUTE_MS
            journey.contacts = sorted([*journey.contacts, (channel, at)], key=lambda c: c[1])
            self.emit("late", person, channel, CONTACT_TYPES[channel], at, issue_ref=issue, text="Any news?")
        for after, phase in ((resolve_after_min, "contacts"), (resolve_late_after_min, "late")):
            if after is not None:
                journey.resolved_ms = start + after * MINUTE_MS
                journey.resolved_late = phase == "late"
                self.emit(phase, person, "support", "ticket_resolved", journey.resolved_ms, issue_ref=issue)
        self.journeys.append(journey)
        return journey

    def survey(self, kind: str, score: int, text: str, *, at_min: int, phase: str = "contacts",
               person: int | None = None, issue_ref: str | None = None, resend: bool = False) -> None:
        who = self.person() if person is None else person
        event_id = self.emit(phase, who, "survey", "survey_response", self.base_ms + at_min * MINUTE_MS,
                             survey={"kind": kind, "score": score}, text=text, issue_ref=issue_ref)
        if resend:
            self.events[phase].append(self.events[phase][-1])
            self.resent += 1
        self.surveys.append((who, issue_ref or f"event:{event_id}", kind, score, text))

    def clock(self) -> None:
        """One event on every channel of the scenario, CLOCK_HOURS on: the watermark passes every deadline."""
        who = self.person()
        channels = sorted({channel for phase in self.events.values() for channel, _ in phase})
        for channel in channels:
            self.emit("clock", who, channel, "heartbeat", self.base_ms + CLOCK_HOURS * HOUR_MS)

    # ---- output ----------------------------------------------------------------------------------------
    def records(self, settings: Settings, phase: str) -> list[tuple[str, bytes | None, bytes]]:
        return [(settings.raw_topic(channel), record["event_id"].encode(), encode_json(record))
                for channel, record in self.events[phase]]

    def expected(self) -> list[ExpectedAlert]:
        """The alerts the scenario must end with, from the rules' definitions (docs/alerts.md) applied to it."""
        out: list[ExpectedAlert] = []
        for j in self.journeys:
            times = [ms for _, ms in j.contacts]
            if any(b - a <= 168 * HOUR_MS for a, b in zip(times, times[1:], strict=False)):
                out.append(ExpectedAlert("repeat_contact", j.person, j.issue, ("open",)))
            if _escalates([channel for channel, _ in j.contacts]):
                out.append(ExpectedAlert("channel_escalation", j.person, j.issue, ("open",)))
            first_channel, first_ms = j.contacts[0]
            hours = SLA_HOURS_BY_PRIORITY.get(j.priority) or SLA_HOURS_BY_CHANNEL.get(first_channel, SLA_HOURS)
            deadline = first_ms + hours * HOUR_MS
            if j.resolved_ms is None or j.resolved_ms > deadline:
                out.append(ExpectedAlert("sla_breach", j.person, j.issue, ("open",)))
            elif j.resolved_late:
                out.append(ExpectedAlert("sla_breach", j.person, j.issue, ("open", "withdrawn")))
        limits = {"nps": 6, "csat": 2, "ces": 3}
        for person, issue, kind, score, text in self.surveys:
            if score <= limits[kind] and text == NEGATIVE:
                out.append(ExpectedAlert("detractor", person, issue, ("open",)))
        return out


def _escalates(channels: list[str]) -> bool:
    seen: list[str] = []
    for channel in channels:
        if channel in PHONE and any(c in DIGITAL for c in seen):
            return True
        if channel not in seen:
            seen.append(channel)
        if len(seen) >= MAX_CHANNELS:
            return True
    return False


def build(seed: int = 1, copies: int = 2, base_ms: int | None = None) -> AlertScenario:
    """The scenario: each kind of journey and survey `copies` times. Contacts and in-time resolutions all lie in
    the first hour of event time (start_min + contacts + resolution <= 60 minutes)."""
    s = AlertScenario(base_ms if base_ms is not None else recent_base_ms(days_ago=3), seed)
    for copy in range(copies):
        m = copy  # spread the starts a little
        s.journey(["chat"], start_min=m, resolve_after_min=20)  # resolved in time: nothing
        s.journey(["chat", "call_center"], start_min=m, resolve_after_min=30)  # escalation + repeat
        s.journey(["chat", "email", "support"], start_min=m)  # third channel + repeat; SLA (chat, 8 h)
        s.journey(["call_center"], start_min=m + 5)  # SLA (24 h)
        s.journey(["email"], start_min=m + 5, priority="urgent")  # SLA (urgent, 4 h)
        s.journey(["chat"], start_min=m, resolve_late_after_min=120)  # SLA raised, then withdrawn
        s.journey(["email"], start_min=m, priority="urgent", resolve_late_after_min=180)  # withdrawn (4 h)
        s.journey(["chat"], start_min=m, resolve_late_after_min=600)  # resolved after 8 h: the SLA stands
        s.journey(["call_center"], start_min=m, resolve_after_min=25, late_contact_after_min=15)  # late repeat
        s.journey(["email", "chat"], start_min=m, resolve_after_min=40)  # two digital channels: repeat only
        s.survey("nps", 2, NEGATIVE, at_min=m + 10, resend=True)  # detractor, its copy dropped
        s.survey("csat", 1, NEGATIVE, at_min=m + 12)
        s.survey("ces", 2, NEGATIVE, at_min=m + 14)
        s.survey("nps", 9, NEGATIVE, at_min=m + 16)  # a promoter: nothing
        s.survey("nps", 3, POSITIVE, at_min=m + 18)  # a kind comment: nothing
        tied = s.journey(["chat"], start_min=m, resolve_after_min=20)
        s.survey("nps", 1, NEGATIVE, at_min=m + 30, person=tied.person, issue_ref=tied.issue)  # on the issue
        s.survey("csat", 2, NEGATIVE, at_min=m + 5 * 60, phase="late")  # a late detractor
    s.clock()
    return s

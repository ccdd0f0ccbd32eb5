"""The experience measures (migration 0009_experience) computed directly in Python from the traffic of
devtools.simulate_cx, apart from the warehouse, and compared with the views. Shared by the chdb component test
and the 18.16 integration test.

The definitions are docs/analytics.md's, written again here over the simulator's own record of who did what:
sessions are each person's web and mobile events split at gaps over 30 minutes, journeys each person's events
of one issue_ref. Text signals come from cem.domain.text (the enrichment under test is the SQL, not the text
reading).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cem.domain.model import Interaction
from cem.domain.text import analyse
from cem.service.resolver_service import ResolverService
from cem.settings import Settings
from devtools.simulate_cx import CxTraffic
from schemas.codec import encode_json
from streams.app import Ingestor

SECOND_MS, MINUTE_MS, HOUR_MS, DAY_MS = 1_000, 60_000, 3_600_000, 86_400_000
NOT_TOUCHPOINT = {"survey_response", "ticket_resolved", "email_open", "email_click"}
NOT_CONTACT = {"ticket_resolved", "survey_response"}
PURCHASES = {"purchase", "order_completed"}
RESPONSES = {"agent_reply", "agent_message", "ticket_updated", "ticket_resolved", "call_ended"}
ASSISTED = {"call_center", "chat", "support", "email", "social"}
DETRACTOR_AT_MOST = {"nps": 6, "csat": 2, "ces": 3}


@dataclass(frozen=True)
class Event:
    event_id: str
    person: int
    channel: str
    type: str
    ms: int
    issue_ref: str
    survey: tuple[str, int] | None
    text: str | None
    properties: dict[str, str]

    @property
    def order(self) -> tuple[int, str]:
        return self.ms, self.event_id


def events_of(traffic: CxTraffic) -> list[Event]:
    found = []
    for channel, r in traffic.records:
        survey = (r["survey"]["kind"], r["survey"]["score"]) if "survey" in r else None
        found.append(Event(r["event_id"], traffic.person_of[r["event_id"]], channel, r["type"], r["occurred_at"],
                           r.get("issue_ref") or "", survey, r.get("text"), r.get("properties", {})))
    return sorted(found, key=lambda e: e.order)


def load(settings: Settings, traffic: CxTraffic) -> None:
    """Through the worker's own ingest and sink."""
    ingestor = Ingestor(settings)
    now_ms = traffic.last_ms + 2 * DAY_MS
    parsed = [ingestor.parse(encode_json(record), channel, now_ms) for channel, record in traffic.records]
    assert all(isinstance(p, Interaction) for p in parsed), [p for p in parsed if not isinstance(p, Interaction)]
    service = ResolverService(replace(settings, state_store="memory"), clock=lambda: now_ms / 1000)
    try:
        service.process_and_write(parsed)  # type: ignore[arg-type]
    finally:
        service.shutdown()


# ---- grouping, as the simulator made it ------------------------------------------------------------------
def sessions(events: list[Event]) -> list[list[Event]]:
    by_person: dict[int, list[Event]] = defaultdict(list)
    for e in events:
        if e.channel in ("web", "mobile"):
            by_person[e.person].append(e)
    found: list[list[Event]] = []
    for own in by_person.values():
        current: list[Event] = []
        for e in own:
            if current and e.ms - current[-1].ms > 30 * MINUTE_MS:
                found.append(current)
                current = []
            current.append(e)
        found.append(current)
    return found


def journeys(events: list[Event]) -> dict[str, list[Event]]:
    by_ref: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if e.issue_ref:
            by_ref[e.issue_ref].append(e)  # the simulator's issue_refs are unique per person
    return by_ref


def _effort_tenths(e: Event) -> int | None:
    signals = analyse(e.text)
    return None if signals is None or signals.effort is None else round(signals.effort * 10)


def _sentiment_tenths(e: Event) -> int | None:
    signals = analyse(e.text)
    return None if signals is None else round(signals.sentiment * 10)


# ---- journey friction -----------------------------------------------------------------------------------
def journey_truth(events: list[Event]) -> dict[str, dict[str, Any]]:
    truth = {}
    for ref, own in journeys(events).items():
        contacts = [e for e in own if e.type not in NOT_CONTACT]
        path = [e.channel for e in contacts]
        times = [e.ms for e in contacts]
        resolutions = [e.ms for e in own if e.type == "ticket_resolved"]
        resolved_ms = min(resolutions) if resolutions else None
        started = times[0] if times else min(e.ms for e in own)
        responses = sorted(e.ms for e in own if e.type in RESPONSES and times and e.ms >= times[0])
        efforts = [t for t in (_effort_tenths(e) for e in contacts) if t is not None]
        penalty = max(0, -sum(efforts)) // (10 * len(efforts)) if efforts else 0
        wait = min((resolved_ms - started) // DAY_MS, 5) if resolved_ms is not None and resolved_ms > started else 0
        switches = sum(a != b for a, b in zip(path, path[1:], strict=False))
        truth[ref] = {
            "started_ms": started, "resolved": resolved_ms is not None,
            "contacts": len(contacts), "channel_path": path, "channel_switches": switches,
            "repeat_contacts": sum(b - a <= 7 * DAY_MS for a, b in zip(times, times[1:], strict=False)),
            "contacts_to_resolution": None if resolved_ms is None else sum(t <= resolved_ms for t in times),
            "first_response_s": (responses[0] - times[0]) / 1000 if responses else None,
            "effort_penalty": penalty, "wait_days": wait,
            "friction_score": max(len(contacts) - 1, 0) + switches + (0 if resolved_ms is not None else 3) + wait
                              + penalty,
        }
    return truth


# ---- digital friction -----------------------------------------------------------------------------------
def _page(e: Event) -> str:
    if e.type not in ("page_view", "screen_view"):
        return ""
    return f"{e.channel}:{e.properties.get('url', e.properties.get('screen', ''))}"


def session_truth(events: list[Event]) -> dict[frozenset[str], dict[str, Any]]:
    by_person: dict[int, list[Event]] = defaultdict(list)
    for e in events:
        by_person[e.person].append(e)
    truth = {}
    for own in sessions(events):
        start, end = own[0].ms, own[-1].ms
        views = [e for e in own if _page(e)]
        repeat = sum(1 for v in views if any(
            _page(w) == _page(v) and w.order < v.order and v.ms - w.ms <= 10 * SECOND_MS for w in views))
        person = by_person[own[0].person]
        carts = sum(e.type in ("add_to_cart", "product_added") for e in own)
        bought = any(e.type in PURCHASES and start <= e.ms <= end + HOUR_MS for e in person)
        started_forms = {e.properties.get("form", "") for e in own if e.type == "form_start"}
        submitted = {e.properties.get("form", "") for e in own if e.type == "form_submit"}
        failures = sorted((e.ms, e.channel) for e in person if e.channel in ASSISTED and e.type not in NOT_TOUCHPOINT
                          and start <= e.ms <= end + HOUR_MS)
        truth[frozenset(e.event_id for e in own)] = {
            "page_views": len(views), "repeat_views": repeat,
            "errors": sum(e.type in ("error", "app_error", "page_error") for e in own), "cart_adds": carts,
            "abandoned_cart": int(carts > 0 and not bought), "forms_started": len(started_forms),
            "abandoned_forms": len(started_forms - submitted), "digital_failure": int(bool(failures)),
            "failure_channel": failures[0][1] if failures else ""}
    return truth


# ---- surveys --------------------------------------------------------------------------------------------
def survey_truth(events: list[Event]) -> dict[str, dict[str, Any]]:
    session_of = {e.event_id: tuple(own) for own in sessions(events) for e in own}
    by_ref = journeys(events)

    def contact_channels(ref: str) -> list[str]:
        return sorted({e.channel for e in by_ref[ref] if e.type not in NOT_CONTACT})

    truth = {}
    for s in (e for e in events if e.survey):
        kind, score = s.survey or ("", 0)
        base = {"day": datetime.fromtimestamp(s.ms // 1000, tz=UTC).date().isoformat(), "kind": kind, "score": score}
        if s.issue_ref:
            truth[s.event_id] = {**base, "attributed_by": "issue_ref", "journey_type": "service",
                                 "channels": contact_channels(s.issue_ref), "contact": ""}
            continue
        candidates = [e for e in events if e.person == s.person and not e.survey and e.type not in NOT_TOUCHPOINT
                      and s.ms - 7 * DAY_MS <= e.ms <= s.ms]
        if not candidates:
            truth[s.event_id] = {**base, "attributed_by": "none", "journey_type": "unattributed", "channels": [],
                                 "contact": ""}
            continue
        c = max(candidates, key=lambda e: e.order)
        if c.issue_ref:
            kind_, channels = "service", contact_channels(c.issue_ref)
        elif c.event_id in session_of:
            kind_, channels = "digital", sorted({e.channel for e in session_of[c.event_id]})
        else:
            kind_, channels = ("purchase" if c.type in PURCHASES else "contact"), [c.channel]
        truth[s.event_id] = {**base, "attributed_by": "recent_contact", "journey_type": kind_, "channels": channels,
                             "contact": c.event_id}
    return truth


def daily_truth(surveys: dict[str, dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    scores: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
    for s in surveys.values():
        for channel in s["channels"] or ["(none)"]:
            scores[(s["day"], channel, s["journey_type"], s["kind"])].append(s["score"])
    truth = {}
    for key, values in scores.items():
        kind = key[3]
        truth[key] = {
            "responses": len(values), "promoters": sum(v >= 9 for v in values) if kind == "nps" else 0,
            "detractors": sum(v <= 6 for v in values) if kind == "nps" else 0,
            "satisfied": sum(v >= 4 for v in values) if kind == "csat" else 0,
            "ces_sum": sum(values) if kind == "ces" else 0,
            "ces_easy": sum(v >= 5 for v in values) if kind == "ces" else 0,
            "distribution": [values.count(s) for s in range(11)]}
    return truth


# ---- lifecycle ------------------------------------------------------------------------------------------
def lifecycle_truth(events: list[Event]) -> dict[tuple[int, int], dict[str, Any]]:
    """(person, months_back) -> stage and churn drivers."""
    latest = max(e.ms for e in events)
    by_person: dict[int, list[Event]] = defaultdict(list)
    for e in events:
        by_person[e.person].append(e)
    truth = {}
    for person, own in by_person.items():
        refs = journeys(own)
        for back in range(4):
            as_of = latest - back * 30 * DAY_MS
            seen = sorted(e.ms for e in own if e.ms <= as_of and e.type not in ("ticket_resolved", "email_open",
                                                                                "email_click"))
            if not seen:
                continue
            recent = sum(t > as_of - 30 * DAY_MS for t in seen)
            earlier = sum(as_of - 90 * DAY_MS < t <= as_of - 30 * DAY_MS for t in seen)
            surveys = [e for e in own if e.survey and as_of - 90 * DAY_MS < e.ms <= as_of]
            latest_survey = max(surveys, key=lambda e: e.order).survey if surveys else None
            detractor = latest_survey is not None and latest_survey[1] <= DETRACTOR_AT_MOST[latest_survey[0]]
            unresolved = 0
            for journey in refs.values():
                contacts = [e.ms for e in journey if e.type not in NOT_CONTACT]
                start = min(contacts) if contacts else min(e.ms for e in journey)
                resolved = min((e.ms for e in journey if e.type == "ticket_resolved"), default=None)
                if as_of - 90 * DAY_MS < start <= as_of - 3 * DAY_MS and (resolved is None or resolved > as_of):
                    unresolved += 1
            texts = [(e.ms, t) for e in own if (t := _sentiment_tenths(e)) is not None]
            r = [v for ms, v in texts if as_of - 30 * DAY_MS < ms <= as_of]
            b = [v for ms, v in texts if as_of - 90 * DAY_MS < ms <= as_of - 30 * DAY_MS]
            negative = bool(r and b) and sum(r) * len(b) < (sum(b) - 10 * len(b)) * len(r)
            drivers = [name for name, on in (("falling_activity", recent * 4 < earlier), ("detractor", detractor),
                                             ("unresolved_journeys", unresolved > 0), ("negative_trend", negative))
                       if on]
            returned = any(b_ - a > 90 * DAY_MS and b_ > as_of - 30 * DAY_MS for a, b_ in zip(seen, seen[1:],
                                                                                              strict=False))
            if as_of - seen[-1] > 90 * DAY_MS:
                stage = "dormant"
            elif as_of - seen[0] <= 30 * DAY_MS:
                stage = "new"
            elif returned:
                stage = "returning"
            elif as_of - seen[-1] > 30 * DAY_MS or len(drivers) >= 2:
                stage = "at_risk"
            else:
                stage = "active"
            truth[(person, back)] = {"stage": stage, "churn_drivers": drivers, "recent_events": recent,
                                     "earlier_events": earlier, "unresolved_journeys": unresolved}
    return truth


# ---- attribution ----------------------------------------------------------------------------------------
def purchase_truth(events: list[Event], window_days: int = 30) -> dict[str, list[str]]:
    """purchase event id -> the channels of its touchpoints of the `window_days` before it, in time order."""
    session_of = {e.event_id: own[0].event_id for own in sessions(events) for e in own}
    units: dict[int, dict[str, list[Event]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        if not e.survey and e.type not in NOT_CONTACT | PURCHASES:
            units[e.person][session_of.get(e.event_id, e.event_id)].append(e)
    truth = {}
    for p in (e for e in events if e.type in PURCHASES):
        touches = sorted((min(u, key=lambda e: e.order) for u in units[p.person].values()), key=lambda e: e.order)
        truth[p.event_id] = [t.channel for t in touches if t.ms < p.ms and t.ms + window_days * DAY_MS >= p.ms]
    return truth


def credits(paths: Iterable[list[str]]) -> dict[str, tuple[int, int, float]]:
    """channel -> (first-touch, last-touch, linear) credit summed over purchases."""
    first: Counter[str] = Counter()
    last: Counter[str] = Counter()
    linear: dict[str, float] = defaultdict(float)
    for path in paths:
        credited = path or ["(none)"]
        first[credited[0]] += 1
        last[credited[-1]] += 1
        for channel in credited:
            linear[channel] += 1 / len(credited)
    return {c: (first[c], last[c], linear[c]) for c in linear}

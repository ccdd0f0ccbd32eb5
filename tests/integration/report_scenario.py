"""Generated traffic for `cem report`, and the report's figures computed from it directly in Python, apart from
the warehouse: which events fall in the window, their survey answers, sentiments and words, and each service
journey's outcome as the generator built it. Shared by the chdb component test and the 18.16 integration test."""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cem.domain.cx_metrics import MIN_TOPIC_LETTERS, STOPWORDS, Window
from cem.domain.enrich import sentiment
from cem.domain.model import Interaction
from cem.service.resolver_service import ResolverService
from cem.settings import Settings
from schemas.codec import encode_json
from streams.app import Ingestor

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
START = date(2026, 11, 2)  # a Monday
START_MS = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp()) * 1000
DAYS = 30
WINDOW = Window(date(2026, 11, 5), date(2026, 11, 24))  # cuts the first and the last week
TEXTS = [
    "Thanks, that was quick and easy!", "Great service, the agent was really helpful.",
    "This is the third time I call about this, terrible.", "Still broken. Very disappointed.",
    "Awful experience, nobody answers the chat.", "My refund is late and support is useless.",
    "The naïve agent was awful, a terrible délai for my colis.", "Order 12345 arrived broken, I can't believe it.",
    "Where is my order?", "Horrible delivery, the parcel was damaged and the refund never came.",
    "I hate waiting on hold for an hour, worst support ever.", None,
]
SURVEYS = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
CHANNELS = ("web", "chat", "email", "call_center", "survey", "store")


@dataclass
class Journey:
    first_ms: int
    contacts: int
    resolved_ms: int | None
    repeat: bool  # a contact after the resolution, within the FCR window

    @property
    def fcr(self) -> bool:
        return self.resolved_ms is not None and self.contacts == 1 and not self.repeat


@dataclass
class Scenario:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (channel, record)
    journeys: list[Journey] = field(default_factory=list)
    customer_of: dict[str, int] = field(default_factory=dict)


def generate(seed: int = 11, customers: int = 70) -> Scenario:
    rng = random.Random(seed)
    scenario = Scenario()

    def emit(person: int, channel: str, event_type: str, ms: int, **extra: Any) -> None:
        event_id = f"e{len(scenario.events)}"
        record = {"event_id": event_id, "channel": channel, "type": event_type, "occurred_at": ms,
                  "identifiers": {"email": f"person{person}@example.com"},
                  **{k: v for k, v in extra.items() if v is not None}}
        scenario.events.append((channel, record))
        scenario.customer_of[event_id] = person

    for person in range(customers):
        for _ in range(rng.randint(2, 9)):
            ms = START_MS + rng.randrange(DAYS * DAY_MS)
            survey = None
            if rng.random() < 0.5:
                kind = rng.choice(sorted(SURVEYS))
                survey = {"kind": kind, "score": rng.randint(*SURVEYS[kind])}
            emit(person, rng.choice(CHANNELS), "survey_response" if survey else "chat_message", ms,
                 text=rng.choice(TEXTS), survey=survey)
        for issue in range(rng.choice([0, 1, 1, 2])):
            t = first = START_MS + rng.randrange((DAYS - 3) * DAY_MS)
            contacts = rng.choice([1, 1, 2, 3])
            for _ in range(contacts):
                emit(person, rng.choice(["call_center", "chat", "email"]), "call_ended", t,
                     issue_ref=f"CASE-{person}-{issue}", text=rng.choice(TEXTS))
                t += rng.randint(1, 20) * HOUR_MS
            resolved_ms = t if rng.random() < 0.7 else None
            repeat = False
            if resolved_ms is not None:
                emit(person, "support", "ticket_resolved", resolved_ms, issue_ref=f"CASE-{person}-{issue}")
                if rng.random() < 0.3:
                    repeat = True
                    emit(person, "chat", "chat_message", resolved_ms + 2 * DAY_MS, issue_ref=f"CASE-{person}-{issue}",
                         text="Still broken after the fix, terrible.")
            scenario.journeys.append(Journey(first, contacts, resolved_ms, repeat))
    # On the window's edges: the first millisecond in, the last in, the first out.
    assert WINDOW.start_ms is not None and WINDOW.end_ms is not None
    for ms in (WINDOW.start_ms, WINDOW.end_ms - 1, WINDOW.end_ms, WINDOW.start_ms - 1):
        emit(0, "store", "survey_response", ms, survey={"kind": "nps", "score": 10}, text="Awful, terrible queue.")
    return scenario


def load(settings: Settings, scenario: Scenario) -> None:
    """Through the worker's own ingest and sink, as the pipeline would write them."""
    ingestor = Ingestor(settings)
    now_ms = START_MS + (DAYS + 5) * DAY_MS
    parsed = [ingestor.parse(encode_json(record), channel, now_ms) for channel, record in scenario.events]
    assert all(isinstance(p, Interaction) for p in parsed), [p for p in parsed if not isinstance(p, Interaction)]
    service = ResolverService(replace(settings, state_store="memory"), clock=lambda: now_ms / 1000)
    try:
        service.process_and_write(parsed)  # type: ignore[arg-type]
    finally:
        service.shutdown()


# ---- the figures, computed directly ----------------------------------------------------------------------
@dataclass
class Expected:
    overview: tuple[int, int, int, int]  # interactions, unique events, customers, service journeys
    by_channel: dict[str, dict[str, float | int | None]]
    by_week: dict[date, dict[str, float | int | None]]
    journeys: dict[str, float | int | None]
    topics: list[tuple[str, int]]


def scores(records: list[dict[str, Any]]) -> dict[str, float | int | None]:
    answers: dict[str, list[int]] = defaultdict(list)
    for record in records:
        if "survey" in record:
            answers[record["survey"]["kind"]].append(record["survey"]["score"])
    nps, csat, ces = answers["nps"], answers["csat"], answers["ces"]
    sentiments = [s for s in (sentiment(r.get("text")) for r in records) if s is not None]
    return {
        "interactions": len(records),
        "nps": 100 * (sum(s >= 9 for s in nps) - sum(s <= 6 for s in nps)) / len(nps) if nps else None,
        "nps_answers": len(nps),
        "csat": 100 * sum(s >= 4 for s in csat) / len(csat) if csat else None,
        "ces": sum(ces) / len(ces) if ces else None,
        "sentiment": sum(sentiments) / len(sentiments) if sentiments else None,
        "negative": sum(s <= -0.05 for s in sentiments),
    }


def expected(scenario: Scenario, window: Window, fcr_days: float = 7.0) -> Expected:
    inside = [(c, r) for c, r in scenario.events if window.contains(r["occurred_at"])]
    records = [r for _, r in inside]
    by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_week: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for channel, record in inside:
        by_channel[channel].append(record)
        by_week[monday_of(record["occurred_at"])].append(record)
    journeys = [j for j in scenario.journeys if window.contains(j.first_ms)]
    resolved = [j for j in journeys if j.resolved_ms is not None]
    hours = sorted((j.resolved_ms - j.first_ms) / 1000 for j in resolved if j.resolved_ms is not None)
    words: Counter[str] = Counter()
    for record in records:
        text = record.get("text")
        if text and (sentiment(text) or 0) <= -0.05:
            words.update({w for w in re.findall(r"[^\W\d_]+", text.lower())
                          if len(w) >= MIN_TOPIC_LETTERS and w not in STOPWORDS})
    weekly_journeys: dict[date, list[Journey]] = defaultdict(list)
    for j in journeys:
        weekly_journeys[monday_of(j.first_ms)].append(j)
    return Expected(
        overview=(len(records), len({r["event_id"] for r in records}),
                  len({scenario.customer_of[r["event_id"]] for r in records}), len(journeys)),
        by_channel={"all": scores(records)} | {c: scores(rs) for c, rs in by_channel.items()},
        by_week={week: {**scores(by_week.get(week, [])), "journeys": len(weekly_journeys.get(week, [])),
                        "fcr": fcr(weekly_journeys.get(week, []))}
                 for week in {*by_week, *weekly_journeys}},
        journeys={"journeys": len(journeys), "resolved": len(resolved), "fcr": fcr(journeys),
                  "median_s": hours[len(hours) // 2] if hours else None},
        topics=sorted(words.items(), key=lambda item: (-item[1], item[0]))[:10],
    )


def fcr(journeys: list[Journey]) -> float | None:
    resolved = [j for j in journeys if j.resolved_ms is not None]
    return 100 * sum(j.fcr for j in resolved) / len(resolved) if resolved else None


def monday_of(ms: int) -> date:
    day = datetime.fromtimestamp(ms // 1000, tz=UTC).date()
    return day - timedelta(days=day.weekday())


def assert_report_matches(report: Any, want: Expected) -> None:
    """The report's figures (cem.report.Report) equal the ones computed directly, score by score."""
    from cem.domain import cx_metrics as cx

    assert report.overview[:4] == want.overview
    channels = {"all": report.all_channels} | dict(report.channels)
    assert set(channels) == set(want.by_channel)
    for name, counts in channels.items():
        figures = {"interactions": counts.interactions, "nps": cx.nps(counts), "nps_answers": counts.nps_answers,
                   "csat": cx.csat(counts), "ces": cx.ces(counts), "sentiment": cx.mean_sentiment(counts),
                   "negative": counts.negative}
        assert close(figures, want.by_channel[name]), (name, figures, want.by_channel[name])
    weeks = {monday: (c, j) for monday, c, j in report.weeks}
    assert set(weeks) == set(want.by_week)
    for monday, (c, j) in weeks.items():
        figures = {"interactions": c.interactions, "nps": cx.nps(c), "nps_answers": c.nps_answers,
                   "csat": cx.csat(c), "ces": cx.ces(c), "sentiment": cx.mean_sentiment(c), "negative": c.negative,
                   "journeys": j.journeys, "fcr": cx.fcr_rate(j)}
        assert close(figures, want.by_week[monday]), (monday, figures, want.by_week[monday])
    j = report.journeys
    figures = {"journeys": j.journeys, "resolved": j.resolved, "fcr": cx.fcr_rate(j),
               "median_s": j.median_resolution_s}
    assert close(figures, want.journeys), (figures, want.journeys)
    assert report.topics == want.topics


def close(got: dict[str, Any], want: dict[str, Any]) -> bool:
    return got.keys() == want.keys() and all(
        (g is None and w is None) or (g is not None and w is not None and abs(g - w) < 1e-6)
        for g, w in ((got[k], want[k]) for k in got))

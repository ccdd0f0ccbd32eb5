"""`cem report`: the customer-experience report a manager reads, for a window of event time.

Sections: the window, an overview, the scores (NPS, CSAT, CES, sentiment) overall and per channel, their trend by
ISO week, service journeys (FCR, repeat contacts, time to resolve), the experience measures (surveys by the journey
they rate, journey and digital friction, lifecycle, attribution: docs/analytics.md), the top topics of negative
interactions, and the identity graph. The warehouse counts (sinks.report_queries, sinks.experience_queries);
cem.domain.cx_metrics and cem.domain.experience turn counts into scores; this module fetches and lays out.
Definitions: docs/cli.md, "cem report".
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, TextIO

from cem.domain import cx_metrics as cx
from cem.domain import experience as ex
from cem.domain.cx_metrics import JourneyCounts, ScoreCounts, Window
from cem.settings import Settings
from cem.sql_cli import error_text, open_read_only
from cem.tables import format_table
from sinks import experience_queries as eq
from sinks import report_queries as q
from sinks.warehouse import Warehouse

TOP_TOPICS = 10
SCORES_LEGEND = (
    "NPS: % promoters (9-10) - % detractors (0-6), -100..+100. CSAT: % of answers 4 or 5 on 1-5.\n"
    "CES: mean answer on 1-7 (7 = very easy). Sentiment: mean of the texts' scores, -1..+1; negative %: share\n"
    f"of the texts scored {cx.NEGATIVE_SENTIMENT} or lower. '-': no answers.")


@dataclass
class Report:
    window: Window
    overview: tuple[int, ...]  # interactions, unique events, customers, service journeys, sessions
    first_ms: int | None
    last_ms: int | None
    channels: list[tuple[str, ScoreCounts]]
    weeks: list[tuple[date, ScoreCounts, JourneyCounts]]
    journeys: JourneyCounts
    topics: list[tuple[str, int]]
    identity: tuple[int, ...]
    fcr_window_days: float | None = None
    experience: ex.ExperienceFigures | None = field(default_factory=ex.ExperienceFigures)  # None: not migrated
    all_channels: ScoreCounts = field(init=False)

    def __post_init__(self) -> None:
        self.all_channels = cx.total(counts for _, counts in self.channels)


def build_report(warehouse: Warehouse, window: Window, fcr_window_days: float | None = None) -> Report:
    db = warehouse.database
    (interactions, unique, customers, first_ms, last_ms, service, sessions), = warehouse.query(q.overview(db, window))
    found = int(interactions) > 0
    journeys_row = warehouse.query(q.journeys(db, window))[0]
    weekly_journeys = {row[0]: _journey_counts(row[1:]) for row in warehouse.query(q.journeys_by_week(db, window))}
    weekly_scores = {row[0]: ScoreCounts.of(row[1:]) for row in warehouse.query(q.scores_by_week(db, window))}
    weeks = [(date.fromisoformat(week), weekly_scores.get(week, ScoreCounts()),
              weekly_journeys.get(week, JourneyCounts())) for week in sorted({*weekly_scores, *weekly_journeys})]
    journey_counts = _journey_counts(journeys_row[:4])
    median = float(journeys_row[4]) if journey_counts.resolved else None
    return Report(
        window=window,
        overview=tuple(int(v) for v in (interactions, unique, customers, service, sessions)),
        first_ms=int(first_ms) if found else None,
        last_ms=int(last_ms) if found else None,
        channels=[(row[0], ScoreCounts.of(row[1:])) for row in warehouse.query(q.scores_by_channel(db, window))],
        weeks=weeks,
        journeys=replace(journey_counts, median_resolution_s=median),
        topics=[(str(word), int(n)) for word, n in warehouse.query(q.negative_topics(db, window, TOP_TOPICS))],
        identity=tuple(int(v) for v in warehouse.query(q.identity(db))[0]),
        fcr_window_days=fcr_window_days,
        experience=build_experience(warehouse, window),
    )


def build_experience(warehouse: Warehouse, window: Window) -> ex.ExperienceFigures | None:
    """None when the warehouse predates the experience views (migration 0009): the rest of the report still runs."""
    db = warehouse.database
    if not int(warehouse.query(f"SELECT count() FROM system.tables WHERE database = '{db}' "
                               "AND name = 'experience_responses'")[0][0]):
        return None
    return ex.ExperienceFigures(
        surveys=tuple((str(row[0]), str(row[1]), ex.SurveyCounts(*(int(v) for v in row[2:])))
                      for row in warehouse.query(eq.surveys(db, window))),
        journeys=ex.JourneyFriction.of(warehouse.query(eq.journey_friction(db, window))[0]),
        digital=ex.DigitalFriction(*(int(v) for v in warehouse.query(eq.digital_friction(db, window))[0])),
        stages=tuple((str(stage), int(n), int(risky)) for stage, n, risky in warehouse.query(eq.lifecycle(db))),
        attribution=tuple((str(c), int(first), int(last), float(linear))
                          for c, first, last, linear in warehouse.query(eq.attribution(db, window))),
    )


def _journey_counts(row: Sequence[Any]) -> JourneyCounts:
    journeys, resolved, fcr, contacts = (int(v) for v in row)
    return JourneyCounts(journeys, resolved, fcr, contacts)


def day_argument(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day like 2026-11-30") from None


def run_report(settings: Settings, since: date | None, until: date | None, out: TextIO | None = None,
               err: TextIO | None = None) -> int:
    """Exit codes: 0 printed; 1 the warehouse cannot be read; 2 the window is empty by construction."""
    err = err or sys.stderr
    try:
        window = Window(since, until)
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    warehouse = open_read_only(settings, err)
    if warehouse is None:
        return 1
    try:
        print_report(warehouse, window, settings.fcr_window_days, out)
    except Exception as exc:  # a warehouse not migrated yet, a timeout: the engine's words
        text = error_text(exc)
        if re.match(r"Code: (60|81)\.", text):  # unknown table or database
            text += "\n(the warehouse has no tables yet: run `cem migrate`, or start `cem worker`, which migrates)"
        print(f"error: {text}", file=err)
        return 1
    finally:
        warehouse.close()
    return 0


def print_report(warehouse: Warehouse, window: Window | None = None, fcr_window_days: float | None = None,
                 out: TextIO | None = None) -> None:
    report = build_report(warehouse, window or Window(), fcr_window_days)
    (out or sys.stdout).write(render_report(report))


def render_report(r: Report) -> str:
    title = "cem customer-experience report"
    parts = [f"\n{title}\n{'=' * len(title)}", f"Window: {r.window.describe(r.first_ms, r.last_ms)}"]
    parts.append(section("Overview", ["interactions", "unique events", "customers", "service journeys", "sessions"],
                         [r.overview]))
    channel_rows = [score_row(name, c) for name, c in r.channels]
    if len(r.channels) != 1:
        channel_rows.append(score_row("all channels", r.all_channels))
    parts.append(section(
        "Scores by channel",
        ["channel", "interactions", "NPS", "answers", "CSAT %", "answers", "CES", "answers", "sentiment",
         "negative %"], channel_rows, SCORES_LEGEND, labels=1))
    parts.append(section(
        "Trend by ISO week (UTC; the first and last week may be cut by the window)",
        ["week", "starts", "interactions", "NPS", "answers", "CSAT %", "answers", "CES", "answers", "journeys",
         "FCR %"],
        [(cx.iso_week(monday), monday.isoformat(), c.interactions, _num(cx.nps(c), 1), c.nps_answers,
          _num(cx.csat(c), 1), c.csat_answers, _num(cx.ces(c), 2), c.ces_answers, j.journeys,
          _num(cx.fcr_rate(j), 1)) for monday, c, j in r.weeks], labels=2))
    j = r.journeys
    days = f"{r.fcr_window_days:g} days" if r.fcr_window_days is not None else "the FCR window"
    parts.append(section(
        "Service journeys (first contact in the window)",
        ["journeys", "resolved", "resolved %", "FCR %", "repeat-contact %", "contacts per journey",
         "median hours to resolve"],
        [(j.journeys, j.resolved, _num(cx.resolved_share(j), 1), _num(cx.fcr_rate(j), 1),
          _num(cx.repeat_contact_rate(j), 1), _num(cx.mean_contacts(j), 2),
          _num(None if j.median_resolution_s is None else j.median_resolution_s / 3600, 1))],
        f"FCR: of the resolved journeys, % resolved at the first contact with no other contact within {days}\n"
        "(CEM_FCR_WINDOW_DAYS). Repeat-contact %: the other resolved journeys (100 - FCR)."))
    parts.extend(experience_sections(r.experience))
    negative = r.all_channels.negative
    parts.append(section(
        f"Top negative topics (words in the text of the {negative} negative interactions)",
        ["word", "interactions", "% of negative"],
        [(word, n, _num(100 * n / negative if negative else None, 1)) for word, n in r.topics], labels=1))
    parts.append(section("Identity (the graph now, whatever the window)",
                         ["identifiers", "shared", "merges", "refused merges"], [r.identity]))
    return "\n\n".join(parts) + "\n\n"


def experience_sections(e: ex.ExperienceFigures | None) -> list[str]:
    if e is None:
        return ["Experience measures: this warehouse has no experience views yet (run `cem migrate`)."]
    survey_rows = []
    for journey_type, kinds in e.by_journey_type():
        nps, csat, ces = (kinds.get(kind, ex.SurveyCounts()) for kind in ("nps", "csat", "ces"))
        survey_rows.append((journey_type, _num(ex.nps(nps), 1), nps.responses, _num(ex.csat(csat), 1),
                            csat.responses, _num(ex.ces_mean(ces), 2), _num(ex.ces_easy_share(ces), 1), ces.responses))
    j, d = e.journeys, e.digital
    return [
        section("Surveys by the journey they rate", ["journey rated", "NPS", "answers", "CSAT %", "answers", "CES",
                                                     "CES 5-7 %", "answers"], survey_rows,
                "An answer rates its issue_ref's journey, else the customer's latest touchpoint within 7 days.",
                labels=1),
        section("Journey friction (service journeys started in the window)",
                ["journeys", "repeat-contact %", "channel-switch %", "contacts per resolution",
                 "minutes to first response", "friction score"],
                [(j.journeys, _num(cx.percent(j.with_repeat_contacts, j.journeys), 1),
                  _num(cx.percent(j.with_channel_switch, j.journeys), 1), _num(j.contacts_per_resolution(), 2),
                  _num(j.mean_minutes_to_first_response(), 1), _num(j.mean_friction(), 2))],
                "Repeat contact: another contact within 7 days of the previous one. Friction: extra contacts +\n"
                "channel switches + 3 if unresolved + days to resolve (at most 5) + stated effort (mean per journey)."),
        section("Digital friction (web and app sessions started in the window)",
                ["sessions", "repeat-view %", "error %", "cart abandonment %", "digital failure %"],
                [(d.sessions, _num(cx.percent(d.with_repeat_views, d.sessions), 1),
                  _num(cx.percent(d.with_errors, d.sessions), 1), _num(cx.percent(d.abandoned_carts, d.with_cart), 1),
                  _num(cx.percent(d.failures, d.sessions), 1))],
                "Digital failure: an assisted contact (call, chat, ticket, email, social) by the end of the session\n"
                "or within an hour of it."),
        section("Customer lifecycle (as of the latest event, whatever the window)",
                ["stage", "customers", "two churn drivers or more"], list(e.stages), labels=1),
        section("Purchase attribution (purchases in the window, touchpoints of the 30 days before)",
                ["channel", "first touch", "last touch", "linear"],
                [(c, first, last, f"{linear:.2f}") for c, first, last, linear in e.attribution], labels=1),
    ]


def score_row(name: str, c: ScoreCounts) -> tuple[Any, ...]:
    return (name, c.interactions, _num(cx.nps(c), 1), c.nps_answers, _num(cx.csat(c), 1), c.csat_answers,
            _num(cx.ces(c), 2), c.ces_answers, _num(cx.mean_sentiment(c), 3), _num(cx.negative_share(c), 1))


def section(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], legend: str = "",
            labels: int = 0) -> str:
    """A titled table: the first `labels` columns name the row, the others are figures."""
    text = f"{title}\n" + format_table(headers, rows, labels)
    return f"{text}\n{legend}" if legend else text


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"

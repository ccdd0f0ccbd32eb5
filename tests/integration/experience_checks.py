"""The experience views, the query pack (docs/queries.sql) and `cem report`'s experience figures against the
direct computation of tests/integration/experience_scenario.py. Shared by the chdb component test and the 18.16
integration test."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cem.domain import experience as ex
from cem.domain.cx_metrics import Window
from devtools.simulate_cx import CxTraffic
from tests.integration.experience_scenario import (
    credits,
    daily_truth,
    events_of,
    journey_truth,
    lifecycle_truth,
    purchase_truth,
    session_truth,
    survey_truth,
)


# ---- the views against the truth ------------------------------------------------------------------------
def _rows(warehouse: Any, sql: str) -> list[tuple[Any, ...]]:
    return warehouse.query(sql.format(db=warehouse.database))


def _close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(float(a) - float(b)) < 1e-6)


def assert_views_match(warehouse: Any, traffic: CxTraffic) -> None:
    """Every experience view equals its direct computation from the traffic, row by row."""
    events = events_of(traffic)
    customer_of = dict(_rows(warehouse, "SELECT event_id, customer_id FROM {db}.interactions"))
    person_of_customer = {customer_of[e.event_id]: e.person for e in events}
    assert len(person_of_customer) == len({e.person for e in events})

    surveys = survey_truth(events)
    got = {r[0]: {"day": str(r[1]), "kind": r[2], "score": int(r[3]), "attributed_by": r[4], "journey_type": r[5],
                  "channels": sorted(r[6]), "contact": r[7]}
           for r in _rows(warehouse, "SELECT event_id, day, survey_kind, score, attributed_by, journey_type, "
                                     "touchpoint_channels, contact_event_id FROM {db}.experience_responses")}
    assert got == surveys
    assert {a["attributed_by"] for a in surveys.values()} == {"issue_ref", "recent_contact", "none"}

    daily = {(str(r[0]), r[1], r[2], r[3]): {"responses": int(r[4]), "promoters": int(r[5]), "detractors": int(r[6]),
                                             "satisfied": int(r[7]), "ces_sum": int(r[8]), "ces_easy": int(r[9]),
                                             "distribution": [int(v) for v in r[10]]}
             for r in _rows(warehouse, "SELECT day, touchpoint_channel, journey_type, survey_kind, responses, "
                                       "promoters, detractors, satisfied, ces_sum, ces_easy, distribution "
                                       "FROM {db}.experience_daily")}
    assert daily == daily_truth(surveys)

    journey_rows = _rows(warehouse, "SELECT issue_ref, contacts, channel_path, channel_switches, repeat_contacts, "
                                    "contacts_to_resolution, first_response_s, effort_penalty, wait_days, "
                                    "friction_score FROM {db}.journey_experience")
    want_journeys = journey_truth(events)
    assert len(journey_rows) == len(want_journeys)
    for ref, contacts, path, switches, repeat, to_resolution, first_response, penalty, wait, score in journey_rows:
        want = want_journeys[ref]
        assert (int(contacts), list(path), int(switches), int(repeat), penalty, wait, int(score)) == (
            want["contacts"], want["channel_path"], want["channel_switches"], want["repeat_contacts"],
            want["effort_penalty"], want["wait_days"], want["friction_score"]), (ref, want)
        assert to_resolution == want["contacts_to_resolution"] and _close(first_response, want["first_response_s"])
    assert sum(w["channel_switches"] for w in want_journeys.values()) > 0
    assert sum(w["effort_penalty"] for w in want_journeys.values()) > 0

    members: dict[str, set[str]] = defaultdict(set)
    for event_id, session_id in _rows(warehouse, "SELECT event_id, session_id FROM {db}.interactions "
                                                 "WHERE session_id != ''"):
        members[session_id].add(event_id)
    columns = ["page_views", "repeat_views", "errors", "cart_adds", "abandoned_cart", "forms_started",
               "abandoned_forms", "digital_failure", "failure_channel"]
    got_sessions = {frozenset(members[r[0]]): dict(zip(columns, (int(v) if k != "failure_channel" else v
                                                                 for k, v in zip(columns, r[1:], strict=True)),
                                                       strict=True))
                    for r in _rows(warehouse, f"SELECT session_id, {', '.join(columns)} FROM {{db}}.session_friction")}
    want_sessions = session_truth(events)
    assert got_sessions == want_sessions
    for column in ("repeat_views", "errors", "abandoned_cart", "abandoned_forms", "digital_failure"):
        assert any(s[column] for s in want_sessions.values()), column  # the traffic exercises each measure

    lifecycle = {(person_of_customer[r[0]], int(r[1])): {"stage": r[2], "churn_drivers": list(r[3]),
                                                         "recent_events": int(r[4]), "earlier_events": int(r[5]),
                                                         "unresolved_journeys": int(r[6])}
                 for r in _rows(warehouse, "SELECT customer_id, months_back, stage, churn_drivers, recent_events, "
                                           "earlier_events, unresolved_journeys FROM {db}.customer_lifecycle_history")}
    want_lifecycle = lifecycle_truth(events)
    assert lifecycle == want_lifecycle
    assert {v["stage"] for (_, back), v in want_lifecycle.items() if back == 0} >= {
        "new", "active", "returning", "at_risk", "dormant"}

    paths = {r[0]: list(r[1]) for r in _rows(warehouse, "SELECT purchase_id, path FROM {db}.purchase_touchpoints")}
    want_paths = purchase_truth(events)
    assert paths == want_paths
    got_credits = {r[0]: (int(r[1]), int(r[2]), float(r[3])) for r in _rows(
        warehouse, "SELECT channel, sum(first_touch), sum(last_touch), sum(linear) FROM {db}.purchase_attribution "
                   "GROUP BY channel")}
    want_credits = credits(want_paths.values())
    assert got_credits.keys() == want_credits.keys()
    for channel, (first, last, linear) in want_credits.items():
        assert got_credits[channel][:2] == (first, last) and _close(got_credits[channel][2], linear), channel


# ---- the query pack -------------------------------------------------------------------------------------
QUERY_PACK = Path(__file__).resolve().parents[2] / "docs" / "queries.sql"


def query_pack(database: str) -> dict[str, str]:
    """name -> SQL of each query of docs/queries.sql, on `database` instead of `cem`."""
    queries = {}
    for block in QUERY_PACK.read_text().split("-- name: ")[1:]:
        name, sql = block.split("\n", 1)
        queries[name.strip()] = re.sub(r"\bcem\.", f"{database}.", sql).strip().rstrip(";")
    return queries


def _monday(day: str) -> str:
    found = date.fromisoformat(day)
    return (found - timedelta(days=found.weekday())).isoformat()


def assert_query_pack_matches(warehouse: Any, traffic: CxTraffic) -> None:
    """Every query of the pack runs through the read-only guard and returns rows; five are checked against the
    direct computation."""
    events = events_of(traffic)
    results = {name: warehouse.query(sql) for name, sql in query_pack(warehouse.database).items()}
    assert all(results.values()), [name for name, rows in results.items() if not rows]

    weekly: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for (day, channel, _, kind), counts in daily_truth(survey_truth(events)).items():
        if kind == "nps":
            weekly[(_monday(day), channel)][0] += counts["responses"]
            weekly[(_monday(day), channel)][1] += counts["promoters"] - counts["detractors"]
    got = {(str(r[0]), r[1]): (int(r[2]), r[3]) for r in results["scores_by_channel_and_week"]}
    assert {key: answers for key, (answers, _) in got.items() if answers} == {k: v[0] for k, v in weekly.items()}
    for key, (answers, net) in weekly.items():
        assert _close(got[key][1], 100 * net / answers), key

    paths = Counter(" > ".join(j["channel_path"]) for j in journey_truth(events).values() if j["channel_switches"])
    top = sorted(paths.items(), key=lambda item: (-item[1], item[0]))[:20]
    assert [(r[0], int(r[1])) for r in results["channel_switch_paths"]] == top

    stages = lifecycle_truth(events)
    movement = Counter((stages[(p, 1)]["stage"] if (p, 1) in stages else "", v["stage"])
                       for (p, back), v in stages.items() if back == 0)
    assert {(r[0], r[1]): int(r[2]) for r in results["lifecycle_movement"]} == movement

    want_credits = credits(purchase_truth(events).values())
    assert {r[0]: (int(r[1]), int(r[2])) for r in results["attribution_by_channel"]} == {
        channel: (first, last) for channel, (first, last, _) in want_credits.items()}
    week_credits = credits(purchase_truth(events, window_days=7).values())
    got = {r[0]: (int(r[1]), int(r[2]), float(r[3])) for r in results["attribution_within_days"]}
    assert {c: v[:2] for c, v in got.items()} == {c: v[:2] for c, v in week_credits.items()}
    assert all(abs(got[c][2] - round(v[2], 3)) < 1e-6 for c, v in week_credits.items())
    assert week_credits != want_credits  # the shorter window changes the credit

# ---- the report -----------------------------------------------------------------------------------------
def assert_report_matches(figures: Any, traffic: CxTraffic, window: Window) -> None:
    """`cem report`'s experience figures (cem.domain.experience.ExperienceFigures) for `window` equal the ones
    computed directly."""
    events = events_of(traffic)
    ms_of = {e.event_id: e.ms for e in events}
    surveys: dict[tuple[str, str], list[int]] = defaultdict(list)
    for event_id, s in survey_truth(events).items():
        if window.contains(ms_of[event_id]):
            surveys[(s["journey_type"], s["kind"])].append(s["score"])
    assert {(t, k): c for t, k, c in figures.surveys} == {
        (t, k): ex.SurveyCounts(len(v), sum(x >= 9 for x in v) if k == "nps" else 0,
                                sum(x <= 6 for x in v) if k == "nps" else 0,
                                sum(x >= 4 for x in v) if k == "csat" else 0,
                                sum(v) if k == "ces" else 0, sum(x >= 5 for x in v) if k == "ces" else 0)
        for (t, k), v in surveys.items()}

    js = [j for j in journey_truth(events).values() if window.contains(j["started_ms"])]
    responded = [j["first_response_s"] for j in js if j["first_response_s"] is not None]
    want = ex.JourneyFriction(
        len(js), sum(j["repeat_contacts"] > 0 for j in js), sum(j["channel_switches"] > 0 for j in js),
        sum(j["resolved"] for j in js), sum(j["contacts_to_resolution"] or 0 for j in js), len(responded),
        sum(responded), sum(j["friction_score"] for j in js))
    assert figures.journeys.__dict__.keys() == want.__dict__.keys()
    assert [getattr(figures.journeys, k) for k in want.__dict__ if k != "first_response_s"] == [
        getattr(want, k) for k in want.__dict__ if k != "first_response_s"]
    assert _close(figures.journeys.first_response_s, want.first_response_s)

    sessions_in = [v for members, v in session_truth(events).items() if window.contains(min(ms_of[m] for m in members))]
    assert figures.digital == ex.DigitalFriction(
        len(sessions_in), sum(v["repeat_views"] > 0 for v in sessions_in), sum(v["errors"] > 0 for v in sessions_in),
        sum(v["cart_adds"] > 0 for v in sessions_in), sum(v["abandoned_cart"] for v in sessions_in),
        sum(v["digital_failure"] for v in sessions_in))

    stages = Counter(v["stage"] for (_, back), v in lifecycle_truth(events).items() if back == 0)
    risky = Counter(v["stage"] for (_, back), v in lifecycle_truth(events).items()
                    if back == 0 and len(v["churn_drivers"]) >= 2)
    assert {stage: (n, r) for stage, n, r in figures.stages} == {k: (n, risky[k]) for k, n in stages.items()}

    paths = [p for event_id, p in purchase_truth(events).items() if window.contains(ms_of[event_id])]
    want_credits = credits(paths)
    assert {c: (first, last) for c, first, last, _ in figures.attribution} == {
        c: (first, last) for c, (first, last, _) in want_credits.items()}
    for c, _, _, linear in figures.attribution:
        assert _close(linear, want_credits[c][2]), c

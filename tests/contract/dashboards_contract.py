"""Every panel of the customer-experience dashboard (deploy/grafana/dashboards), its SQL expanded as the
grafana-clickhouse-datasource plugin expands it, on what the resolver service wrote for a small set of events whose
figures are known: chdb in tests/component, the ClickHouse 18.16 server (as the dashboards' read-only `grafana`
user) in tests/integration, each binding `engine` and `run_panel_sql` in a subclass of `DashboardsContract`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from cem.domain.model import Interaction
from cem.service.resolver_service import ResolverService
from cem.settings import Settings
from devtools.monitoring import expand_clickhouse_macros, panel_queries
from tests.contract.backends import Backend
from tests.unit.factories import DAY_MS, HOUR_MS, MINUTE_MS, NOW_MS, event

T0 = NOW_MS - DAY_MS
A, B, C = ("email", "a@example.com"), ("email", "b@example.com"), ("phone", "+14155550123")

# Three customers, seven interactions; surveys: NPS 10, 9, 3 (two promoters, one detractor: +33.3), CSAT 5 and 2
# (50 % satisfied), CES 2 and 4 (3.0); sentiment on chat only (0.5 and -0.25: 0.125).
EVENTS: list[Interaction] = [
    event("a1", T0, [A], channel="web", type="page_view"),
    replace(event("a2", T0 + MINUTE_MS, [A], channel="chat", type="chat_message", issue_ref="1"), sentiment=0.5),
    event("a3", T0 + HOUR_MS, [A], channel="support", type="ticket_resolved", issue_ref="1"),
    replace(event("b1", T0 + 2 * HOUR_MS, [B], channel="survey", type="survey_response"), survey_kind="nps",
            survey_score=10),
    replace(event("b2", T0 + 3 * HOUR_MS, [B], channel="chat", type="chat_message"), sentiment=-0.25),
    replace(event("c1", T0 + 4 * HOUR_MS, [C], channel="survey", type="survey_response"), survey_kind="nps",
            survey_score=9),
    replace(event("c2", T0 + 5 * HOUR_MS, [C], channel="survey", type="survey_response"), survey_kind="nps",
            survey_score=3),
]
SURVEYS: list[Interaction] = [
    replace(event("s1", T0 + 6 * HOUR_MS, [C], channel="survey", type="survey_response"), survey_kind="csat",
            survey_score=5),
    replace(event("s2", T0 + 6 * HOUR_MS + 1, [C], channel="survey", type="survey_response"), survey_kind="csat",
            survey_score=2),
    replace(event("s3", T0 + 7 * HOUR_MS, [B], channel="survey", type="survey_response"), survey_kind="ces",
            survey_score=2),
    replace(event("s4", T0 + 7 * HOUR_MS + 1, [B], channel="survey", type="survey_response"), survey_kind="ces",
            survey_score=4),
]
FROM_S, TO_S, INTERVAL_S = (T0 - HOUR_MS) // 1000, NOW_MS // 1000, 3600

RunSql = Callable[[str], list[tuple[Any, ...]]]


def clickhouse_panels() -> list[tuple[str, str]]:
    return [(q.panel, q.query) for q in panel_queries() if q.datasource_type == "grafana-clickhouse-datasource"]


def run_every_panel(run: RunSql, from_s: int, to_s: int, interval_s: int) -> dict[str, list[tuple[Any, ...]]]:
    """{panel title: rows} of every customer-experience panel; the first error names its panel."""
    results = {}
    for title, sql in clickhouse_panels():
        try:
            results[title] = run(expand_clickhouse_macros(sql, from_s, to_s, interval_s))
        except Exception as exc:
            raise AssertionError(f"panel {title!r} fails: {exc}") from exc
    return results


class DashboardsContract:
    """The test; a layer's subclass named Test... binds `engine` (a Backend) and `run_panel_sql` (a function running
    SQL in the engine's database the way the dashboards' data source does)."""

    def test_every_customer_experience_panel_runs_and_shows_the_known_figures(self, engine: Backend,
                                                                             run_panel_sql: RunSql) -> None:
        settings = Settings(sink_retry_max_seconds=0.001, state_store="memory")
        service = ResolverService(settings, clock=lambda: NOW_MS / 1000, open_warehouse=engine.open)
        service.process_and_write(EVENTS)
        service.process_and_write(SURVEYS)
        service.close()

        panels = run_every_panel(run_panel_sql, FROM_S, TO_S, INTERVAL_S)
        assert all(rows for rows in panels.values()), [title for title, rows in panels.items() if not rows]
        total = len(EVENTS) + len(SURVEYS)
        assert panels["Interactions"] == [(total,)]
        assert panels["Customers"] == [(3,)]
        assert panels["NPS"] == [(33.3,)]
        assert panels["CSAT"] == [(50.0,)]
        assert panels["Customer effort"] == [(3.0,)]
        assert sum(row[2] for row in panels["Interactions by channel"]) == total
        assert {row[1] for row in panels["Interactions by channel"]} == {"web", "chat", "support", "survey"}
        assert {row[0]: row[1] for row in panels["Sentiment by channel"]}["chat"] == 0.125
        surveys = {row[0]: row[1:] for row in panels["Surveys by channel"]}
        assert surveys["survey"] == (3, 33.3, 2, 50.0, 2, 3.0)
        # Issue "1" of customer A: one chat contact (a2), resolved 59 minutes later by the ticket (a3, no contact).
        assert panels["Service journeys"] == [(1, 1, 1, 1.0, 0.98)]
        assert panels["Channels used in service journeys"] == [("chat", 1)]
        assert panels["Contacts until resolution"] == [(1, 1)]
        assert panels["First-contact resolution"] == [(100.0,)]
        # One session per web/mobile contact here: a1 is the only web event.
        assert sum(row[1] for row in panels["Sessions"]) == 1

        # Outside the time range, nothing: every panel honours $__timeFilter.
        empty = run_every_panel(run_panel_sql, TO_S + 3600, TO_S + 7200, INTERVAL_S)
        assert empty["Interactions"] == [(0,)] and empty["Customers"] == [(0,)]
        assert empty["Interactions by channel"] == [] and empty["Sessions"] == []

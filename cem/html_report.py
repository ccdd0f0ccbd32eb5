"""`cem report --html FILE`: one self-contained HTML file of charts, for a window of event time.

Charts: the channel paths of service journeys (Sankey), NPS, CSAT and CES by channel and day, FCR and repeat-contact
rates by week, open alerts by rule and age, and the top topics of negative texts. Plotly draws them: it has a
Sankey, and its whole script (plotly.js) is written once into the page, so the file opens with no network
(docs/alerts.md, "HTML report", says why plotly). The figures come from the same queries as `cem report`
(sinks.report_queries) plus a few of their own (sinks.report_charts).
"""

from __future__ import annotations

import html
import sys
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path
from typing import Any

from cem.domain import cx_metrics as cx
from cem.domain.cx_metrics import ScoreCounts, Window
from cem.report import build_report
from cem.settings import Settings
from cem.sql_cli import open_read_only
from sinks import report_charts as charts
from sinks.warehouse import Warehouse

MAX_PATH_STEPS = 4
CHART_IDS = ("channel-paths", "scores-by-channel", "journey-rates", "open-alerts", "negative-topics")


def write_html_report(settings: Settings, path: Path, since: date | None, until: date | None) -> int:
    warehouse = open_read_only(settings, sys.stderr)
    if warehouse is None:
        return 1
    try:
        page = render_html(warehouse, Window(since, until), settings.fcr_window_days)
    finally:
        warehouse.close()
    path.write_text(page, encoding="utf-8")
    print(f"wrote {path} ({len(page) // 1024} KiB): open it in a browser, it needs no network")
    return 0


def render_html(warehouse: Warehouse, window: Window, fcr_window_days: float) -> str:
    import plotly.offline

    db = warehouse.database
    report = build_report(warehouse, window, fcr_window_days)
    figures = {
        "channel-paths": sankey(warehouse.query(charts.journey_paths(db, window))),
        "scores-by-channel": score_trends(warehouse.query(charts.scores_by_day_and_channel(db, window))),
        "journey-rates": journey_rates([(week, counts) for week, _, counts in report.weeks]),
        "open-alerts": open_alerts(warehouse.query(charts.open_alerts_by_age(db))),
        "negative-topics": negative_topics(warehouse.query(charts.negative_topics(db, window))),
    }
    divs = "\n".join(f'<section><div class="chart">{fig.to_html(full_html=False, include_plotlyjs=False, div_id=key)}'
                     "</div></section>" for key, fig in figures.items())
    title = f"cem report: {window.describe(report.first_ms, report.last_ms)}"
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<script type=\"text/javascript\">{plotly.offline.get_plotlyjs()}</script>"
            "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}section{margin-bottom:2em}</style>"
            f"</head><body><h1>{html.escape(title)}</h1>{divs}</body></html>")


def _figure(title: str) -> Any:
    import plotly.graph_objects as go

    return go.Figure(layout={"title": {"text": title}, "height": 420, "template": "plotly_white"})


def _no_data(fig: Any) -> Any:
    fig.add_annotation(text="no data in this window", showarrow=False, font={"size": 16})
    return fig


def sankey(paths: list[tuple[Any, ...]]) -> Any:
    """Journeys as channel paths: contact 1 -> 2 -> ... (repeats of one channel in a row folded, at most
    MAX_PATH_STEPS steps), each link as wide as the journeys taking it."""
    import plotly.graph_objects as go

    links: Counter[tuple[str, str]] = Counter()
    for path, journeys in paths:
        steps = [channel for i, channel in enumerate(path) if i == 0 or path[i - 1] != channel][:MAX_PATH_STEPS]
        for i in range(len(steps) - 1):
            links[(f"{i + 1}. {steps[i]}", f"{i + 2}. {steps[i + 1]}")] += int(journeys)
    fig = _figure("Channel paths of service journeys (contact 1 → 2 → …)")
    if not links:
        return _no_data(fig)
    nodes = sorted({node for link in links for node in link})
    index = {node: i for i, node in enumerate(nodes)}
    fig.add_trace(go.Sankey(node={"label": nodes, "pad": 12},
                            link={"source": [index[a] for a, _ in links], "target": [index[b] for _, b in links],
                                  "value": list(links.values())}))
    return fig


def score_trends(rows: list[tuple[Any, ...]]) -> Any:
    """NPS, CSAT and CES per channel and day, one panel each."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=("NPS", "CSAT %", "CES"))
    fig.update_layout(title={"text": "Scores by channel and day"}, height=420, template="plotly_white")
    by_channel: dict[str, list[tuple[str, ScoreCounts]]] = defaultdict(list)
    for day, channel, *counts in rows:
        by_channel[str(channel)].append((str(day), ScoreCounts.of(counts)))
    drawn = 0
    for channel, series in sorted(by_channel.items()):
        for col, score in enumerate((cx.nps, cx.csat, cx.ces), start=1):
            points = [(day, score(counts)) for day, counts in series if score(counts) is not None]
            if points:
                drawn += 1
                fig.add_trace(go.Scatter(x=[d for d, _ in points], y=[v for _, v in points], name=channel,
                                         legendgroup=channel, showlegend=col == 1, mode="lines+markers"),
                              row=1, col=col)
    return fig if drawn else _no_data(fig)


def journey_rates(weeks: list[tuple[date, cx.JourneyCounts]]) -> Any:
    import plotly.graph_objects as go

    fig = _figure("First-contact resolution and repeat contacts by week (% of service journeys)")
    labels = [cx.iso_week(week) for week, _ in weeks]
    for name, rate in (("FCR", cx.fcr_rate), ("repeat contact", cx.repeat_contact_rate)):
        values = [rate(counts) for _, counts in weeks]
        fig.add_trace(go.Bar(x=labels, y=[v if v is not None else 0 for v in values], name=name))
    return fig if weeks else _no_data(fig)


def open_alerts(rows: list[tuple[Any, ...]]) -> Any:
    """Open and acknowledged alerts by rule, stacked by how long they have been open."""
    import plotly.graph_objects as go

    fig = _figure("Open alerts by rule and age")
    fig.update_layout(barmode="stack")
    rules = sorted({str(rule) for rule, _, _ in rows})
    for age in charts.AGE_BANDS:
        counts = {str(rule): int(n) for rule, band, n in rows if band == age}
        fig.add_trace(go.Bar(x=rules, y=[counts.get(rule, 0) for rule in rules], name=age))
    return fig if rows else _no_data(fig)


def negative_topics(rows: list[tuple[Any, ...]]) -> Any:
    import plotly.graph_objects as go

    fig = _figure("Top topics of negative texts")
    ordered = sorted(rows, key=lambda row: int(row[1]))
    fig.add_trace(go.Bar(x=[int(n) for _, n in ordered], y=[str(t) for t, _ in ordered], orientation="h"))
    return fig if rows else _no_data(fig)

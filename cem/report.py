"""The customer-experience report analysts and the demo print. Every figure is one query on the views."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cem.domain.resolver import FORGOTTEN
from sinks.warehouse import Warehouse


def report_queries(db: str) -> list[tuple[str, list[str], str]]:
    """The anonymised interactions of erased people (customer `forgotten`) count as interactions, not a customer."""
    return [
        ("Overview", ["interactions", "unique events", "customers", "service journeys", "sessions"], f"""
            SELECT (SELECT count() FROM {db}.interactions), (SELECT uniqExact(event_id) FROM {db}.interactions),
                   (SELECT uniqExactIf(customer_id, customer_id != '{FORGOTTEN}') FROM {db}.interactions),
                   (SELECT count() FROM {db}.journeys WHERE kind = 'service'),
                   (SELECT count() FROM {db}.journeys WHERE kind = 'session')"""),
        ("Service journeys", ["journeys", "resolved", "FCR rate %", "avg contacts", "median hours to resolve"], f"""
            SELECT count(), sum(resolved), round(100 * sum(fcr) / greatest(count(), 1), 1),
                   round(avg(contacts), 2),
                   round(quantileExactIf(ifNull(time_to_resolution_s, 0), resolved = 1) / 3600, 2)
            FROM {db}.journeys WHERE kind = 'service'"""),
        ("Per channel", ["channel", "events", "avg sentiment", "NPS", "NPS responses", "CSAT %", "CES avg"], f"""
            SELECT channel, sum(events), sum(sentiment_sum), sum(sentiment_count), sum(nps_promoters),
                   sum(nps_detractors), sum(nps_responses), sum(csat_satisfied), sum(csat_responses), sum(ces_sum),
                   sum(ces_responses)
            FROM {db}.channel_hourly GROUP BY channel ORDER BY channel"""),
        ("Identity", ["identifiers", "shared", "merges", "refused merges"], f"""
            SELECT (SELECT count() FROM {db}.identities WHERE customer_id != ''),
                   (SELECT count() FROM (SELECT id_type, value FROM {db}.shared_identifiers GROUP BY id_type, value)),
                   (SELECT count() FROM {db}.customer_merges), (SELECT count() FROM {db}.refused_merges)"""),
    ]


def print_report(warehouse: Warehouse) -> None:
    print("\n=== cem customer-experience report ===")
    for title, headers, sql in report_queries(warehouse.database):
        rows = warehouse.query(sql)
        if title == "Per channel":
            rows = [channel_scores(row) for row in rows]
        print(f"\n{title}")
        print(format_table(headers, rows))
    print()


def channel_scores(row: Sequence[Any]) -> tuple[Any, ...]:
    """NPS = %promoters - %detractors; CSAT = share of 4s and 5s; CES = mean. '-' where nobody answered."""
    channel, events, s_sum, s_n, promoters, detractors, nps_n, satisfied, csat_n, ces_sum, ces_n = row
    return (
        channel,
        events,
        f"{s_sum / s_n:.3f}" if s_n else "-",
        f"{100 * (promoters - detractors) / nps_n:.1f}" if nps_n else "-",
        nps_n,
        f"{100 * satisfied / csat_n:.1f}" if csat_n else "-",
        f"{ces_sum / ces_n:.2f}" if ces_n else "-",
    )


def format_table(headers: Sequence[str] | None, rows: Sequence[Sequence[Any]]) -> str:
    cells = [["NULL" if v is None else str(v) for v in row] for row in rows]
    if headers:
        cells.insert(0, list(headers))
    if not cells:
        return "(no rows)"
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.rjust(w) if c.replace(".", "").lstrip("-").isdigit() else c.ljust(w)
                       for c, w in zip(row, widths, strict=True)) for row in cells]
    if headers:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

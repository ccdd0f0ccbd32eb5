"""The customer-experience report analysts and the demo print. Every figure is one query on the views."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sinks.clickhouse import Warehouse


def report_queries(db: str) -> list[tuple[str, list[str], str]]:
    return [
        ("Overview", ["interactions", "unique events", "customers", "service journeys", "sessions"], f"""
            SELECT (SELECT count() FROM {db}.interactions), (SELECT uniqExact(event_id) FROM {db}.interactions),
                   (SELECT uniqExact(customer_id) FROM {db}.interactions),
                   (SELECT count() FROM {db}.journeys WHERE kind = 'service'),
                   (SELECT count() FROM {db}.journeys WHERE kind = 'session')"""),
        ("Service journeys", ["journeys", "resolved", "FCR rate %", "avg contacts", "median hours to resolve"], f"""
            SELECT count(), sum(resolved), round(100 * sum(fcr) / greatest(sum(resolved), 1), 1),
                   round(avg(contacts), 2),
                   round(quantileExactIf(ifNull(time_to_resolution_s, 0), resolved = 1) / 3600, 2)
            FROM {db}.journeys WHERE kind = 'service'"""),
        ("Per channel", ["channel", "events", "avg sentiment", "NPS", "NPS responses", "CSAT %", "CES avg"], f"""
            SELECT channel, sum(events),
                   round(sum(sentiment_sum) / greatest(sum(sentiment_count), 1), 3),
                   round(100 * (sum(nps_promoters) - sum(nps_detractors)) / greatest(sum(nps_responses), 1), 1),
                   sum(nps_responses),
                   round(100 * sum(csat_satisfied) / greatest(sum(csat_responses), 1), 1),
                   round(sum(ces_sum) / greatest(sum(ces_responses), 1), 2)
            FROM {db}.channel_hourly GROUP BY channel ORDER BY channel"""),
        ("Identity", ["identifiers", "merges", "refused merges"], f"""
            SELECT (SELECT count() FROM {db}.identities), (SELECT count() FROM {db}.customer_merges),
                   (SELECT count() FROM {db}.refused_merges)"""),
    ]


def print_report(warehouse: Warehouse) -> None:
    print("\n=== cem customer-experience report ===")
    for title, headers, sql in report_queries(warehouse.database):
        print(f"\n{title}")
        print(format_table(headers, warehouse.query(sql)))
    print()


def format_table(headers: Sequence[str] | None, rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(v) for v in row] for row in rows]
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

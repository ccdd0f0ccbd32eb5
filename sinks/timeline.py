"""One customer's interactions, read from interaction_log without applying every override to every row.

The `interactions` view gives a row the customer `transform(identity_key, overrides)` names, or the one it was
written with; a filter on that customer must compute it for every row of the table. The same rows are those
written with the customer whose identifier set was never moved, plus those whose set was moved to the customer:
two lookups in the small `overrides` table and one filtered read of interaction_log. The answer is the view's,
row for row (tests/contract/views_contract.py compares them for every customer)."""

from __future__ import annotations

from sinks.clickhouse import sql_string

TIMELINE_COLUMNS = "event_id, occurred_at, occurred_ms, channel, type, issue_ref, survey_kind, survey_score, text"


def customer_timeline_sql(db: str, customer_id: str, columns: str = TIMELINE_COLUMNS) -> str:
    """The customer's interaction rows, oldest first (every copy of a replayed event is one row, as in the view)."""
    customer = sql_string(customer_id)
    moved = f"SELECT id FROM {db}.overrides WHERE kind = 'customer'"
    moved_here = (f"SELECT id FROM {db}.overrides WHERE kind = 'customer' GROUP BY id "
                  f"HAVING argMax(current_id, version) = {customer}")
    return (f"SELECT {columns} FROM {db}.interaction_log "
            f"WHERE (origin_customer_id = {customer} AND identity_key NOT IN ({moved})) "
            f"OR identity_key IN ({moved_here}) "
            "ORDER BY occurred_ms, event_id")

"""What the analysts' `interactions` view costs against its base table, interaction_log, on the database a phase
wrote: a count per channel, and one customer's timeline (the customer with the most events, found through the
view). Each pair runs alternately, and the ratio of the medians is reported, so a noisy machine weighs on both.
The squash is not run here: on the ClickHouse 18.16 test server a squash of tens of thousands of overrides ran the
server out of open files (docs/architecture.md, "Overrides and the squash job")."""

from __future__ import annotations

import statistics
import time
from typing import Any

from sinks.clickhouse import connect
from sinks.timeline import customer_timeline_sql

RUNS = 7


def _median_seconds(warehouse: Any, sql: str) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        warehouse.query(sql)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _ratios(warehouse: Any, db: str) -> dict[str, Any]:
    customer = warehouse.query(f"SELECT customer_id FROM {db}.interactions GROUP BY customer_id "
                               "ORDER BY count() DESC, customer_id LIMIT 1")[0][0]
    pairs = {
        "per_channel_count": (f"SELECT channel, count() FROM {db}.interactions GROUP BY channel",
                              f"SELECT channel, count() FROM {db}.interaction_log GROUP BY channel"),
        "customer_timeline": (
            f"SELECT occurred_at, channel, type, text FROM {db}.interactions WHERE customer_id = '{customer}' "
            "ORDER BY occurred_ms",
            f"SELECT occurred_at, channel, type, text FROM {db}.interaction_log "
            f"WHERE origin_customer_id = '{customer}' ORDER BY occurred_ms"),
    }
    # The same timeline read past the overrides (sinks/timeline.py), against the same base query
    pairs["customer_timeline_direct"] = (customer_timeline_sql(db, customer, "occurred_at, channel, type, text"),
                                         pairs["customer_timeline"][1])
    out: dict[str, Any] = {}
    for name, (view, base) in pairs.items():
        view_s, base_s = _median_seconds(warehouse, view), _median_seconds(warehouse, base)
        out[name] = {"view_s": round(view_s, 4), "base_s": round(base_s, 4), "ratio": round(view_s / base_s, 2)}
    return out


def measure(url: str) -> dict[str, Any]:
    warehouse = connect(url)
    db = warehouse.database
    try:
        rows = int(warehouse.query(f"SELECT count() FROM {db}.interaction_log")[0][0])
        overrides = dict(warehouse.query(f"SELECT kind, count() FROM {db}.overrides GROUP BY kind"))
        ratios = _ratios(warehouse, db)
    finally:
        warehouse.close()
    return {"interaction_rows": rows, "overrides_by_kind": {str(k): int(v) for k, v in overrides.items()},
            "before_squash": ratios}

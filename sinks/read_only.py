"""Read-only connections: the bounds every query runs within, enforced by the engine and, on a server, by the
client too. The statement guard itself is sinks.sql_guard."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TIMEOUT_EXCEEDED = 159  # ClickHouse error codes
READONLY = 164
_TIMEOUT_MESSAGE = re.compile(r"\bCode: 159\b|TIMEOUT_EXCEEDED")


class QueryTimeout(TimeoutError):
    def __init__(self, seconds: int) -> None:
        super().__init__(f"the query ran longer than {seconds} s and was stopped")
        self.seconds = seconds


@dataclass(frozen=True)
class QueryLimits:
    """Bounds of every query on a read-only connection (CEM_SQL_TIMEOUT_SECONDS, CEM_SQL_MAX_RESULT_ROWS)."""

    timeout_seconds: int = 60
    max_result_rows: int = 100_000

    def engine_settings(self) -> dict[str, Any]:
        # One row more than asked, so a caller can tell a cut result from one of exactly max_result_rows rows.
        # 'break' stops reading at the limit and applies to the final result only (checked on 18.16 and chdb 26:
        # subqueries, IN and JOIN sides are not cut).
        return {"max_execution_time": self.timeout_seconds, "max_result_rows": self.max_result_rows + 1,
                "result_overflow_mode": "break"}

    def session_statements(self) -> list[str]:
        """For chdb: the limits as session settings, then readonly=1, after which none of them can change."""
        return [f"SET {name} = {value!r}" for name, value in self.engine_settings().items()] + ["SET readonly = 1"]


def run_bounded(client: Any, sql: str, settings: dict[str, Any], limits: QueryLimits,
                clock: Callable[[], float] = time.monotonic) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run on a clickhouse-driver client with the client enforcing the limits too: the server may not (a user
    whose profile sets readonly=1 keeps its own limits). Data blocks arrive between progress packets; on a breach
    the query is cancelled on the server, not just abandoned."""
    deadline = clock() + limits.timeout_seconds
    cap = limits.max_result_rows + 1
    result = client.execute_with_progress(sql, with_column_types=True, settings=settings)
    for _progress in result:
        if clock() > deadline:
            _cancel(client)
            raise QueryTimeout(limits.timeout_seconds)
        if len(result.data) >= cap:
            _cancel(client)
            return [name for name, _ in result.columns_with_types], list(result.data[:cap])
    rows, columns = result.get_result()
    return [name for name, _ in columns], list(rows[:cap])


def _cancel(client: Any) -> None:
    try:
        client.cancel()
    except Exception:  # the query is gone either way; a fresh connection serves the next one
        client.disconnect()


def explain_unsupported(client: Any) -> str:
    """Why the server cannot EXPLAIN, or '': ClickHouse before 20.6 has no EXPLAIN, and says so with a syntax
    error that sends the reader looking for a typo."""
    connection = client.connection
    connection.force_connect()
    info = connection.server_info
    if (info.version_major, info.version_minor) >= (20, 6):
        return ""
    return (f"EXPLAIN needs ClickHouse 20.6 or later; this server runs "
            f"{info.version_major}.{info.version_minor}.{info.version_patch}")


def chdb_timed_out(exc: Exception) -> bool:
    return bool(_TIMEOUT_MESSAGE.search(str(exc)))

"""ClickHouse mutations (ALTER TABLE … UPDATE/DELETE), as erasure and the squash job send them: id lists cut into
chunks so a statement's text stays small, and a wait until the server has applied every mutation of the database
(mutations run in the background on both engines)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from sinks.clickhouse import sql_string
from sinks.warehouse import Warehouse, WarehouseError

IN_LIST_MAX = 1_000  # values per IN (...) list: a mutation's text stays far below max_query_size (256 KiB)


def chunks(values: Sequence[str], size: int = IN_LIST_MAX) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def in_list(values: Iterable[str]) -> str:
    return ", ".join(sql_string(v) for v in values)


def wait_for_mutations(warehouse: Warehouse, timeout: float, what: str = "mutations") -> None:
    deadline = time.monotonic() + timeout
    db = sql_string(warehouse.database)
    while warehouse.query(f"SELECT count() FROM system.mutations WHERE database = {db} AND is_done = 0")[0][0]:
        if time.monotonic() > deadline:
            raise WarehouseError(f"{what} did not finish in time")
        time.sleep(0.2)

"""The squash job: interaction rows rewritten with the overrides that apply to them, and those overrides deleted,
so `overrides` holds only recent moves and the `interactions` view stays as cheap as interaction_log.

An override is squashed once its latest version is older than a horizon. For each kind, the interaction rows it
applies to are rewritten with a mutation (`transform` over the ids of a chunk), the job waits until the server
has applied it, and only then deletes the overrides it applied, up to the horizon. Between the two steps a row
and its override agree, so every view stays exact at every moment; an override written later (a newer move)
has a newer version and is neither applied nor deleted. Running the job twice, or from two places, rewrites the
same rows to the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from sinks.mutations import chunks, in_list, wait_for_mutations
from sinks.warehouse import Warehouse

# kind -> (the interaction_log column rewritten, the column the override's id is matched against)
SQUASHED_COLUMNS = {
    "customer": ("origin_customer_id", "identity_key"),
    "session": ("origin_session_id", "origin_session_id"),
    "journey": ("journey_id", "journey_id"),
}


@dataclass(frozen=True)
class SquashResult:
    squashed: dict[str, int]  # kind -> overrides applied and deleted
    remaining: int  # override rows left (all kinds, every version)


def squash(warehouse: Warehouse, before_version: int, timeout: float = 600.0) -> SquashResult:
    """Apply and delete every override whose latest version is below `before_version` (a resolver version:
    milliseconds × 1000)."""
    db = warehouse.database
    squashed: dict[str, int] = {}
    for kind, (column, key_column) in SQUASHED_COLUMNS.items():
        overrides = warehouse.query(
            f"SELECT id, argMax(current_id, version) FROM {db}.overrides WHERE kind = '{kind}' "
            f"GROUP BY id HAVING max(version) < {int(before_version)} ORDER BY id")
        squashed[kind] = len(overrides)
        if not overrides:
            continue
        ids = [str(row[0]) for row in overrides]
        current = dict((str(a), str(b)) for a, b in overrides)
        for chunk in chunks(ids):
            warehouse.command(
                f"ALTER TABLE {db}.interaction_log UPDATE {column} = transform({key_column}, [{in_list(chunk)}], "
                f"[{in_list(current[i] for i in chunk)}], {column}) WHERE {key_column} IN ({in_list(chunk)})")
        wait_for_mutations(warehouse, timeout, "the squash of interaction rows")
        for chunk in chunks(ids):
            warehouse.command(f"ALTER TABLE {db}.overrides DELETE WHERE kind = '{kind}' AND id IN ({in_list(chunk)}) "
                              f"AND version < {int(before_version)}")
        wait_for_mutations(warehouse, timeout, "the squash of overrides")
    remaining = int(warehouse.query(f"SELECT count() FROM {db}.overrides")[0][0])
    return SquashResult(squashed, remaining)

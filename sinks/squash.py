"""The squash job: interaction rows rewritten with the overrides that apply to them, and those overrides deleted,
so `overrides` holds only recent moves and the `interactions` view stays as cheap as interaction_log.

An override is squashed once its latest version is older than a horizon (`before_version`). Versions only grow,
so the overrides below the horizon are a fixed set while the job runs; a move written meanwhile is newer and is
neither applied nor deleted. For each kind the interaction rows are rewritten with a mutation, the job waits until
the server has applied it, and only then deletes the overrides it applied. Between the two steps a row and its
override agree, so the views stay exact at every moment. Running the job twice, or from two places, rewrites the
same rows to the same ids.

Mutation texts stay in `system.mutations`, so they never name an identity key (a hash of a person's
identifiers): customer overrides are applied per target customer, with the keys selected by a subquery on
`overrides` (ClickHouse 18.16 accepts IN subqueries in a mutation, not scalar ones). Session and journey ids,
which name no person, are listed as literals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sinks.clickhouse import sql_string
from sinks.mutations import chunks, in_list, wait_for_mutations
from sinks.warehouse import Warehouse

# A mutation rewrites every part it touches, so customer targets go into as few mutations as the query size allows
# (max_query_size is 256 KiB by default): one IN subquery per target customer, up to this much text.
MUTATION_TEXT_MAX = 200_000
TARGETS_PER_MUTATION = 100  # and few IN subqueries per mutation: each holds sets and files open on the server
# kind -> the interaction_log column its ids are written in (and rewritten)
ID_COLUMNS = {"session": "origin_session_id", "journey": "journey_id"}


@dataclass(frozen=True)
class SquashResult:
    squashed: dict[str, int]  # kind -> overrides applied and deleted
    remaining: int  # override rows left (all kinds, every version)


def squash(warehouse: Warehouse, before_version: int, timeout: float = 600.0) -> SquashResult:
    """Apply and delete every override whose latest version is below `before_version` (a resolver version:
    milliseconds × 1000)."""
    db, below = warehouse.database, int(before_version)
    squashed = {"customer": _squash_customers(warehouse, below, timeout)}
    for kind, column in ID_COLUMNS.items():
        squashed[kind] = _squash_ids(warehouse, kind, column, below, timeout)
    remaining = int(warehouse.query(f"SELECT count() FROM {db}.overrides")[0][0])
    return SquashResult(squashed, remaining)


def _latest(db: str, kind: str, below: int, having: str = "") -> str:
    """The ids of `kind` whose latest override is below the horizon (and meets `having`)."""
    return (f"SELECT id FROM {db}.overrides WHERE kind = '{kind}' GROUP BY id "
            f"HAVING max(version) < {below}{' AND ' + having if having else ''}")


def _squash_customers(warehouse: Warehouse, below: int, timeout: float) -> int:
    db = warehouse.database
    rows = warehouse.query(f"SELECT argMax(current_id, version) FROM {db}.overrides "
                           f"WHERE kind = 'customer' GROUP BY id HAVING max(version) < {below}")
    targets = sorted({str(target) for (target,) in rows})
    for chunk in _text_bounded(targets, lambda t: _customer_branch(db, below, t)):
        branches = ", ".join(_customer_branch(db, below, t) for t in chunk)
        scope = _latest(db, "customer", below, f"argMax(current_id, version) IN ({in_list(chunk)})")
        warehouse.command(f"ALTER TABLE {db}.interaction_log UPDATE origin_customer_id = "
                          f"multiIf({branches}, origin_customer_id) WHERE identity_key IN ({scope})")
    _delete_applied(warehouse, "customer", below, timeout, bool(rows))
    return len(rows)


def _customer_branch(db: str, below: int, target: str) -> str:
    """The multiIf branch giving `target` to the rows of every set whose latest override names it."""
    latest = _latest(db, "customer", below, f"argMax(current_id, version) = {sql_string(target)}")
    return f"identity_key IN ({latest}), {sql_string(target)}"


def _text_bounded(targets: list[str], text: Callable[[str], str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for target in targets:
        cost = len(text(target)) + len(target) + 4
        if chunk and (size + cost > MUTATION_TEXT_MAX or len(chunk) >= TARGETS_PER_MUTATION):
            yield chunk
            chunk, size = [], 0
        chunk.append(target)
        size += cost
    if chunk:
        yield chunk


def _squash_ids(warehouse: Warehouse, kind: str, column: str, below: int, timeout: float) -> int:
    db = warehouse.database
    rows = warehouse.query(f"SELECT id, argMax(current_id, version) FROM {db}.overrides WHERE kind = '{kind}' "
                           f"GROUP BY id HAVING max(version) < {below} ORDER BY id")
    current = {str(old): str(new) for old, new in rows}
    for chunk in chunks(sorted(current)):
        warehouse.command(
            f"ALTER TABLE {db}.interaction_log UPDATE {column} = transform({column}, [{in_list(chunk)}], "
            f"[{in_list(current[i] for i in chunk)}], {column}) WHERE {column} IN ({in_list(chunk)})")
    _delete_applied(warehouse, kind, below, timeout, bool(rows))
    return len(rows)


def _delete_applied(warehouse: Warehouse, kind: str, below: int, timeout: float, any_applied: bool) -> None:
    if not any_applied:
        return
    wait_for_mutations(warehouse, timeout, f"the squash of {kind} overrides")
    db = warehouse.database
    warehouse.command(f"ALTER TABLE {db}.overrides DELETE WHERE kind = '{kind}' AND version < {below} "
                      f"AND id IN ({_latest(db, kind, below)})")
    wait_for_mutations(warehouse, timeout, f"the deletion of squashed {kind} overrides")

"""The identity graph's answers read back from the warehouse, as one identity version: the start of a worker's
replica (everything up to the last complete batch) and the owner's catch-up after a takeover (everything written
after the last version it finds published). Both engines answer the same SQL (ClickHouse 18.16 and chdb)."""

from __future__ import annotations

from typing import Any, Protocol

from cem.domain.identity_replica import IdentityChanges
from sinks.snapshot import FIRST_KEY_SQL, first_key
from sinks.warehouse import WrittenInFull

NO_BOUND = 2**63 - 1  # above every version (microseconds since 1970)


class Queries(Protocol):
    database: str

    def query(self, sql: str) -> list[tuple[Any, ...]]: ...


def identity_changes_between(reader: Queries, after: int, upto: int | None) -> IdentityChanges:
    """Each identifier set's and customer alias's latest row with a version in (after, upto] (upto None: no bound),
    as a version numbered by the newest of them (0 when there is none). A set's customer and an alias are taken at
    their latest version up to `upto`, so rows of a batch still being written above it are left out, and so are
    the rows of batches cut short (`abandoned_batches`): the batch done again wrote what they said."""
    db = reader.database
    kept = _kept_versions(reader, upto)
    sets: dict[Any, tuple[str, tuple[int, str]]] = {}
    newest = 0
    for types, values, customer, first, version in reader.query(
            f"SELECT any(id_types), any(id_values), argMax(customer_id, version), {FIRST_KEY_SQL}, max(version) "
            f"FROM {db}.identity_sets WHERE {kept} GROUP BY identity_key HAVING max(version) > {int(after)}"):
        identifiers = tuple(zip((str(t) for t in types), (str(v) for v in values), strict=True))
        sets[identifiers] = (str(customer), first_key(str(first)))
        newest = max(newest, int(version))
    aliases: dict[str, str] = {}
    for alias_id, current_id, version in reader.query(
            f"SELECT alias_id, argMax(current_id, version), max(version) FROM {db}.id_aliases "
            f"WHERE kind = 'customer' AND {kept} GROUP BY alias_id HAVING max(version) > {int(after)}"):
        aliases[str(alias_id)] = str(current_id)
        newest = max(newest, int(version))
    return IdentityChanges(newest, sets, aliases)


def _kept_versions(reader: Queries, upto: int | None) -> str:
    """The condition on `version` for rows up to `upto` (None: no bound) that no abandoned batch wrote."""
    abandoned = tuple((int(after), int(until)) for after, until in reader.query(
        f"SELECT after_version, until_version FROM {reader.database}.abandoned_batches"))
    return WrittenInFull(NO_BOUND if upto is None else upto, abandoned).sql()


def replica_start(reader: Queries) -> IdentityChanges:
    """What a replica starts from: every set and alias up to the last batch whose every row is written (its mark
    in resolver_batches is written last), numbered by that batch, so the replica applies every later version from
    the topic."""
    marks = reader.query(f"SELECT max(version) FROM {reader.database}.resolver_batches")
    mark = int(marks[0][0]) if marks and marks[0][0] is not None else 0
    changes = identity_changes_between(reader, -1, mark)
    return IdentityChanges(mark, changes.sets, changes.aliases)

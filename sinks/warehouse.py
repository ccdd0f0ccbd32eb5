"""The warehouse interface: what the resolver service writes through and rebuilds its state from.

Two implementations: the ClickHouse adapter (sinks.clickhouse: a server, or the embedded chdb) and an in-memory
fake (sinks.fake) for tests. The reads that rebuild the resolver are typed methods (`WarehouseReader`), so the
fake answers them in Python instead of parsing SQL, and one contract suite holds both to the same answers
(tests/contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from cem.domain.identity import IdentitySet
from cem.domain.resolver import RecentRow
from cem.domain.shared import SharedIdentifier
from sinks.writer import EARLY_TABLES


class WarehouseError(Exception):
    pass


class IdentitySetRow(NamedTuple):
    """One identifier set as the warehouse holds it: the earliest event that carried it."""

    identity_key: str
    identifiers: IdentitySet
    first_ms: int
    first_event_id: str


class JourneyRow(NamedTuple):
    """A service journey as last written: the journey that absorbed it (or ""), and its customer."""

    journey_id: str
    merged_into: str
    customer_id: str


@dataclass(frozen=True)
class WrittenInFull:
    """The rows of the batches the warehouse holds in full: up to the last one (`through`, its version), without
    those of batches a crash cut short between two inserts (`abandoned`: ranges of versions, (after, until])."""

    through: int
    abandoned: tuple[tuple[int, int], ...] = ()

    def admits(self, version: int) -> bool:
        return version <= self.through and not any(after < version <= until for after, until in self.abandoned)

    def sql(self, version: str = "version") -> str:
        """The same condition on a version column (or expression)."""
        return " AND ".join([f"{version} <= {int(self.through)}", *(
            f"NOT ({version} > {int(after)} AND {version} <= {int(until)})" for after, until in self.abandoned)])


class WarehouseReader(Protocol):
    """The reads the resolver's state is rebuilt from (sinks.snapshot.load_snapshot)."""

    # `written`: only the rows of these batches (None: every row). A restore reads the batches written in full:
    # a batch cut short by a crash is done again from the start (sinks.snapshot).
    def identity_sets(self, written: WrittenInFull | None = None) -> list[IdentitySetRow]:
        """One row per identity_key: its identifiers, the smallest first_ms and that row's first_event_id."""
        ...

    def shared_identifiers(self, written: WrittenInFull | None = None) -> list[SharedIdentifier]:
        """One row per (id_type, value): the marking, i.e. its earliest version (a later one is the same fact
        found again after a restart)."""
        ...

    def session_aliases(self, written: WrittenInFull | None = None) -> list[tuple[str, str]]:
        """(alias session id, current session id), the latest version of each alias."""
        ...

    def customer_aliases(self, written: WrittenInFull | None = None) -> dict[str, str]:
        """Merged customer -> the customer it merged into (itself: live again), the latest version of each alias.
        A graph restored from identifier sets alone does not name a merged customer that owns no set any more."""
        ...

    def session_owners(self, since_version: int, written: WrittenInFull | None = None) -> dict[str, str]:
        """Session id -> the customer of its latest row that names one (an absorbed session's rows name none),
        over the rows written at or after that version."""
        ...

    def service_journeys(self, written: WrittenInFull | None = None) -> list[JourneyRow]:
        """One row per service journey id, with merged_into and customer_id of its latest version."""
        ...

    def recent_interactions(self, since_ingested_ms: int) -> list[RecentRow]:
        """Interaction rows ingested since then, plus every row with an issue_ref, by ingestion time and
        version."""
        ...


    def last_batch_version(self) -> int:
        """The version of the last resolver batch written in full (0: none)."""
        ...

    def abandoned_batches(self) -> list[tuple[int, int]]:
        """(after, until) of every range of versions abandoned: the rows of batches cut short."""
        ...

    def stale_customer_overrides(self, written: WrittenInFull) -> list[str]:
        """The identity keys whose latest customer override is not a row of `written`: written by a batch cut
        short. The batch doing its work again may find nothing to override there; it writes them all the same."""
        ...

    def newest_version_above(self, version: int, tables: tuple[str, ...] = EARLY_TABLES) -> int:
        """The highest version above `version` in `tables` (0: none there); in those a batch writes before its
        interaction rows, the rows of a batch cut short."""
        ...

    def holds_version(self, table: str, version: int) -> bool:
        """Whether a row of `table` carries that version: after a failed insert, whether it landed all the same
        (an insert is all or none)."""
        ...

    def unmarked_partition_ids(self, since_version: int) -> tuple[set[str], set[str]]:
        """(session ids, journey ids) named by the customer partitions' rows at or above `since_version` whose
        version has no mark in `partition_batches`: written by a batch cut short, or one being written now. (Two
        writers never share a version: cem.domain.effects.own_version.)"""
        ...


class Warehouse(WarehouseReader, Protocol):
    database: str

    def command(self, sql: str) -> None: ...

    def query(self, sql: str) -> list[tuple[Any, ...]]: ...

    def query_with_columns(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows. On a read-only connection: at most max_result_rows + 1 rows."""
        ...

    def insert(self, table: str, columns: dict[str, list[Any]]) -> None:
        """All rows or none: a refused or failed insert writes nothing of itself (though its reply can be lost
        after the rows were written)."""
        ...

    def close(self) -> None: ...

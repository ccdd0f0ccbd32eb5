"""Reading the resolver's state back: `load_snapshot` over the typed reads of a warehouse, and those reads in
ClickHouse SQL (`ClickHouseReads`, mixed into both ClickHouse connections). Both engines answer the same SQL:
ClickHouse 18.16 and chdb; views stay exact without FINAL (argMax by version)."""

from __future__ import annotations

from typing import Any

from cem.domain.resolver import RecentRow, Snapshot
from cem.domain.shared import SharedIdentifier
from sinks.warehouse import IdentitySetRow, JourneyRow, WarehouseReader, WrittenInFull
from sinks.writer import EARLY_TABLES, OWNER_TABLES, PARTITION_NAMES


def load_snapshot(reader: WarehouseReader, since_ingested_ms: int, *, written_in_full: bool = False
                  ) -> Snapshot:
    """The resolver's state as the warehouse holds it. `written_in_full`: only the batches the warehouse holds
    in full (`written_in_full_now`). A batch a crash cut short between two of its inserts is then read as not
    written at all, so the worker does it again from the start: read back in part, its identity rows would make
    its events look already resolved, and the rows of its later tables (overrides, sessions) would never be
    written."""
    snapshot = Snapshot()
    written = None
    if written_in_full:  # rows written after these reads are newer than `written` admits: left out as well
        snapshot.recent = reader.recent_interactions(since_ingested_ms)
        written = _without_cut_batches(reader, snapshot, written_in_full_now(reader, snapshot.recent), EARLY_TABLES)
    _read_state(reader, snapshot, since_ingested_ms, written, written)
    if not written_in_full:  # read last: every row it holds was written after the reads above
        snapshot.recent = reader.recent_interactions(since_ingested_ms)
    return snapshot


def load_split_snapshot(reader: WarehouseReader, since_ingested_ms: int, *, owner: bool
                        ) -> tuple[Snapshot, WrittenInFull]:
    """The split's state (cem.service.split_service): the identity rows of the owner batches held in full (up to
    its last mark, without the abandoned ones), the customer partitions' rows as they are. An owner batch cut
    short is done again from the start, as the single resolver's is (load_snapshot); an owner batch being written
    now is not published yet, and each stage applies it once published. `owner`: the graph's owner restoring,
    which notes on the snapshot the batch cut short it finds (`cut`), above its last mark in OWNER_TABLES. Returns
    the snapshot and what it admitted of the identity rows."""
    snapshot = Snapshot()
    marked = WrittenInFull(reader.last_batch_version(), tuple(sorted(reader.abandoned_batches())))
    written = _without_cut_batches(reader, snapshot, marked, OWNER_TABLES if owner else ())
    _read_state(reader, snapshot, since_ingested_ms, written, None)
    snapshot.recent = reader.recent_interactions(since_ingested_ms)
    return snapshot, written


def _read_state(reader: WarehouseReader, snapshot: Snapshot, since_ingested_ms: int, identity: WrittenInFull | None,
                rest: WrittenInFull | None) -> None:
    """The reads of a snapshot but the recent rows: the identity tables' as `identity` admits, the others' as
    `rest` does."""
    for row in reader.identity_sets(identity):
        snapshot.identity_sets[row.identity_key] = (row.identifiers, (row.first_ms, row.first_event_id))
    snapshot.shared = reader.shared_identifiers(identity)
    snapshot.session_aliases = reader.session_aliases(rest)
    # Service journeys: the absorbed ones (merged_into set) and the customer each live one was last written with.
    for journey in reader.service_journeys(rest):
        if journey.merged_into:
            snapshot.journey_aliases.append((journey.journey_id, journey.merged_into))
        else:
            snapshot.journey_owners[journey.journey_id] = journey.customer_id
    # A session with a row ingested since then was written at that batch's version or later (versions start at
    # the batch's time in microseconds).
    snapshot.session_owners = reader.session_owners(since_ingested_ms * 1000, rest)


def _without_cut_batches(reader: WarehouseReader, snapshot: Snapshot, written: WrittenInFull,
                         tables: tuple[str, ...]) -> WrittenInFull:
    """The rows to read back: `written`, without a batch cut short found now above it in `tables` (none looked
    for when empty), noted on `snapshot` (`cut`) with the overrides batches cut short left latest
    (`stale_overrides`)."""
    newest = reader.newest_version_above(written.through, tables) if tables else 0
    if newest:
        snapshot.cut = (written.through, newest)
        written = WrittenInFull(written.through, (*written.abandoned, snapshot.cut))
    if written.abandoned:
        snapshot.stale_overrides = frozenset(reader.stale_customer_overrides(written))
    return written


def written_in_full_now(reader: WarehouseReader, recent: list[RecentRow]) -> WrittenInFull:
    """The batches the warehouse holds in full: through the last mark (written last), or a later batch whose
    interaction rows landed (written just before the mark: every other row of it is there); without the versions
    of batches cut short (`abandoned_batches`). A warehouse has a mark from its migrations on (0 when new, the
    newest row written before the marks existed otherwise)."""
    through = max(reader.last_batch_version(), max((row.version for row in recent), default=0))
    return WrittenInFull(through, tuple(sorted(reader.abandoned_batches())))


# A set's earliest event is the least (first_ms, first_event_id): one fixed-width string per row, so that min()
# breaks a tie in first_ms by the event id as the graph does (argMin(first_event_id, first_ms) picks any of the
# tied rows). 15 digits hold every millisecond before the year 30000.
FIRST_KEY_OFFSET = 10**14
FIRST_KEY_SQL = f"min(concat(toString(first_ms + {FIRST_KEY_OFFSET}), first_event_id))"


def first_key(value: str) -> tuple[int, str]:
    """(first_ms, first_event_id) of a FIRST_KEY_SQL value."""
    return int(value[:15]) - FIRST_KEY_OFFSET, value[15:]


class ClickHouseReads:
    """WarehouseReader in SQL, for a class with `database` and `query`."""

    database: str

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def identity_sets(self, written: WrittenInFull | None = None) -> list[IdentitySetRow]:
        return [
            IdentitySetRow(str(key), tuple(zip((str(t) for t in types), (str(v) for v in values), strict=True)),
                           *first_key(first))
            for key, types, values, first in self.query(
                f"SELECT identity_key, any(id_types), any(id_values), {FIRST_KEY_SQL} "
                f"FROM {self.database}.identity_sets {_written('WHERE', written)}GROUP BY identity_key")
        ]

    def shared_identifiers(self, written: WrittenInFull | None = None) -> list[SharedIdentifier]:
        return [
            SharedIdentifier(str(t), str(v), str(e), int(ms), str(reason), int(n)) for t, v, e, ms, reason, n in
            self.query("SELECT id_type, value, argMin(event_id, version), argMin(occurred_ms, version), "
                       "argMin(reason, version), argMin(distinct_count, version) "
                       f"FROM {self.database}.shared_identifiers {_written('WHERE', written)}"
                       "GROUP BY id_type, value")
        ]

    def session_aliases(self, written: WrittenInFull | None = None) -> list[tuple[str, str]]:
        return self._aliases("session", written)

    def customer_aliases(self, written: WrittenInFull | None = None) -> dict[str, str]:
        return dict(self._aliases("customer", written))

    def _aliases(self, kind: str, written: WrittenInFull | None = None) -> list[tuple[str, str]]:
        return [(str(a), str(b)) for a, b in self.query(
            f"SELECT alias_id, argMax(current_id, version) FROM {self.database}.id_aliases WHERE kind = '{kind}' "
            f"{_written('AND', written)}GROUP BY alias_id")]

    def last_batch_version(self) -> int:
        return int(self.query(f"SELECT max(version) FROM {self.database}.resolver_batches")[0][0])

    def abandoned_batches(self) -> list[tuple[int, int]]:
        return [(int(after), int(until)) for after, until in self.query(
            f"SELECT after_version, until_version FROM {self.database}.abandoned_batches")]

    def stale_customer_overrides(self, written: WrittenInFull) -> list[str]:
        return [str(key) for (key,) in self.query(
            f"SELECT id FROM {self.database}.overrides WHERE kind = 'customer' GROUP BY id "
            f"HAVING NOT ({written.sql('max(version)')})")]

    def newest_version_above(self, version: int, tables: tuple[str, ...] = EARLY_TABLES) -> int:
        newest = " UNION ALL ".join(
            f"SELECT max(version) AS newest FROM {self.database}.{table} WHERE version > {int(version)}"
            for table in tables)
        return int(self.query(f"SELECT max(newest) FROM ({newest})")[0][0])

    def holds_version(self, table: str, version: int) -> bool:
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        return bool(self.query(f"SELECT count() FROM {self.database}.{table} WHERE version = {int(version)}")[0][0])

    def unmarked_partition_ids(self, since_version: int) -> tuple[set[str], set[str]]:
        db, since = self.database, int(since_version)
        unmarked = (f"version >= {since} AND version NOT IN "
                    f"(SELECT version FROM {db}.partition_batches WHERE version >= {since})")
        named = " UNION ALL ".join(
            f"SELECT '{names}' AS kind, {column} AS id FROM {db}.{table} WHERE {unmarked} "
            f"AND {column} NOT IN ('', '-')" + (f" AND kind = '{row_kind}'" if row_kind else "")
            for names, table, row_kind, columns in PARTITION_NAMES for column in columns)
        found: tuple[set[str], set[str]] = (set(), set())
        for kind, id_ in self.query(f"SELECT kind, id FROM ({named}) GROUP BY kind, id"):
            found[0 if kind == "session" else 1].add(str(id_))
        return found

    def session_owners(self, since_version: int, written: WrittenInFull | None = None) -> dict[str, str]:
        return {str(s): str(c) for s, c in self.query(
            f"SELECT session_id, argMax(customer_id, version) FROM {self.database}.session_log "
            f"WHERE customer_id != '' AND version >= {int(since_version)} {_written('AND', written)}"
            "GROUP BY session_id")}

    def service_journeys(self, written: WrittenInFull | None = None) -> list[JourneyRow]:
        return [JourneyRow(str(journey_id), str(merged_into), str(owner)) for journey_id, merged_into, owner in
                self.query("SELECT journey_id, argMax(merged_into, version), argMax(customer_id, version) "
                           f"FROM {self.database}.journey_log WHERE kind = 'service' "
                           f"{_written('AND', written)}GROUP BY journey_id")]

    def recent_interactions(self, since_ingested_ms: int) -> list[RecentRow]:
        return [
            RecentRow(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), str(r[5]), str(r[6]), str(r[7]),
                      str(r[8]), str(r[9]), str(r[10]), str(r[11]))
            for r in self.query(
                "SELECT event_id, fingerprint, ingested_ms, version, occurred_ms, channel, type, origin_customer_id, "
                f"origin_session_id, issue_ref, identity_key, journey_id FROM {self.database}.interaction_log "
                f"WHERE ingested_ms >= {int(since_ingested_ms)} OR issue_ref != '' ORDER BY ingested_ms, version")
        ]


def _written(keyword: str, written: WrittenInFull | None) -> str:
    """WarehouseReader's `written` as a condition after `keyword`, ending in a space ("" when None)."""
    return "" if written is None else f"{keyword} {written.sql()} "

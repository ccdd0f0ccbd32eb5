-- The split's customer partitions mark each batch they wrote in full: its interaction rows first, then its
-- session and journey rows and their aliases and overrides, then this row. A partition's batch a crash cut short
-- leaves rows at a version with no mark; the partition restored next writes over the sessions and journeys those
-- rows name, from the state it rebuilt from the interaction rows (cem.service.split_service). Two writers never
-- share a version (cem.domain.effects.own_version), so a mark at a version is that batch's.
CREATE TABLE IF NOT EXISTS {db}.partition_batches (
    version UInt64,
    interactions UInt32,
    written_ms UInt64
) ENGINE = MergeTree() ORDER BY version;

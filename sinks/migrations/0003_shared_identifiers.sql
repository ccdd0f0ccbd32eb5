-- Identifiers seen with more values of another type than one customer may hold (docs/identity.md, "Shared
-- identifiers"): they link and attribute nobody. One row per identifier; the first version is the marking, a
-- later one is the same fact found again after a restart. Runs on ClickHouse 18.16 and current ClickHouse.
CREATE TABLE IF NOT EXISTS {db}.shared_identifiers (
    id_type String,
    value String,
    event_id String,
    occurred_ms UInt64,
    marked_ms UInt64,
    marked_at DateTime('UTC') DEFAULT toDateTime(intDiv(marked_ms, 1000), 'UTC'),
    reason String,
    distinct_count UInt32,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (id_type, value);

-- One row per resolver batch, written after every other row of the batch: the last batch the warehouse holds in
-- full. A worker restarting on its own disk resumes from its local state only when that state ends with this
-- batch (docs/architecture.md, "The state store"); otherwise it rebuilds from the warehouse.
CREATE TABLE IF NOT EXISTS {db}.resolver_batches (
    version UInt64,
    interactions UInt32,
    duplicates UInt32,
    written_ms UInt64,
    written_at DateTime('UTC') DEFAULT toDateTime(intDiv(written_ms, 1000), 'UTC')
) ENGINE = MergeTree() ORDER BY version;

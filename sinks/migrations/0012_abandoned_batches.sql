-- A batch a crash cut short between two of its inserts leaves some of its rows and no mark. The worker that
-- restores next records their versions here (above the last batch held in full, up to the newest of them) before
-- it writes anything, reads the state back without them and does the batch again, versioned above them; every
-- later restore leaves these versions out too (sinks.snapshot.load_snapshot). The views read every row as
-- before: the batch done again writes every key the cut one wrote, at a newer version.
CREATE TABLE IF NOT EXISTS {db}.abandoned_batches (
    after_version UInt64,
    until_version UInt64,
    found_ms UInt64
) ENGINE = MergeTree() ORDER BY after_version;

-- A warehouse without any batch mark gets one, so that a restore always has a last batch held in full: at the
-- newest version its tables hold (rows written before the marks existed are read as written in full), or at 0 on
-- a new warehouse, where a first batch cut short before its mark is then left out and done again like any other.
INSERT INTO {db}.resolver_batches (version, interactions, duplicates, written_ms)
SELECT newest, 0, 0, 0 FROM (
    SELECT max(version) AS newest FROM (
        SELECT version FROM {db}.customer_log UNION ALL SELECT version FROM {db}.identity_links
        UNION ALL SELECT version FROM {db}.customer_merges UNION ALL SELECT version FROM {db}.shared_identifiers
        UNION ALL SELECT version FROM {db}.id_aliases UNION ALL SELECT version FROM {db}.identity_sets
        UNION ALL SELECT version FROM {db}.session_log UNION ALL SELECT version FROM {db}.journey_log
        UNION ALL SELECT version FROM {db}.overrides UNION ALL SELECT version FROM {db}.interaction_log
        UNION ALL SELECT toUInt64(0) AS version
    )
) WHERE (SELECT count() FROM {db}.resolver_batches) = 0

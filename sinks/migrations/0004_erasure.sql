-- Erasure audit without anything that re-identifies the person: a KEYED hash of the value (blake2b keyed with
-- CEM_SECRET_KEY, cem/domain/keyed.py) and no customer id. It replaces erasure_log, whose unsalted SHA-256 could
-- be matched against a list of emails and whose customer id joined to the refused merges. Old rows are copied
-- without either (value_key stays empty for them), then erasure_log is dropped.
-- ClickHouse 18.16 has no ALTER ... IF [NOT] EXISTS, so this is a new table; every statement can run again.

CREATE TABLE IF NOT EXISTS {db}.erasure_audit (
    request_id String,
    id_type String,
    value_key String,
    status String,
    reason String,
    forced UInt8,
    customers_erased UInt32,
    identifiers_removed UInt32,
    events_anonymised UInt32,
    requested_ms UInt64,
    completed_ms UInt64,
    completed_at DateTime('UTC') DEFAULT toDateTime(intDiv(completed_ms, 1000), 'UTC')
) ENGINE = MergeTree() ORDER BY request_id;

CREATE TABLE IF NOT EXISTS {db}.erasure_log (
    request_id String,
    id_type String,
    value_hash String,
    customer_id String,
    identifiers_removed UInt32,
    events_anonymised UInt32,
    requested_ms UInt64,
    completed_ms UInt64
) ENGINE = MergeTree() ORDER BY request_id;

INSERT INTO {db}.erasure_audit (request_id, id_type, value_key, status, reason, forced, customers_erased,
                                identifiers_removed, events_anonymised, requested_ms, completed_ms)
SELECT request_id, id_type, '', if(customer_id = '', 'not_found', 'applied'), 'before 0004_erasure', 0,
       customer_id != '', identifiers_removed, events_anonymised, requested_ms, completed_ms
FROM {db}.erasure_log WHERE request_id NOT IN (SELECT request_id FROM {db}.erasure_audit);

DROP TABLE IF EXISTS {db}.erasure_log;

-- Storage tables. Analysts read the views in 0002; these hold facts as the worker wrote them.
-- Every statement runs on ClickHouse 18.16 and on current ClickHouse: no DateTime64, no TTL, no Map,
-- no LowCardinality. Times are kept exact as epoch milliseconds, with DateTime columns for humans.

CREATE TABLE IF NOT EXISTS {db}.interaction_log (
    event_id String,
    channel String,
    type String,
    occurred_ms UInt64,
    occurred_at DateTime('UTC') DEFAULT toDateTime(intDiv(occurred_ms, 1000), 'UTC'),
    identity_key String,
    origin_customer_id String,
    origin_session_id String,
    journey_id String,
    issue_ref String,
    sentiment Nullable(Float64),
    survey_kind String,
    survey_score Nullable(Int16),
    text String,
    device String,
    os String,
    browser String,
    property_keys Array(String),
    property_values Array(String),
    fingerprint String,
    ingested_ms UInt64,
    version UInt64
) ENGINE = MergeTree() PARTITION BY toYYYYMM(occurred_at) ORDER BY (channel, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS {db}.customer_log (
    customer_id String,
    first_event_id String,
    first_seen_ms UInt64,
    first_seen_at DateTime('UTC') DEFAULT toDateTime(intDiv(first_seen_ms, 1000), 'UTC'),
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY customer_id;

CREATE TABLE IF NOT EXISTS {db}.identity_links (
    id_type String,
    value String,
    customer_id String,
    event_id String,
    occurred_ms UInt64,
    linked_at DateTime('UTC') DEFAULT toDateTime(intDiv(occurred_ms, 1000), 'UTC'),
    rule String,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (id_type, value);

CREATE TABLE IF NOT EXISTS {db}.customer_merges (
    from_id String,
    into_id String,
    event_id String,
    occurred_ms UInt64,
    merged_at DateTime('UTC') DEFAULT toDateTime(intDiv(occurred_ms, 1000), 'UTC'),
    rule String,
    seq UInt32,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (from_id, into_id);

CREATE TABLE IF NOT EXISTS {db}.refused_merge_log (
    customer_id String,
    other_customer_id String,
    event_id String,
    occurred_ms UInt64,
    refused_at DateTime('UTC') DEFAULT toDateTime(intDiv(occurred_ms, 1000), 'UTC'),
    reason String,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (event_id, customer_id, other_customer_id);

-- Each distinct identifier set seen on an event, and the customer it belongs to now (the latest version).
-- Interactions find their customer through their identity_key; a merge or a recompute rewrites the sets moved.
CREATE TABLE IF NOT EXISTS {db}.identity_sets (
    identity_key String,
    id_types Array(String),
    id_values Array(String),
    first_ms UInt64,
    first_event_id String,
    customer_id String,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY identity_key;

-- One row per erasure request (cem forget): what was removed, never the identifier value itself.
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

-- Historical id -> the id it resolves to now, for customers and sessions. The latest version wins.
CREATE TABLE IF NOT EXISTS {db}.id_aliases (
    kind String,
    alias_id String,
    current_id String,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (kind, alias_id);

-- One row per journey state change; the journeys view keeps the latest.
CREATE TABLE IF NOT EXISTS {db}.journey_log (
    journey_id String,
    kind String,
    customer_id String,
    issue_ref String,
    started_ms UInt64,
    ended_ms UInt64,
    started_at DateTime('UTC') DEFAULT toDateTime(intDiv(started_ms, 1000), 'UTC'),
    ended_at DateTime('UTC') DEFAULT toDateTime(intDiv(ended_ms, 1000), 'UTC'),
    events UInt32,
    contacts UInt32,
    channels Array(String),
    resolved UInt8,
    resolved_ms UInt64,
    fcr UInt8,
    time_to_resolution_s Nullable(Float64),
    merged_into String,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY journey_id;

CREATE TABLE IF NOT EXISTS {db}.channel_hourly (
    hour DateTime('UTC'),
    channel String,
    events UInt64,
    sentiment_sum Float64,
    sentiment_count UInt64,
    nps_responses UInt64,
    nps_promoters UInt64,
    nps_detractors UInt64,
    csat_responses UInt64,
    csat_satisfied UInt64,
    ces_responses UInt64,
    ces_sum UInt64
) ENGINE = SummingMergeTree() ORDER BY (hour, channel);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.channel_hourly_mv TO {db}.channel_hourly AS
SELECT
    toStartOfHour(occurred_at) AS hour,
    channel,
    count() AS events,
    sum(ifNull(sentiment, 0)) AS sentiment_sum,
    sum(isNotNull(sentiment)) AS sentiment_count,
    sum(survey_kind = 'nps') AS nps_responses,
    sum(survey_kind = 'nps' AND ifNull(survey_score, 0) >= 9) AS nps_promoters,
    sum(survey_kind = 'nps' AND ifNull(survey_score, 99) <= 6) AS nps_detractors,
    sum(survey_kind = 'csat') AS csat_responses,
    sum(survey_kind = 'csat' AND ifNull(survey_score, 0) >= 4) AS csat_satisfied,
    sum(survey_kind = 'ces') AS ces_responses,
    sum(if(survey_kind = 'ces', toUInt64(ifNull(survey_score, 0)), 0)) AS ces_sum
FROM {db}.interaction_log
GROUP BY hour, channel;

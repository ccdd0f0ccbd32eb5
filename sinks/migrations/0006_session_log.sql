-- Sessions get a log of their own: they were written to journey_log (kind = 'session') beside the service
-- journeys. Sessions written before this migration are copied (their rows stay in journey_log, unread: a view
-- takes only kind = 'service' from it). A copy run twice writes identical rows, which argMax reads as one.
-- In the view's UNION ALL the first SELECT names the columns; the second's `session_events` is a name of its
-- own because `argMax(events, version) AS events` read again as `events` would nest one aggregate in another.

CREATE TABLE IF NOT EXISTS {db}.session_log (
    session_id String,
    customer_id String,
    started_ms UInt64,
    ended_ms UInt64,
    started_at DateTime('UTC') DEFAULT toDateTime(intDiv(started_ms, 1000), 'UTC'),
    ended_at DateTime('UTC') DEFAULT toDateTime(intDiv(ended_ms, 1000), 'UTC'),
    events UInt32,
    channels Array(String),
    merged_into String,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY session_id;

INSERT INTO {db}.session_log (session_id, customer_id, started_ms, ended_ms, events, channels, merged_into, version)
SELECT journey_id, customer_id, started_ms, ended_ms, events, channels, merged_into, version
FROM {db}.journey_log WHERE kind = 'session';

DROP TABLE IF EXISTS {db}.journeys;

CREATE VIEW {db}.journeys AS
SELECT journey_id, kind, if(current_customer_id = '', owner_id, current_customer_id) AS customer_id, issue_ref,
       started_at, ended_at, started_ms, ended_ms, events, contacts, channels, resolved, resolved_ms, fcr,
       time_to_resolution_s
FROM (
    SELECT journey_id, 'service' AS kind, argMax(customer_id, version) AS owner_id,
           argMax(issue_ref, version) AS issue_ref, argMax(started_at, version) AS started_at,
           argMax(ended_at, version) AS ended_at, argMax(started_ms, version) AS started_ms,
           argMax(ended_ms, version) AS ended_ms, argMax(events, version) AS events,
           argMax(contacts, version) AS contacts, argMax(channels, version) AS channels,
           argMax(resolved, version) AS resolved, argMax(resolved_ms, version) AS resolved_ms,
           argMax(fcr, version) AS fcr, argMax(time_to_resolution_s, version) AS time_to_resolution_s,
           argMax(merged_into, version) AS merged_into
    FROM {db}.journey_log WHERE kind = 'service' GROUP BY journey_id
    UNION ALL
    SELECT session_id AS journey_id, 'session' AS kind, argMax(customer_id, version) AS owner_id,
           '' AS issue_ref, argMax(started_at, version) AS started_at,
           argMax(ended_at, version) AS ended_at, argMax(started_ms, version) AS started_ms,
           argMax(ended_ms, version) AS ended_ms, argMax(events, version) AS session_events,
           session_events AS contacts, argMax(channels, version) AS channels,
           toUInt8(0) AS resolved, toUInt64(0) AS resolved_ms, toUInt8(0) AS fcr,
           CAST(NULL AS Nullable(Float64)) AS time_to_resolution_s, argMax(merged_into, version) AS merged_into
    FROM {db}.session_log GROUP BY session_id
) AS latest
ANY LEFT JOIN (
    SELECT customer_id AS owner_id, current_customer_id FROM {db}.customer_resolution
) AS resolution USING owner_id
WHERE merged_into = '';

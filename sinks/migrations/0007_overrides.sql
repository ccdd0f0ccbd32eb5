-- Overrides: what the `interactions` view applies over the ids an interaction row was written with, kept small
-- so the view costs what interaction_log costs (no join over every identity set and alias ever written).
--   customer: identity_key -> its customer now, for a set that moved after its first rows were written;
--   session:  absorbed session id -> the session it continues as;
--   journey:  absorbed service journey id -> the journey it continues as.
-- `cem squash` rewrites interaction rows older than a horizon with their overrides and deletes the overrides it
-- applied, so the table holds only recent moves (docs/architecture.md, "Overrides and the squash job").
-- Existing data is copied whole: every set's customer now (exact, whatever its rows carry), every session and
-- journey alias; the first squash shrinks it.

CREATE TABLE IF NOT EXISTS {db}.overrides (
    kind String,
    id String,
    current_id String,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (kind, id);

-- Aggregates get names of their own: ClickHouse 18.16 would read `version` in argMax(…, version) as the alias of
-- max(version), one aggregate inside another.
INSERT INTO {db}.overrides (kind, id, current_id, version)
SELECT 'customer', identity_key, latest_customer, latest_version FROM (
    SELECT identity_key, argMax(customer_id, version) AS latest_customer, max(version) AS latest_version
    FROM {db}.identity_sets GROUP BY identity_key);

INSERT INTO {db}.overrides (kind, id, current_id, version)
SELECT 'session', alias_id, latest_id, latest_version FROM (
    SELECT alias_id, argMax(current_id, version) AS latest_id, max(version) AS latest_version
    FROM {db}.id_aliases WHERE kind = 'session' GROUP BY alias_id);

INSERT INTO {db}.overrides (kind, id, current_id, version)
SELECT 'journey', journey_id, latest_into, latest_version FROM (
    SELECT journey_id, argMax(merged_into, version) AS latest_into, max(version) AS latest_version
    FROM {db}.journey_log WHERE kind = 'service' GROUP BY journey_id)
WHERE latest_into != '';

DROP TABLE IF EXISTS {db}.interactions_resolved;

DROP TABLE IF EXISTS {db}.interactions;

-- Each override kind is read once per query as a scalar (two arrays) and applied with transform(): a column the
-- query does not select is never computed, so a count per channel reads what it would read on interaction_log.
-- The arrays start with '#' (no id is '#'): ClickHouse 18.16 refuses transform() over empty arrays.
CREATE VIEW {db}.interactions AS
WITH
    (SELECT (arrayConcat(['#'], groupArray(id)), arrayConcat(['#'], groupArray(current_id))) FROM (
        SELECT id, argMax(current_id, version) AS current_id FROM {db}.overrides WHERE kind = 'customer'
        GROUP BY id)) AS customer_overrides,
    (SELECT (arrayConcat(['#'], groupArray(id)), arrayConcat(['#'], groupArray(current_id))) FROM (
        SELECT id, argMax(current_id, version) AS current_id FROM {db}.overrides WHERE kind = 'session'
        GROUP BY id)) AS session_overrides,
    (SELECT (arrayConcat(['#'], groupArray(id)), arrayConcat(['#'], groupArray(current_id))) FROM (
        SELECT id, argMax(current_id, version) AS current_id FROM {db}.overrides WHERE kind = 'journey'
        GROUP BY id)) AS journey_overrides
SELECT
    event_id, channel, type, occurred_at, occurred_ms,
    transform(identity_key, customer_overrides.1, customer_overrides.2, origin_customer_id) AS customer_id,
    transform(origin_session_id, session_overrides.1, session_overrides.2, origin_session_id) AS session_id,
    transform(origin_journey_id, journey_overrides.1, journey_overrides.2, origin_journey_id) AS journey_id,
    issue_ref, sentiment, survey_kind, survey_score, text, device, os, browser,
    property_keys, property_values, origin_customer_id, origin_session_id, identity_key, ingested_ms,
    origin_journey_id
FROM (
    -- journey_id renamed first: the view's own journey_id would otherwise shadow the column
    SELECT event_id, channel, type, occurred_at, occurred_ms, identity_key, origin_customer_id, origin_session_id,
           journey_id AS origin_journey_id, issue_ref, sentiment, survey_kind, survey_score, text, device, os,
           browser, property_keys, property_values, ingested_ms
    FROM {db}.interaction_log
);

CREATE VIEW {db}.interactions_resolved AS SELECT * FROM {db}.interactions;

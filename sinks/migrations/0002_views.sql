-- What analysts query. Each view is exact without FINAL or OPTIMIZE: latest versions are picked with
-- argMax, and merged customers and sessions are resolved through id_aliases at query time.

CREATE VIEW IF NOT EXISTS {db}.customer_resolution AS
SELECT alias_id AS customer_id, argMax(current_id, version) AS current_customer_id
FROM {db}.id_aliases WHERE kind = 'customer' GROUP BY alias_id;

CREATE VIEW IF NOT EXISTS {db}.session_resolution AS
SELECT alias_id AS session_id, argMax(current_id, version) AS current_session_id
FROM {db}.id_aliases WHERE kind = 'session' GROUP BY alias_id;

CREATE VIEW IF NOT EXISTS {db}.set_resolution AS
SELECT identity_key, argMax(customer_id, version) AS set_customer_id
FROM {db}.identity_sets GROUP BY identity_key;

CREATE VIEW IF NOT EXISTS {db}.interactions AS
SELECT
    event_id, channel, type, occurred_at, occurred_ms,
    if(set_customer_id = '', origin_customer_id, set_customer_id) AS customer_id,
    if(current_session_id = '', origin_session_id, current_session_id) AS session_id,
    journey_id, issue_ref, sentiment, survey_kind, survey_score, text, device, os, browser,
    property_keys, property_values, origin_customer_id, origin_session_id, identity_key, ingested_ms
FROM (
    SELECT event_id, channel, type, occurred_at, occurred_ms, identity_key, origin_customer_id, origin_session_id,
           journey_id, issue_ref, sentiment, survey_kind, survey_score, text, device, os, browser, property_keys,
           property_values, ingested_ms, current_session_id
    FROM (SELECT *, origin_session_id AS session_key FROM {db}.interaction_log) AS log
    ANY LEFT JOIN (
        SELECT session_id AS session_key, current_session_id FROM {db}.session_resolution
    ) AS sessions USING session_key
) AS with_sessions
ANY LEFT JOIN {db}.set_resolution AS sets USING identity_key;

CREATE VIEW IF NOT EXISTS {db}.interactions_resolved AS SELECT * FROM {db}.interactions;

CREATE VIEW IF NOT EXISTS {db}.customers AS
SELECT customer_id, any(first_event_id) AS first_event_id, min(first_seen_ms) AS first_seen_ms,
       min(first_seen_at) AS first_seen_at
FROM {db}.customer_log
WHERE customer_id IN (SELECT set_customer_id FROM {db}.set_resolution)
GROUP BY customer_id;

CREATE VIEW IF NOT EXISTS {db}.identities AS
SELECT id_type, value, if(current_customer_id = '', linked_customer_id, current_customer_id) AS customer_id,
       linked_customer_id, event_id, linked_at, rule
FROM (
    SELECT id_type, value, argMax(customer_id, version) AS linked_customer_id, argMax(event_id, version) AS event_id,
           argMax(linked_at, version) AS linked_at, argMax(rule, version) AS rule
    FROM {db}.identity_links GROUP BY id_type, value
) AS links
ANY LEFT JOIN (
    SELECT customer_id AS linked_customer_id, current_customer_id FROM {db}.customer_resolution
) AS resolution USING linked_customer_id;

CREATE VIEW IF NOT EXISTS {db}.refused_merges AS
SELECT DISTINCT customer_id, other_customer_id, event_id, occurred_ms, refused_at, reason
FROM {db}.refused_merge_log;

CREATE VIEW IF NOT EXISTS {db}.journeys AS
SELECT journey_id, kind, if(current_customer_id = '', owner_id, current_customer_id) AS customer_id, issue_ref,
       started_at, ended_at, started_ms, ended_ms, events, contacts, channels, resolved, resolved_ms, fcr,
       time_to_resolution_s
FROM (
    SELECT journey_id, argMax(kind, version) AS kind, argMax(customer_id, version) AS owner_id,
           argMax(issue_ref, version) AS issue_ref, argMax(started_at, version) AS started_at,
           argMax(ended_at, version) AS ended_at, argMax(started_ms, version) AS started_ms,
           argMax(ended_ms, version) AS ended_ms, argMax(events, version) AS events,
           argMax(contacts, version) AS contacts, argMax(channels, version) AS channels,
           argMax(resolved, version) AS resolved, argMax(resolved_ms, version) AS resolved_ms,
           argMax(fcr, version) AS fcr, argMax(time_to_resolution_s, version) AS time_to_resolution_s,
           argMax(merged_into, version) AS merged_into
    FROM {db}.journey_log GROUP BY journey_id
) AS latest
ANY LEFT JOIN (
    SELECT customer_id AS owner_id, current_customer_id FROM {db}.customer_resolution
) AS resolution USING owner_id
WHERE merged_into = '';

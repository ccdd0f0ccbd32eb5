-- Service journeys are per customer and issue_ref. When two customers merge, their journeys with the same
-- issue_ref become one: the absorbed journey's latest journey_log row carries merged_into. Interaction rows keep
-- the journey id they were written with (origin_journey_id in the view); `interactions` resolves it to the
-- current journey, as it does for sessions. The two interaction views are dropped and created again:
-- ClickHouse 18.16 has neither CREATE OR REPLACE VIEW nor DROP VIEW, and DROP TABLE drops a view on both engines.

CREATE VIEW IF NOT EXISTS {db}.journey_resolution AS
SELECT journey_id, argMax(merged_into, version) AS current_journey_id
FROM {db}.journey_log WHERE kind = 'service' GROUP BY journey_id;

DROP TABLE IF EXISTS {db}.interactions_resolved;

DROP TABLE IF EXISTS {db}.interactions;

CREATE VIEW {db}.interactions AS
SELECT
    event_id, channel, type, occurred_at, occurred_ms,
    if(set_customer_id = '', origin_customer_id, set_customer_id) AS customer_id,
    if(current_session_id = '', origin_session_id, current_session_id) AS session_id,
    if(current_journey_id = '', origin_journey_id, current_journey_id) AS journey_id,
    issue_ref, sentiment, survey_kind, survey_score, text, device, os, browser,
    property_keys, property_values, origin_customer_id, origin_session_id, identity_key, ingested_ms,
    origin_journey_id
FROM (
    SELECT event_id, channel, type, occurred_at, occurred_ms, identity_key, origin_customer_id, origin_session_id,
           origin_journey_id, issue_ref, sentiment, survey_kind, survey_score, text, device, os, browser,
           property_keys, property_values, ingested_ms, current_session_id, current_journey_id
    FROM (
        SELECT event_id, channel, type, occurred_at, occurred_ms, identity_key, origin_customer_id,
               origin_session_id, journey_id AS origin_journey_id, issue_ref, sentiment, survey_kind, survey_score,
               text, device, os, browser, property_keys, property_values, ingested_ms, current_session_id
        FROM (SELECT *, origin_session_id AS session_key FROM {db}.interaction_log) AS log
        ANY LEFT JOIN (
            SELECT session_id AS session_key, current_session_id FROM {db}.session_resolution
        ) AS sessions USING session_key
    ) AS with_sessions
    ANY LEFT JOIN (
        SELECT journey_id AS origin_journey_id, current_journey_id FROM {db}.journey_resolution
    ) AS journeys USING origin_journey_id
) AS with_journeys
ANY LEFT JOIN {db}.set_resolution AS sets USING identity_key;

CREATE VIEW {db}.interactions_resolved AS SELECT * FROM {db}.interactions;

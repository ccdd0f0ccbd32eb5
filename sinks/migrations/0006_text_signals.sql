-- Text signals of every event with text (cem/domain/text, docs/analytics.md "Text signals"): sentiment on -5..+5,
-- emotions with their intensities as two parallel arrays (ClickHouse 18.16 has no Map), the highest intensity
-- (null: no emotion), effort -5..+5 (null: no effort signal, kept out of averages), actionability, topics, the cues
-- that explain them, and the number of sentences. Rows written before this migration keep the defaults (empty,
-- null, 0). 18.16 has no ADD COLUMN IF NOT EXISTS: the migration runner leaves out columns that already exist, so
-- the ALTER can run again after a failure. The interaction views are created again with the new columns.

ALTER TABLE {db}.interaction_log
    ADD COLUMN text_sentiment Nullable(Float32),
    ADD COLUMN emotions Array(String),
    ADD COLUMN emotion_intensities Array(UInt8),
    ADD COLUMN emotion_intensity Nullable(UInt8),
    ADD COLUMN effort Nullable(Float32),
    ADD COLUMN actionability String,
    ADD COLUMN topics Array(String),
    ADD COLUMN text_cues Array(String),
    ADD COLUMN sentence_count UInt16;

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
    origin_journey_id, text_sentiment, emotions, emotion_intensities, emotion_intensity, effort, actionability,
    topics, text_cues, sentence_count
FROM (
    SELECT event_id, channel, type, occurred_at, occurred_ms, identity_key, origin_customer_id, origin_session_id,
           origin_journey_id, issue_ref, sentiment, survey_kind, survey_score, text, device, os, browser,
           property_keys, property_values, ingested_ms, current_session_id, current_journey_id, text_sentiment,
           emotions, emotion_intensities, emotion_intensity, effort, actionability, topics, text_cues, sentence_count
    FROM (
        SELECT event_id, channel, type, occurred_at, occurred_ms, identity_key, origin_customer_id,
               origin_session_id, journey_id AS origin_journey_id, issue_ref, sentiment, survey_kind, survey_score,
               text, device, os, browser, property_keys, property_values, ingested_ms, current_session_id,
               text_sentiment, emotions, emotion_intensities, emotion_intensity, effort, actionability, topics,
               text_cues, sentence_count
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

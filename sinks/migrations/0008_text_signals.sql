-- Text signals of every event with text (cem/domain/text, docs/analytics.md "Text signals"): sentiment on -5..+5,
-- emotions with their intensities as two parallel arrays (ClickHouse 18.16 has no Map), the highest intensity
-- (null: no emotion), effort -5..+5 (null: no effort signal, kept out of averages), actionability, topics, the cues
-- that explain them, and the number of sentences. Rows written before this migration keep the defaults (empty,
-- null, 0). 18.16 has no ADD COLUMN IF NOT EXISTS: the migration runner leaves out columns that already exist, so
-- the ALTER can run again after a failure. The interaction views are created again with the new columns (as 0007_overrides made them).

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
    origin_journey_id, text_sentiment, emotions, emotion_intensities, emotion_intensity, effort, actionability,
    topics, text_cues, sentence_count
FROM (
    -- journey_id renamed first: the view's own journey_id would otherwise shadow the column
    SELECT event_id, channel, type, occurred_at, occurred_ms, identity_key, origin_customer_id, origin_session_id,
           journey_id AS origin_journey_id, issue_ref, sentiment, survey_kind, survey_score, text, device, os,
           browser, property_keys, property_values, ingested_ms, text_sentiment, emotions, emotion_intensities,
           emotion_intensity, effort, actionability, topics, text_cues, sentence_count
    FROM {db}.interaction_log
);

CREATE VIEW {db}.interactions_resolved AS SELECT * FROM {db}.interactions;

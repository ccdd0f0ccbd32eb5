-- The analyst query pack: customer-experience questions over the views of docs/analytics.md. Each query runs
-- on ClickHouse 18.16 and on the embedded engine, as it is, through `cem sql` (read-only); the database is `cem`.
-- tests/component/test_experience_chdb.py and tests/integration/test_experience_server.py run every one.
-- Each query starts with a `-- name:` line; a week is ISO (starts on Monday, UTC). Rates are % (0..100).

-- name: scores_by_channel_and_week
-- NPS, CSAT and CES per touchpoint channel (the channels of the journey each answer rates) and week.
SELECT toMonday(day) AS week, touchpoint_channel,
       sumIf(responses, survey_kind = 'nps') AS nps_answers,
       if(nps_answers = 0, NULL, 100 * (sum(promoters) - sum(detractors)) / nps_answers) AS nps,
       sumIf(responses, survey_kind = 'csat') AS csat_answers,
       if(csat_answers = 0, NULL, 100 * sum(satisfied) / csat_answers) AS csat,
       sumIf(responses, survey_kind = 'ces') AS ces_answers,
       if(ces_answers = 0, NULL, sum(ces_sum) / ces_answers) AS ces,
       if(ces_answers = 0, NULL, 100 * sum(ces_easy) / ces_answers) AS ces_easy_pct
FROM cem.experience_daily
GROUP BY week, touchpoint_channel
ORDER BY week, touchpoint_channel;

-- name: score_distribution_by_journey_type
-- The raw answers: how many gave each score, per survey kind and kind of journey rated.
SELECT survey_kind, journey_type, score, count() AS answers
FROM cem.experience_responses
GROUP BY survey_kind, journey_type, score
ORDER BY survey_kind, journey_type, score;

-- name: fcr_and_repeat_contacts_by_week
-- Service journeys by the week of their first contact: first-contact resolution, repeat contacts, contacts per
-- resolution, time to first response and to resolution, friction.
SELECT toMonday(toDate(started_at)) AS week, count() AS journeys, sum(resolved) AS resolved_journeys,
       if(resolved_journeys = 0, NULL, 100 * sum(fcr) / resolved_journeys) AS fcr_pct,
       100 * countIf(repeat_contacts > 0) / journeys AS repeat_contact_pct,
       if(resolved_journeys = 0, NULL, sumIf(contacts_to_resolution, resolved = 1) / resolved_journeys)
           AS contacts_per_resolution,
       avg(first_response_s) / 60 AS mean_minutes_to_first_response,
       avgIf(time_to_resolution_s, resolved = 1) / 3600 AS mean_hours_to_resolution,
       100 * countIf(channel_switches > 0) / journeys AS channel_switch_pct,
       avg(friction_score) AS mean_friction
FROM cem.journey_experience
GROUP BY week
ORDER BY week;

-- name: channel_switch_paths
-- The most frequent channel paths of journeys that switched channel.
SELECT arrayStringConcat(channel_path, ' > ') AS path, count() AS journeys,
       avg(friction_score) AS mean_friction, 100 * avg(resolved) AS resolved_pct
FROM cem.journey_experience
WHERE channel_switches > 0
GROUP BY path
ORDER BY journeys DESC, path
LIMIT 20;

-- name: friction_components
-- What the friction score of service journeys is made of, summed over all journeys.
SELECT count() AS journeys, sum(friction_score) AS friction,
       sum(greatest(contacts, 1) - 1) AS extra_contacts, sum(channel_switches) AS channel_switches,
       3 * countIf(resolved = 0) AS unresolved_points, sum(wait_days) AS wait_days,
       sum(effort_penalty) AS stated_effort_points
FROM cem.journey_experience;

-- name: friction_by_page
-- Pages (web url, app screen) by the digital friction of the sessions that viewed them.
SELECT page, sum(viewed) AS views, sum(failed) AS errors, uniqExact(session_id) AS sessions,
       uniqExactIf(session_id, repeat_views > 0) AS sessions_with_repeat_views,
       uniqExactIf(session_id, abandoned_cart = 1) AS sessions_with_abandoned_cart,
       uniqExactIf(session_id, digital_failure = 1) AS sessions_ending_in_a_contact
FROM (
    SELECT session_id, type IN ('page_view', 'screen_view') AS viewed, type IN ('error', 'app_error', 'page_error')
           AS failed,
           concat(channel, ':', property_values[indexOf(property_keys, if(has(property_keys, 'url'), 'url', 'screen'))])
           AS page
    FROM cem.interactions
    WHERE session_id != '' AND (has(property_keys, 'url') OR has(property_keys, 'screen'))
) AS events ANY LEFT JOIN (
    SELECT session_id, repeat_views, abandoned_cart, digital_failure FROM cem.session_friction
) AS sessions USING session_id
GROUP BY page
ORDER BY sessions_ending_in_a_contact DESC, views DESC, page
LIMIT 50;

-- name: digital_friction_by_week
-- Web and app sessions by week: repeat views, errors, abandoned carts and forms, digital failures.
SELECT toMonday(toDate(started_at)) AS week, count() AS sessions,
       100 * countIf(repeat_views > 0) / sessions AS repeat_view_pct,
       100 * countIf(errors > 0) / sessions AS error_pct,
       if(countIf(cart_adds > 0) = 0, NULL, 100 * sum(abandoned_cart) / countIf(cart_adds > 0)) AS cart_abandonment_pct,
       if(countIf(forms_started > 0) = 0, NULL, 100 * countIf(abandoned_forms > 0) / countIf(forms_started > 0))
           AS form_abandonment_pct,
       100 * sum(digital_failure) / sessions AS digital_failure_pct
FROM cem.session_friction
GROUP BY week
ORDER BY week;

-- name: lifecycle_movement
-- Customers by their stage 30 days ago and now ('' before: not a customer yet).
SELECT stage_before, stage_now, count() AS customers
FROM (SELECT customer_id, stage AS stage_now FROM cem.customer_lifecycle_history WHERE months_back = 0) AS now
ANY LEFT JOIN (
    SELECT customer_id, stage AS stage_before FROM cem.customer_lifecycle_history WHERE months_back = 1
) AS before USING customer_id
GROUP BY stage_before, stage_now
ORDER BY stage_before, stage_now;

-- name: churn_drivers
-- How often each churn driver is present, per stage, now.
SELECT stage, driver, count() AS customers
FROM cem.customer_lifecycle
ARRAY JOIN churn_drivers AS driver
GROUP BY stage, driver
ORDER BY stage, customers DESC, driver;

-- name: attribution_by_channel
-- Purchases credited to channels: first touch, last touch and linear (each sums to the number of purchases).
SELECT channel, sum(first_touch) AS first_touch, sum(last_touch) AS last_touch, round(sum(linear), 3) AS linear
FROM cem.purchase_attribution
GROUP BY channel
ORDER BY linear DESC, channel;

-- name: attribution_within_days
-- The same credit over a shorter window than the views' 30 days: replace 7 with the days wanted (30 at most).
SELECT channel, sum(position = 1) AS first_touch, sum(position = length(credited)) AS last_touch,
       round(sum(1 / length(credited)), 3) AS linear
FROM (
    SELECT if(empty(kept), ['(none)'], kept) AS credited
    FROM (
        SELECT arrayFilter((c, t) -> t + 7 * 86400000 >= purchased_ms, path, path_ms) AS kept
        FROM cem.purchase_touchpoints
        WHERE purchased_ms > 0
    )
) ARRAY JOIN credited AS channel, arrayEnumerate(credited) AS position
GROUP BY channel
ORDER BY linear DESC, channel;

-- name: emotion_trend_by_week
-- Texts naming each emotion per week, with the mean intensity (1..5).
SELECT toMonday(toDate(occurred_at)) AS week, emotion, count() AS texts, avg(intensity) AS mean_intensity
FROM cem.interactions
ARRAY JOIN emotions AS emotion, emotion_intensities AS intensity
GROUP BY week, emotion
ORDER BY week, emotion;

-- name: topic_trend_by_week
-- Texts about each topic per week, their mean CX sentiment (-5..+5) and the share needing a response.
SELECT toMonday(toDate(occurred_at)) AS week, topic, count() AS texts, avg(text_sentiment) AS mean_sentiment,
       100 * countIf(actionability = 'needs_response') / texts AS needs_response_pct
FROM cem.interactions
ARRAY JOIN topics AS topic
GROUP BY week, topic
ORDER BY week, topic;

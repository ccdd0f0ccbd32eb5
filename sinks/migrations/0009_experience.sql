-- Experience measures (docs/analytics.md): surveys tied to what they rate, service-journey friction, digital
-- friction per session, the customer lifecycle with churn drivers, purchase attribution. Every one is a view over
-- the exact views (interactions, journeys): nothing is stored, so a late event or a customer merge changes a
-- measure once, with no double count. Windows and types are the constants of cem/domain/experience.py, written
-- out here (tests/unit/test_experience.py checks they agree). Runs on ClickHouse 18.16 and on current ClickHouse:
-- no window function, no ASOF JOIN, "the most recent X within a window" is picked from per-customer arrays.
-- A WHERE that holds for every row (`answered_ms > 0`, `length(a) = length(b)`) names the columns a lambda reads:
-- ClickHouse 18.16 drops from a subquery a column that only a lambda reads ("Unknown identifier").

-- One row per survey answer: the journey it rates and that journey's channels. An answer with an issue_ref
-- belongs to that service journey. Otherwise it rates the customer's most recent touchpoint (any interaction but
-- a survey, a resolution or a marketing send) at most 7 days before it: that touchpoint's service journey, its
-- digital session, or the touchpoint alone (a purchase, a store visit). None: unattributed.
CREATE VIEW IF NOT EXISTS {db}.experience_responses AS
SELECT event_id, customer_id, answered_ms, answered_at, toDate(answered_at) AS day, survey_kind, score,
       attributed_by, journey_type, attributed_journey_id AS journey_id, contact_event_id, contact_channel,
       multiIf(journey_type IN ('service', 'digital'), journey_channels,
               contact_channel != '', [contact_channel], emptyArrayString()) AS touchpoint_channels
FROM (
    SELECT event_id, customer_id, answered_ms, answered_at, survey_kind, score,
           multiIf(survey_journey_id != '', 'issue_ref', pick > 0, 'recent_contact', 'none') AS attributed_by,
           multiIf(survey_journey_id != '', 'service', pick = 0, 'unattributed',
                   contact_journey[pick] != '', 'service', contact_session[pick] != '', 'digital',
                   contact_type[pick] IN ('purchase', 'order_completed'), 'purchase', 'contact') AS journey_type,
           multiIf(survey_journey_id != '', survey_journey_id, pick = 0, '',
                   contact_journey[pick] != '', contact_journey[pick], contact_session[pick]) AS attributed_journey_id,
           if(survey_journey_id = '', contact_event[pick], '') AS contact_event_id,
           if(survey_journey_id = '', contact_channel_of[pick], '') AS contact_channel
    FROM (
        SELECT event_id, customer_id, answered_ms, answered_at, survey_kind, score, survey_journey_id,
               contact_ms, contact_event, contact_journey, contact_session, contact_type, contact_channel_of,
               arraySort(i -> (contact_ms[i], contact_event[i]),
                         arrayFilter(i -> contact_ms[i] <= answered_ms AND contact_ms[i] + 604800000 >= answered_ms,
                                     arrayEnumerate(contact_ms)))[-1] AS pick
        FROM (
            SELECT event_id, customer_id, occurred_ms AS answered_ms, occurred_at AS answered_at, survey_kind,
                   assumeNotNull(survey_score) AS score, journey_id AS survey_journey_id
            FROM {db}.interactions WHERE survey_kind != '' AND isNotNull(survey_score)
        ) AS answers
        ANY LEFT JOIN (
            SELECT customer_id, groupArray(occurred_ms) AS contact_ms, groupArray(event_id) AS contact_event,
                   groupArray(journey_id) AS contact_journey, groupArray(session_id) AS contact_session,
                   groupArray(type) AS contact_type, groupArray(channel) AS contact_channel_of
            FROM {db}.interactions
            WHERE survey_kind = '' AND customer_id != 'forgotten'
              AND type NOT IN ('survey_response', 'ticket_resolved', 'email_open', 'email_click')
            GROUP BY customer_id
        ) AS customer_contacts USING customer_id
        WHERE answered_ms > 0 AND length(contact_event) = length(contact_ms)
    ) AS picked
) AS attributed
ANY LEFT JOIN (
    SELECT journey_id AS attributed_journey_id, channels AS journey_channels FROM {db}.journeys
) AS rated USING attributed_journey_id;

-- Per day, touchpoint channel, journey type and survey kind: the answers, the counts every score is made of, and
-- the raw distribution (distribution[s + 1] answers of score s, 0..10). An answer counts once for each channel of
-- the journey it rates: sum experience_responses, not these rows, for a total over channels.
CREATE VIEW IF NOT EXISTS {db}.experience_daily AS
SELECT day, touchpoint_channel, journey_type, survey_kind, responses, promoters, passives, detractors, satisfied,
       ces_sum, ces_easy, arrayMap(s -> countEqual(scores, s), range(11)) AS distribution,
       if(survey_kind = 'nps', 100 * (promoters - detractors) / responses, NULL) AS nps,
       if(survey_kind = 'csat', 100 * satisfied / responses, NULL) AS csat,
       if(survey_kind = 'ces', ces_sum / responses, NULL) AS ces,
       if(survey_kind = 'ces', 100 * ces_easy / responses, NULL) AS ces_easy_pct
FROM (
    SELECT day, touchpoint_channel, journey_type, survey_kind, count() AS responses,
           countIf(survey_kind = 'nps' AND score >= 9) AS promoters,
           countIf(survey_kind = 'nps' AND score >= 7 AND score <= 8) AS passives,
           countIf(survey_kind = 'nps' AND score <= 6) AS detractors,
           countIf(survey_kind = 'csat' AND score >= 4) AS satisfied,
           sumIf(toInt64(score), survey_kind = 'ces') AS ces_sum,
           countIf(survey_kind = 'ces' AND score >= 5) AS ces_easy,
           groupArray(score) AS scores
    FROM {db}.experience_responses
    ARRAY JOIN if(empty(touchpoint_channels), ['(none)'], touchpoint_channels) AS touchpoint_channel
    GROUP BY day, touchpoint_channel, journey_type, survey_kind
) WHERE length(scores) = responses;

-- One row per service journey: its contacts in time order and what made it hard. A repeat contact comes within 7
-- days of the journey's previous contact, a channel switch is a contact on another channel than the one before,
-- the first response is the first agent reply, completed call or resolution at or after the first contact.
-- friction_score = (contacts - 1) + channel_switches + 3 if unresolved + whole days to resolution (at most 5)
--                  + effort_penalty (minus the mean effort the contacts' texts state, whole points, 0..5).
CREATE VIEW IF NOT EXISTS {db}.journey_experience AS
SELECT journey_id, customer_id, issue_ref, started_at, started_ms, ended_ms, resolved, resolved_ms, fcr,
       time_to_resolution_s, contacts, channel_path, channel_switches, repeat_contacts, contacts_to_resolution,
       first_response_s, stated_effort, effort_texts, wait_days, effort_penalty,
       greatest(contacts, 1) - 1 + channel_switches + if(resolved = 1, 0, 3) + wait_days + effort_penalty
           AS friction_score
FROM (
    SELECT journey_id, customer_id, issue_ref, started_at, started_ms, ended_ms, resolved, resolved_ms, fcr,
           time_to_resolution_s, length(path_ms) AS contacts,
           arraySort((c, t, e) -> (t, e), path_channels, path_ms, path_events) AS channel_path,
           arraySort(path_ms) AS sorted_ms,
           arrayCount((a, b) -> a != b, arrayPopBack(channel_path), arrayPopFront(channel_path)) AS channel_switches,
           arrayCount((a, b) -> b - a <= 604800000, arrayPopBack(sorted_ms), arrayPopFront(sorted_ms))
               AS repeat_contacts,
           if(resolved = 1, toNullable(arrayCount(t -> t <= resolved_ms, path_ms)), NULL) AS contacts_to_resolution,
           arrayReduce('min', path_ms) AS first_contact_ms,
           arraySort(arrayFilter(t -> t >= first_contact_ms, response_ms)) AS responses_after,
           if(empty(path_ms) OR empty(responses_after), NULL, (responses_after[1] - first_contact_ms) / 1000)
               AS first_response_s,
           effort_texts,
           if(effort_texts = 0, NULL, effort_tenths / greatest(effort_texts, 1) / 10) AS stated_effort,
           if(resolved = 1 AND resolved_ms > started_ms, least(intDiv(resolved_ms - started_ms, 86400000), 5), 0)
               AS wait_days,
           if(effort_texts = 0, 0, intDiv(greatest(0, -effort_tenths), 10 * greatest(effort_texts, 1))) AS effort_penalty
    FROM (
        SELECT journey_id, customer_id, issue_ref, started_at, started_ms, ended_ms, resolved, resolved_ms, fcr,
               time_to_resolution_s
        FROM {db}.journeys WHERE kind = 'service'
    ) AS journeys
    ANY LEFT JOIN (
        SELECT journey_id,
               groupArrayIf(occurred_ms, type NOT IN ('ticket_resolved', 'survey_response')) AS path_ms,
               groupArrayIf(channel, type NOT IN ('ticket_resolved', 'survey_response')) AS path_channels,
               groupArrayIf(event_id, type NOT IN ('ticket_resolved', 'survey_response')) AS path_events,
               groupArrayIf(occurred_ms, type IN ('agent_reply', 'agent_message', 'ticket_updated',
                                                  'ticket_resolved', 'call_ended')) AS response_ms,
               sumIf(toInt64(round(assumeNotNull(effort) * 10)),
                     isNotNull(effort) AND type NOT IN ('ticket_resolved', 'survey_response')) AS effort_tenths,
               countIf(isNotNull(effort) AND type NOT IN ('ticket_resolved', 'survey_response')) AS effort_texts
        FROM {db}.interactions WHERE journey_id != '' GROUP BY journey_id
    ) AS journey_contacts USING journey_id
    WHERE resolved_ms + length(path_ms) + length(response_ms) >= 0
);

-- One row per digital session (web, mobile). repeat_views: views of a page already viewed in the session at most
-- 10 seconds before (a reload, a rage view). errors: error events. abandoned_cart: items added to a cart and no
-- purchase by the customer, on any channel, from the session's start to an hour after its end. abandoned_forms:
-- forms (property `form`) started and not submitted in the session. digital_failure: an assisted contact (call
-- centre, chat, support, email, social) from the session's start to an hour after its end.
CREATE VIEW IF NOT EXISTS {db}.session_friction AS
SELECT session_id, customer_id, started_at, started_ms, ended_ms, channels, events, page_views, repeat_views,
       errors, cart_adds, abandoned_cart, forms_started, abandoned_forms, digital_failure, failure_channel,
       repeat_views + errors + abandoned_cart + abandoned_forms + 2 * digital_failure AS friction_score
FROM (
    SELECT session_id, customer_id, started_at, started_ms, ended_ms, channels, events, page_views, errors,
           cart_adds, arrayEnumerate(event_ms) AS idx,
           arrayCount(i -> event_page[i] != '' AND arrayExists(
               j -> event_page[j] = event_page[i] AND event_ms[i] - event_ms[j] <= 10000
                    AND (event_ms[j] < event_ms[i] OR (event_ms[j] = event_ms[i] AND event_ids[j] < event_ids[i])),
               idx), idx) AS repeat_views,
           toUInt8(cart_adds > 0 AND NOT arrayExists(
               t -> t >= started_ms AND t <= ended_ms + 3600000, purchase_ms)) AS abandoned_cart,
           length(started_forms) AS forms_started,
           length(arrayFilter(f -> NOT has(submitted_forms, f), started_forms)) AS abandoned_forms,
           arrayFilter(t -> t >= started_ms AND t <= ended_ms + 3600000, contact_ms) AS failure_ms,
           toUInt8(NOT empty(failure_ms)) AS digital_failure,
           arraySort((c, t) -> (t, c), arrayFilter((c, t) -> t >= started_ms AND t <= ended_ms + 3600000,
                                                   contact_channel, contact_ms), failure_ms)[1] AS failure_channel
    FROM (
        SELECT session_id, customer_id, started_at, started_ms, ended_ms, channels, events, page_views, errors,
               cart_adds, event_ms, event_ids, event_page, started_forms, submitted_forms
        FROM (
            SELECT journey_id AS session_id, customer_id, started_at, started_ms, ended_ms, channels, events
            FROM {db}.journeys WHERE kind = 'session'
        ) AS sessions
        ANY LEFT JOIN (
            SELECT session_id, groupArray(occurred_ms) AS event_ms, groupArray(event_id) AS event_ids,
                   groupArray(if(type IN ('page_view', 'screen_view'),
                                 concat(channel, ':', property_values[indexOf(property_keys,
                                        if(has(property_keys, 'url'), 'url', 'screen'))]), '')) AS event_page,
                   countIf(type IN ('page_view', 'screen_view')) AS page_views,
                   countIf(type IN ('error', 'app_error', 'page_error')) AS errors,
                   countIf(type IN ('add_to_cart', 'product_added')) AS cart_adds,
                   groupUniqArrayIf(property_values[indexOf(property_keys, 'form')], type = 'form_start')
                       AS started_forms,
                   groupUniqArrayIf(property_values[indexOf(property_keys, 'form')], type = 'form_submit')
                       AS submitted_forms
            FROM {db}.interactions WHERE session_id != '' GROUP BY session_id
        ) AS session_events USING session_id
    ) AS with_events
    ANY LEFT JOIN (
        SELECT customer_id,
               groupArrayIf(occurred_ms, channel IN ('call_center', 'chat', 'support', 'email', 'social')
                            AND type NOT IN ('survey_response', 'ticket_resolved', 'email_open', 'email_click'))
                   AS contact_ms,
               groupArrayIf(channel, channel IN ('call_center', 'chat', 'support', 'email', 'social')
                            AND type NOT IN ('survey_response', 'ticket_resolved', 'email_open', 'email_click'))
                   AS contact_channel,
               groupArrayIf(occurred_ms, type IN ('purchase', 'order_completed')) AS purchase_ms
        FROM {db}.interactions WHERE customer_id != 'forgotten' GROUP BY customer_id
    ) AS customer_events USING customer_id
    WHERE length(event_page) = length(event_ids) AND length(submitted_forms) >= 0 AND ended_ms >= started_ms
);

-- Each customer's lifecycle stage and churn drivers as of the latest event in the warehouse (months_back = 0) and
-- 30, 60 and 90 days before it (months_back 1..3, for movement between stages). Activity is every interaction
-- but a resolution or a marketing send. Drivers: falling_activity (the last 30 days hold fewer than half the
-- monthly mean of the 60 days before), detractor (the latest survey answer of the last 90 days is NPS 0-6, CSAT
-- 1-2 or CES 1-3), unresolved_journeys (a service journey of the last 90 days open for more than 3 days), and
-- negative_trend (the mean text sentiment of the last 30 days at least 1 point, of -5..+5, below the 60 days
-- before). Stage, first rule that holds: dormant (no activity for more than 90 days), new (first activity within
-- 30 days), returning (active within 30 days after a gap of more than 90 days), at_risk (no activity for more
-- than 30 days, or two drivers or more), active.
CREATE VIEW IF NOT EXISTS {db}.customer_lifecycle_history AS
SELECT customer_id, months_back, as_of_ms, toDateTime(intDiv(as_of_ms, 1000), 'UTC') AS as_of, first_ms, last_ms,
       recent_events, earlier_events, unresolved_journeys, latest_survey_kind, latest_survey_score,
       arrayFilter(d -> d != '', [
           if(recent_events * 4 < earlier_events, 'falling_activity', ''),
           if(latest_detractor, 'detractor', ''),
           if(unresolved_journeys > 0, 'unresolved_journeys', ''),
           if(recent_texts > 0 AND earlier_texts > 0
              AND recent_tenths * earlier_texts < (earlier_tenths - 10 * earlier_texts) * recent_texts,
              'negative_trend', '')]) AS churn_drivers,
       length(churn_drivers) AS churn_risk,
       multiIf(as_of_ms - last_ms > 7776000000, 'dormant', as_of_ms - first_ms <= 2592000000, 'new',
               returned, 'returning', as_of_ms - last_ms > 2592000000 OR churn_risk >= 2, 'at_risk', 'active')
           AS stage
FROM (
    SELECT customer_id, months_back, latest_ms - months_back * 2592000000 AS as_of_ms,
           arraySort(arrayFilter(t -> t <= as_of_ms, activity_ms)) AS seen,
           seen[1] AS first_ms, seen[-1] AS last_ms,
           arrayCount(t -> t > as_of_ms - 2592000000, seen) AS recent_events,
           arrayCount(t -> t <= as_of_ms - 2592000000 AND t > as_of_ms - 7776000000, seen) AS earlier_events,
           arrayExists((a, b) -> b - a > 7776000000 AND b > as_of_ms - 2592000000,
                       arrayPopBack(seen), arrayPopFront(seen)) AS returned,
           arraySort(i -> (survey_ms[i], survey_event[i]),
                     arrayFilter(i -> survey_ms[i] <= as_of_ms AND survey_ms[i] > as_of_ms - 7776000000,
                                 arrayEnumerate(survey_ms)))[-1] AS latest_survey,
           survey_kinds[latest_survey] AS latest_survey_kind,
           if(latest_survey = 0, NULL, toNullable(survey_scores[latest_survey])) AS latest_survey_score,
           latest_survey > 0 AND multiIf(latest_survey_kind = 'nps', survey_scores[latest_survey] <= 6,
                                         latest_survey_kind = 'csat', survey_scores[latest_survey] <= 2,
                                         survey_scores[latest_survey] <= 3) AS latest_detractor,
           arrayCount((s, r) -> s <= as_of_ms - 259200000 AND s > as_of_ms - 7776000000
                                AND (r = 0 OR r > as_of_ms), journey_start_ms, journey_resolved_ms)
               AS unresolved_journeys,
           arrayCount(t -> t <= as_of_ms AND t > as_of_ms - 2592000000, text_ms) AS recent_texts,
           arraySum(arrayMap((t, v) -> if(t <= as_of_ms AND t > as_of_ms - 2592000000, v, 0), text_ms, text_tenths))
               AS recent_tenths,
           arrayCount(t -> t <= as_of_ms - 2592000000 AND t > as_of_ms - 7776000000, text_ms) AS earlier_texts,
           arraySum(arrayMap((t, v) -> if(t <= as_of_ms - 2592000000 AND t > as_of_ms - 7776000000, v, 0),
                             text_ms, text_tenths)) AS earlier_tenths
    FROM (
        SELECT customer_id, activity_ms, survey_ms, survey_event, survey_kinds, survey_scores, text_ms, text_tenths,
               journey_start_ms, journey_resolved_ms, (SELECT max(occurred_ms) FROM {db}.interactions) AS latest_ms
        FROM (
            SELECT customer_id,
                   groupArrayIf(occurred_ms, type NOT IN ('ticket_resolved', 'email_open', 'email_click'))
                       AS activity_ms,
                   groupArrayIf(occurred_ms, survey_kind != '' AND isNotNull(survey_score)) AS survey_ms,
                   groupArrayIf(event_id, survey_kind != '' AND isNotNull(survey_score)) AS survey_event,
                   groupArrayIf(survey_kind, survey_kind != '' AND isNotNull(survey_score)) AS survey_kinds,
                   groupArrayIf(assumeNotNull(survey_score), survey_kind != '' AND isNotNull(survey_score))
                       AS survey_scores,
                   groupArrayIf(occurred_ms, isNotNull(text_sentiment)) AS text_ms,
                   groupArrayIf(toInt64(round(assumeNotNull(text_sentiment) * 10)), isNotNull(text_sentiment))
                       AS text_tenths
            FROM {db}.interactions WHERE customer_id != 'forgotten' GROUP BY customer_id
        ) AS activity
        ANY LEFT JOIN (
            SELECT customer_id, groupArray(started_ms) AS journey_start_ms,
                   groupArray(if(resolved = 1, resolved_ms, 0)) AS journey_resolved_ms
            FROM {db}.journeys WHERE kind = 'service' GROUP BY customer_id
        ) AS service USING customer_id
    ) AS per_customer
    ARRAY JOIN [0, 1, 2, 3] AS months_back
    WHERE as_of_ms > 0 AND length(survey_event) = length(survey_ms)
)
WHERE first_ms > 0;

CREATE VIEW IF NOT EXISTS {db}.customer_lifecycle AS
SELECT customer_id, as_of, first_ms, last_ms, stage, churn_risk, churn_drivers, recent_events, earlier_events,
       unresolved_journeys, latest_survey_kind, latest_survey_score
FROM {db}.customer_lifecycle_history WHERE months_back = 0;

-- One row per purchase: the touchpoints that started in the 30 days before it, in time order (path, and their
-- start times in path_ms, so a query can use a shorter window). A digital session is one touchpoint (at its
-- first event), any other interaction but a survey, a resolution or another purchase is one. purchase_attribution credits the channels: first_touch 1 to the first, last_touch 1 to the last, linear
-- 1/n to each of the n, so each credit sums to 1 per purchase. A purchase with no touchpoint credits '(none)'.
CREATE VIEW IF NOT EXISTS {db}.purchase_touchpoints AS
SELECT purchase_id, customer_id, purchased_ms, purchased_at, purchase_channel, order_total,
       arrayMap(i -> touch_channel[i], picked) AS path, arrayMap(i -> touch_ms[i], picked) AS path_ms,
       length(picked) AS touchpoints
FROM (
    SELECT purchase_id, customer_id, purchased_ms, purchased_at, purchase_channel, order_total, touch_channel,
           touch_ms,
           arraySort(i -> (touch_ms[i], touch_key[i]),
                     arrayFilter(i -> touch_ms[i] < purchased_ms AND touch_ms[i] + 2592000000 >= purchased_ms,
                                 arrayEnumerate(touch_ms))) AS picked
    FROM (
        SELECT event_id AS purchase_id, customer_id, occurred_ms AS purchased_ms, occurred_at AS purchased_at,
               channel AS purchase_channel, property_values[indexOf(property_keys, 'order_total')] AS order_total
        FROM {db}.interactions WHERE type IN ('purchase', 'order_completed')
    ) AS purchases
    ANY LEFT JOIN (
        SELECT customer_id, groupArray(start_ms) AS touch_ms, groupArray(first_channel) AS touch_channel,
               groupArray(touch_key) AS touch_key
        FROM (
            SELECT customer_id, if(session_id != '', session_id, event_id) AS touch_key,
                   min(occurred_ms) AS start_ms, argMin(channel, (occurred_ms, event_id)) AS first_channel
            FROM {db}.interactions
            WHERE customer_id != 'forgotten' AND survey_kind = ''
              AND type NOT IN ('survey_response', 'ticket_resolved', 'purchase', 'order_completed')
            GROUP BY customer_id, touch_key
        ) GROUP BY customer_id
    ) AS touches USING customer_id
    WHERE purchased_ms > 0 AND length(touch_key) = length(touch_ms)
) WHERE length(touch_channel) = length(touch_ms) AND length(touch_channel) >= length(picked);

CREATE VIEW IF NOT EXISTS {db}.purchase_attribution AS
SELECT purchase_id, customer_id, purchased_ms, purchased_at, channel, sum(first) AS first_touch,
       sum(last) AS last_touch, sum(share) AS linear
FROM (
    SELECT purchase_id, customer_id, purchased_ms, purchased_at, channel, toUInt8(position = 1) AS first,
           toUInt8(position = length(credited)) AS last, 1 / length(credited) AS share
    FROM (
        SELECT purchase_id, customer_id, purchased_ms, purchased_at, if(touchpoints = 0, ['(none)'], path) AS credited
        FROM {db}.purchase_touchpoints
    ) ARRAY JOIN credited AS channel, arrayEnumerate(credited) AS position
)
GROUP BY purchase_id, customer_id, purchased_ms, purchased_at, channel;

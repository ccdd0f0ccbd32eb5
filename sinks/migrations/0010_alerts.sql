-- Alerts (docs/alerts.md): every revision of an alert as the worker raised or withdrew it (alert_log, the outbox
-- that the publisher sends to cem.alerts in version order), pending SLA deadlines (alert_timers), and operators'
-- ack/resolve actions (alert_actions). Written in the resolver's batches, so a replay writes identical rows, which
-- argMax reads as one. The `alerts` view is the case as analysts and `cem alerts list` see it: its status and the
-- time it spent in each. (An aggregate named like a column another aggregate reads would nest one in the other:
-- hence latest_revision.)

CREATE TABLE IF NOT EXISTS {db}.alert_log (
    alert_id String,
    revision UInt64,
    state String,
    rule String,
    kind String,
    severity String,
    customer_id String,
    issue String,
    journey_id String,
    channel String,
    event_ms UInt64,
    event_at DateTime('UTC') DEFAULT toDateTime(intDiv(event_ms, 1000), 'UTC'),
    due_ms UInt64,
    raised_ms UInt64,
    raised_at DateTime('UTC') DEFAULT toDateTime(intDiv(raised_ms, 1000), 'UTC'),
    detail String,
    evidence Array(String),
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (alert_id, revision);

CREATE TABLE IF NOT EXISTS {db}.alert_timers (
    rule String,
    journey_id String,
    customer_id String,
    issue_ref String,
    channel String,
    priority String,
    first_ms UInt64,
    deadline_ms UInt64,
    cleared UInt8,
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (rule, journey_id);

CREATE TABLE IF NOT EXISTS {db}.alert_actions (
    action_id String,
    alert_id String,
    action String,
    actor String,
    note String,
    at_ms UInt64,
    at DateTime('UTC') DEFAULT toDateTime(intDiv(at_ms, 1000), 'UTC'),
    version UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (alert_id, action_id);

CREATE VIEW IF NOT EXISTS {db}.alerts AS
SELECT alert_id, rule, kind, severity, customer_id, issue, journey_id, channel, event_ms, due_ms, detail, evidence,
       latest_revision AS revision, engine_state, opened_ms, withdrawn_ms, acknowledged_ms, acknowledged_by, resolved_ms, resolved_by,
       multiIf(engine_state = 'withdrawn', 'withdrawn', resolved_ms > 0, 'resolved',
               acknowledged_ms > 0, 'acknowledged', 'open') AS status,
       greatest(0, toInt64(multiIf(acknowledged_ms > 0, acknowledged_ms, resolved_ms > 0, resolved_ms,
                                   withdrawn_ms > 0, withdrawn_ms, toUInt64(now()) * 1000)) - toInt64(opened_ms))
           / 1000 AS open_seconds,
       if(acknowledged_ms = 0, 0, greatest(0, toInt64(multiIf(resolved_ms > 0, resolved_ms, withdrawn_ms > 0,
                                                             withdrawn_ms, toUInt64(now()) * 1000))
                                              - toInt64(acknowledged_ms)) / 1000) AS acknowledged_seconds
FROM (
    SELECT alert_id, argMax(rule, revision) AS rule, argMax(kind, revision) AS kind,
           argMax(severity, revision) AS severity, argMax(customer_id, revision) AS customer_id,
           argMax(issue, revision) AS issue, argMax(journey_id, revision) AS journey_id,
           argMax(channel, revision) AS channel, argMax(event_ms, revision) AS event_ms,
           argMax(due_ms, revision) AS due_ms, argMax(detail, revision) AS detail,
           argMax(evidence, revision) AS evidence, max(revision) AS latest_revision,
           argMax(state, revision) AS engine_state, min(raised_ms) AS opened_ms,
           if(engine_state = 'withdrawn', argMax(raised_ms, revision), toUInt64(0)) AS withdrawn_ms
    FROM {db}.alert_log GROUP BY alert_id
) AS latest
ANY LEFT JOIN (
    SELECT alert_id, minIf(at_ms, action = 'ack') AS acknowledged_ms,
           argMinIf(actor, at_ms, action = 'ack') AS acknowledged_by,
           minIf(at_ms, action = 'resolve') AS resolved_ms,
           argMinIf(actor, at_ms, action = 'resolve') AS resolved_by
    FROM {db}.alert_actions GROUP BY alert_id
) AS actions USING alert_id;

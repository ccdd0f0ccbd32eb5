"""The queries of `cem report`'s experience sections, over the views of migration 0009_experience. Each returns
counts, which cem.domain.experience turns into scores. Every query runs on ClickHouse 18.16 and on chdb, and
passes the read-only guard (sinks.sql_guard). The window is on event time: the answer's for surveys, the first
contact's for journeys, the first event's for sessions, the purchase's for attribution; the lifecycle is as of
the latest event, whatever the window.
"""

from __future__ import annotations

from cem.domain.cx_metrics import Window
from sinks.report_queries import within


def surveys(db: str, window: Window) -> str:
    """journey type, survey kind, then the fields of cem.domain.experience.SurveyCounts."""
    return f"""
        SELECT journey_type, survey_kind, count(), countIf(survey_kind = 'nps' AND score >= 9),
               countIf(survey_kind = 'nps' AND score <= 6), countIf(survey_kind = 'csat' AND score >= 4),
               sumIf(toInt64(score), survey_kind = 'ces'), countIf(survey_kind = 'ces' AND score >= 5)
        FROM {db}.experience_responses WHERE {within("answered_ms", window)}
        GROUP BY journey_type, survey_kind ORDER BY journey_type, survey_kind"""


def journey_friction(db: str, window: Window) -> str:
    """The fields of cem.domain.experience.JourneyFriction."""
    return f"""
        SELECT count(), countIf(repeat_contacts > 0), countIf(channel_switches > 0), sum(resolved),
               sum(ifNull(contacts_to_resolution, 0)), countIf(isNotNull(first_response_s)),
               sum(ifNull(first_response_s, 0)), sum(friction_score)
        FROM {db}.journey_experience WHERE {within("started_ms", window)}"""


def digital_friction(db: str, window: Window) -> str:
    """The fields of cem.domain.experience.DigitalFriction."""
    return f"""
        SELECT count(), countIf(repeat_views > 0), countIf(errors > 0), countIf(cart_adds > 0), sum(abandoned_cart),
               sum(digital_failure)
        FROM {db}.session_friction WHERE {within("started_ms", window)}"""


def lifecycle(db: str) -> str:
    """stage, customers, of them with two churn drivers or more."""
    return f"""
        SELECT stage, count(), countIf(churn_risk >= 2) FROM {db}.customer_lifecycle GROUP BY stage ORDER BY stage"""


def attribution(db: str, window: Window) -> str:
    """channel, first-touch, last-touch and linear credit of the purchases in the window."""
    return f"""
        SELECT channel, sum(first_touch), sum(last_touch), sum(linear) AS credit
        FROM {db}.purchase_attribution WHERE {within("purchased_ms", window)}
        GROUP BY channel ORDER BY credit DESC, channel"""

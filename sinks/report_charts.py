"""The queries of the HTML report's charts (cem.html_report) beyond those of `cem report` (sinks.report_queries).
Both engines answer them: ClickHouse 18.16 and chdb."""

from __future__ import annotations

from cem.domain.cx_metrics import Window
from cem.domain.journeys import NON_CONTACT_TYPES
from sinks.report_queries import SCORE_COUNTS, within

AGE_BANDS = ("under 1 h", "1-4 h", "4-24 h", "over 1 day")
NEGATIVE_TEXT = -0.5


def journey_paths(db: str, window: Window) -> str:
    """Each distinct path of contact channels (in event time) with the number of service journeys taking it."""
    non_contact = ", ".join(f"'{t}'" for t in sorted(NON_CONTACT_TYPES))
    return f"""
        SELECT path, count() AS journeys FROM (
            SELECT journey_id, arrayMap(x -> x.2, arraySort(groupArray((occurred_ms, channel)))) AS path
            FROM {db}.interactions
            WHERE journey_id != '' AND type NOT IN ({non_contact}) AND {within("occurred_ms", window)}
            GROUP BY journey_id)
        GROUP BY path ORDER BY journeys DESC LIMIT 200"""


def scores_by_day_and_channel(db: str, window: Window) -> str:
    return f"""
        SELECT toString(toDate(occurred_at)) AS day, channel, {SCORE_COUNTS}
        FROM {db}.interactions WHERE {within("occurred_ms", window)} AND survey_kind != ''
        GROUP BY day, channel ORDER BY day, channel"""


def open_alerts_by_age(db: str) -> str:
    """Alerts open or acknowledged now, by rule and how long since they were raised."""
    hours = "(toInt64(now()) * 1000 - toInt64(opened_ms)) / 3600000"
    return f"""
        SELECT rule, multiIf({hours} < 1, '{AGE_BANDS[0]}', {hours} < 4, '{AGE_BANDS[1]}',
                             {hours} < 24, '{AGE_BANDS[2]}', '{AGE_BANDS[3]}') AS age, count()
        FROM {db}.alerts WHERE status IN ('open', 'acknowledged')
        GROUP BY rule, age ORDER BY rule, age"""


def negative_topics(db: str, window: Window, limit: int = 10) -> str:
    """The text topics (cem.domain.text) of negative texts, each counted once per interaction."""
    return f"""
        SELECT topic, count() AS interactions FROM {db}.interactions ARRAY JOIN topics AS topic
        WHERE ifNull(text_sentiment, 0) <= {NEGATIVE_TEXT} AND sentence_count > 0 AND {within("occurred_ms", window)}
        GROUP BY topic ORDER BY interactions DESC, topic LIMIT {int(limit)}"""

"""The queries of `cem report`, on the analysts' views. Each returns counts, which cem.domain.cx_metrics turns into
scores. Every query runs on ClickHouse 18.16 and on chdb, and passes the read-only guard (sinks.sql_guard).

The window is on event time: `occurred_ms` for interactions, `started_ms` (the journey's first event) for
journeys; weeks start on Monday (ISO weeks), in UTC.
"""

from __future__ import annotations

from cem.domain.cx_metrics import MIN_TOPIC_LETTERS, NEGATIVE_SENTIMENT, STOPWORDS, Window
from cem.domain.resolver import FORGOTTEN

# The columns of cem.domain.cx_metrics.ScoreCounts, in its field order.
SCORE_COUNTS = f"""count(), countIf(isNotNull(sentiment)), sum(ifNull(sentiment, 0)),
    countIf(ifNull(sentiment, 1) <= {NEGATIVE_SENTIMENT}),
    countIf(survey_kind = 'nps'), countIf(survey_kind = 'nps' AND ifNull(survey_score, 0) >= 9),
    countIf(survey_kind = 'nps' AND ifNull(survey_score, 99) <= 6),
    countIf(survey_kind = 'csat'), countIf(survey_kind = 'csat' AND ifNull(survey_score, 0) >= 4),
    countIf(survey_kind = 'ces'), sum(if(survey_kind = 'ces', toInt64(ifNull(survey_score, 0)), 0))"""


def within(column: str, window: Window) -> str:
    """The window as a condition on an epoch-milliseconds column: from the start (included) to the end
    (excluded: midnight after the last day)."""
    parts = [f"{column} >= {window.start_ms}" if window.start_ms is not None else "",
             f"{column} < {window.end_ms}" if window.end_ms is not None else ""]
    return " AND ".join(p for p in parts if p) or "1"


def overview(db: str, window: Window) -> str:
    """interactions, unique events, customers, first and last event (ms), service journeys, sessions."""
    events, journeys = within("occurred_ms", window), within("started_ms", window)
    return f"""
        SELECT count(), uniqExact(event_id), uniqExactIf(customer_id, customer_id != '{FORGOTTEN}'),
               min(occurred_ms), max(occurred_ms),
               (SELECT countIf(kind = 'service') FROM {db}.journeys WHERE {journeys}),
               (SELECT countIf(kind = 'session') FROM {db}.journeys WHERE {journeys})
        FROM {db}.interactions WHERE {events}"""


def scores_by_channel(db: str, window: Window) -> str:
    return f"""
        SELECT channel, {SCORE_COUNTS}
        FROM {db}.interactions WHERE {within("occurred_ms", window)}
        GROUP BY channel ORDER BY channel"""


def scores_by_week(db: str, window: Window) -> str:
    return f"""
        SELECT toString(toMonday(occurred_at)) AS week, {SCORE_COUNTS}
        FROM {db}.interactions WHERE {within("occurred_ms", window)}
        GROUP BY week ORDER BY week"""


def journeys(db: str, window: Window) -> str:
    """journeys, resolved, fcr, contacts, the median seconds to resolve (of the resolved ones)."""
    return f"""
        SELECT count(), sum(resolved), sum(fcr), sum(contacts),
               quantileExactIf(ifNull(time_to_resolution_s, 0), resolved = 1)
        FROM {db}.journeys WHERE kind = 'service' AND {within("started_ms", window)}"""


def journeys_by_week(db: str, window: Window) -> str:
    return f"""
        SELECT toString(toMonday(started_at)) AS week, count(), sum(resolved), sum(fcr), sum(contacts)
        FROM {db}.journeys WHERE kind = 'service' AND {within("started_ms", window)}
        GROUP BY week ORDER BY week"""


def negative_topics(db: str, window: Window, limit: int = 10) -> str:
    """The words found most often in the text of negative interactions, each counted once per interaction."""
    stopwords = ", ".join(f"'{w}'" for w in sorted(STOPWORDS))
    return f"""
        SELECT word, count() AS interactions
        FROM (
            SELECT arrayJoin(arrayDistinct(extractAll(lowerUTF8(text), '\\\\p{{L}}+'))) AS word
            FROM {db}.interactions
            WHERE {within("occurred_ms", window)} AND ifNull(sentiment, 1) <= {NEGATIVE_SENTIMENT}
        )
        WHERE lengthUTF8(word) >= {MIN_TOPIC_LETTERS} AND NOT has([{stopwords}], word)
        GROUP BY word ORDER BY interactions DESC, word LIMIT {int(limit)}"""


def identity(db: str) -> str:
    """identifiers, shared identifiers, merges, refused merges: the graph now, whatever the window."""
    return f"""
        SELECT (SELECT count() FROM {db}.identities WHERE customer_id != ''),
               (SELECT count() FROM (SELECT id_type, value FROM {db}.shared_identifiers GROUP BY id_type, value)),
               (SELECT count() FROM {db}.customer_merges), (SELECT count() FROM {db}.refused_merges)"""

"""The rules read on single events and their neighbours: detractors, a customer's sentiment drop, and a channel's
hour-over-hour emotion trend (docs/alerts.md)."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable
from datetime import UTC, datetime

from cem.domain.alerts.emit import AlertState, Emit
from cem.domain.alerts.model import OPEN, AlertRow, AlertSnapshot, EventFacts, alert_id_for
from cem.domain.alerts.rules import HOUR_MS, ChannelTrend, CustomerDrop, Detractor, RuleSet

NEGATIVE_TEXT = -0.5  # text sentiment at or under this is negative (cem.domain.text, POLARITY_BAND)
TREND_KEEP_MS = 48 * HOUR_MS  # hourly counts kept behind the watermark: a later event is too late for a trend
Existing = Callable[[str, str], AlertRow | None]


def hour_label(hour_ms: int) -> str:
    return datetime.fromtimestamp(hour_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:00Z")


def trend_signals(event: EventFacts) -> list[str]:
    """The trend signals an event counts for: each emotion of its text, and "negative"."""
    found = list(event.emotions)
    if event.text_sentiment is not None and event.text_sentiment <= NEGATIVE_TEXT:
        found.append("negative")
    return found


class EventRules:
    def __init__(self, rules: RuleSet) -> None:
        self.detractors: list[Detractor] = rules.of(Detractor)
        self.drops: list[CustomerDrop] = rules.of(CustomerDrop)
        self.trends: list[ChannelTrend] = rules.of(ChannelTrend)
        self.texts: dict[str, list[tuple[int, str, float]]] = {}  # customer -> (ms, event id, sentiment), sorted
        self.hourly: dict[tuple[str, int, str], int] = {}  # (channel, hour ms, signal) -> events
        self.trend_watermark = 0  # the watermark of the last trend evaluation: hours closed by then were evaluated
        self.text_window_ms = max((int(r.window_hours * HOUR_MS) for r in self.drops), default=0)

    def evaluate(self, events: list[EventFacts], watermark: int, horizon: int, emit: Emit,
                 existing: Existing) -> None:
        touched: set[tuple[str, int, str]] = set()
        for event in events:
            if event.occurred_ms < horizon:
                continue  # older than the alerts' retention: evaluated when it first arrived, or never
            for rule in self.detractors:
                _detractor(rule, event, emit, existing)
            if self.drops and event.text_sentiment is not None:
                self._drop(event, emit)
            if self.trends:
                hour = event.occurred_ms - event.occurred_ms % HOUR_MS
                if hour >= watermark - TREND_KEEP_MS:
                    for signal in trend_signals(event):
                        key = (event.channel, hour, signal)
                        self.hourly[key] = self.hourly.get(key, 0) + 1
                        touched.add(key)
        if self.trends:
            if watermark > self.trend_watermark:  # the hours that closed since: evaluated once, when they close
                before = self.trend_watermark
                touched.update(key for key in self.hourly if before < key[1] + HOUR_MS <= watermark)
                self.trend_watermark = watermark
            self._trends(touched, watermark, horizon, emit)

    # ---- customer sentiment drop ---------------------------------------------------------------------
    def _drop(self, event: EventFacts, emit: Emit) -> None:
        texts = self.texts.setdefault(event.customer_id, [])
        entry = (event.occurred_ms, event.event_id, event.text_sentiment or 0.0)
        insort(texts, entry)
        index = bisect_left(texts, entry)
        for rule in self.drops:
            window = int(rule.window_hours * HOUR_MS)
            self._check_pair(rule, event.customer_id, texts, index, window, event.channel, emit)
            if index + 1 < len(texts):  # the next text now follows this one: its cause may have changed
                self._check_pair(rule, event.customer_id, texts, index + 1, window, event.channel, emit)

    @staticmethod
    def _check_pair(rule: CustomerDrop, customer_id: str, texts: list[tuple[int, str, float]], index: int,
                    window: int, channel: str, emit: Emit) -> None:
        ms, event_id, sentiment = texts[index]
        issue = f"event:{event_id}"
        previous = texts[index - 1] if index > 0 and ms - texts[index - 1][0] <= window else None
        if previous is not None and previous[2] - sentiment >= rule.drop:
            emit.raise_alert(rule, customer_id, issue, "", channel, ms,
                             f"text sentiment fell from {previous[2]:+.1f} to {sentiment:+.1f}",
                             (previous[1], event_id))
        else:
            emit.withdraw(alert_id_for(rule.name, customer_id, issue), "an earlier text arrived in between")

    # ---- channel trend -------------------------------------------------------------------------------
    def _trends(self, candidates: set[tuple[str, int, str]], watermark: int, horizon: int, emit: Emit) -> None:
        hours = {(channel, hour + step, signal) for channel, hour, signal in candidates for step in (0, HOUR_MS)}
        for channel, hour, signal in sorted(hours):
            if hour + HOUR_MS > watermark or hour < horizon:
                continue  # not closed yet, or too old
            current = self.hourly.get((channel, hour, signal), 0)
            before = self.hourly.get((channel, hour - HOUR_MS, signal), 0)
            for rule in self.trends:
                if rule.emotion != signal or (rule.channels and channel not in rule.channels):
                    continue
                issue = f"{channel}@{hour_label(hour)}"
                if current >= rule.min_count and current >= rule.factor * before:
                    emit.raise_alert(rule, "", issue, "", channel, hour,
                                     f"{signal} on {channel}: {current} events in the hour, {before} the hour before",
                                     ())
                else:
                    emit.withdraw(alert_id_for(rule.name, "", issue), "late events changed the hourly counts")

    # ---- state ---------------------------------------------------------------------------------------
    def prune(self, watermark: int) -> None:
        self.hourly = {key: n for key, n in self.hourly.items() if key[1] >= watermark - TREND_KEEP_MS}
        horizon = watermark - self.text_window_ms
        for customer_id in list(self.texts):
            kept = [entry for entry in self.texts[customer_id] if entry[0] >= horizon]
            if kept:
                self.texts[customer_id] = kept
            else:
                del self.texts[customer_id]

    def restore(self, snapshot: AlertSnapshot, state: AlertState) -> None:
        for channel, hour, signal, count in snapshot.hourly:
            self.hourly[(channel, hour, signal)] = count
        for customer_id, ms, sentiment, event_id in snapshot.texts:
            insort(self.texts.setdefault(customer_id, []), (ms, event_id, sentiment))


def _detractor(rule: Detractor, event: EventFacts, emit: Emit, existing: Existing) -> None:
    limit = {"nps": rule.nps_max, "csat": rule.csat_max, "ces": rule.ces_max}.get(event.survey_kind)
    if limit is None or event.survey_score is None or event.survey_score > limit:
        return
    negative = event.text_sentiment is not None and event.text_sentiment <= rule.comment_sentiment_max
    effortful = event.effort is not None and event.effort <= rule.comment_effort_max
    if not (negative or effortful):
        return
    known = existing(rule.name, event.journey_id) if event.journey_id else None
    if known is not None and known.state == OPEN:
        return  # the issue's detractor alert, raised under the customer's earlier id
    why = "negative" if negative else "effortful"
    emit.raise_alert(rule, event.customer_id, event.issue_ref or f"event:{event.event_id}", event.journey_id,
                     event.channel, event.occurred_ms,
                     f"{event.survey_kind.upper()} {event.survey_score} with a {why} comment", (event.event_id,))

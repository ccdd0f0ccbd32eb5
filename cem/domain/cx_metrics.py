"""Customer-experience scores from counts: NPS, CSAT, CES, first-contact resolution, and the report's window.

The warehouse counts (sinks.report_queries), these functions turn counts into scores, so a figure is exact
whatever the grouping: an overall row is the sum of the channels' counts, never an average of their scores.

- NPS (0-10): % promoters (9-10) - % detractors (0-6), passives (7-8) in the denominator; -100..+100.
- CSAT (1-5): % of answers 4 or 5 (top-2-box), not the mean.
- CES (1-7, 7 = very easy): the mean answer.
- FCR: of the service journeys resolved, the % resolved at their first contact with no further contact within
  the FCR window (CEM_FCR_WINDOW_DAYS); the repeat-contact rate is the rest, 100 - FCR.
- Negative interaction: text scored -0.05 or lower (VADER's own threshold for negative).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta

NEGATIVE_SENTIMENT = -0.05
MIN_TOPIC_LETTERS = 3  # a topic is a word of letters only (\p{L}+), this long at least, not a stopword
# Words that say nothing about what went wrong: English function words and the generic words of complaints.
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing done down during each even ever every few for from further get got had has
have having he her here hers him his how i if in into is it its just me more most my no nor not now of off on once
one only or other our out over own same she should so some still such than that the their them then there these
they this those through to too under until up very was we were what when where which while who whom why will with
would you your yours yet again already really much many time times anyone anything nobody nothing someone
something please hi hello thanks thank dear ok okay
""".split())


@dataclass(frozen=True)
class ScoreCounts:
    """What the warehouse counts for one group of interactions (a channel, a week, everything)."""

    interactions: int = 0
    scored: int = 0  # interactions with a sentiment (those with text)
    sentiment_sum: float = 0.0
    negative: int = 0
    nps_answers: int = 0
    promoters: int = 0
    detractors: int = 0
    csat_answers: int = 0
    satisfied: int = 0
    ces_answers: int = 0
    ces_sum: int = 0

    @classmethod
    def of(cls, values: Iterable[object]) -> ScoreCounts:
        """From one result row, in field order; engines hand 64-bit integers as numbers or strings."""
        text = [str(v) for v in values]
        if len(text) != len(fields(cls)):
            raise ValueError(f"{len(text)} values for {len(fields(cls))} counts")
        return cls(int(text[0]), int(text[1]), float(text[2]), *(int(v) for v in text[3:]))

    def __add__(self, other: ScoreCounts) -> ScoreCounts:
        return ScoreCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def total(counts: Iterable[ScoreCounts]) -> ScoreCounts:
    result = ScoreCounts()
    for item in counts:
        result = result + item
    return result


def percent(part: float, whole: float) -> float | None:
    """`part` as a % of `whole`; None when there is nothing to measure."""
    return 100.0 * part / whole if whole else None


def mean(total_: float, count: int) -> float | None:
    return total_ / count if count else None


def nps_of(promoters: int, detractors: int, answers: int) -> float | None:
    """% answering 9-10 minus % answering 0-6."""
    return percent(promoters - detractors, answers)


def nps(c: ScoreCounts) -> float | None:
    return nps_of(c.promoters, c.detractors, c.nps_answers)


def csat(c: ScoreCounts) -> float | None:
    return percent(c.satisfied, c.csat_answers)


def ces(c: ScoreCounts) -> float | None:
    return mean(c.ces_sum, c.ces_answers)


def mean_sentiment(c: ScoreCounts) -> float | None:
    return mean(c.sentiment_sum, c.scored)


def negative_share(c: ScoreCounts) -> float | None:
    """% of the interactions with text whose text is negative."""
    return percent(c.negative, c.scored)


@dataclass(frozen=True)
class JourneyCounts:
    journeys: int = 0
    resolved: int = 0
    fcr: int = 0
    contacts: int = 0
    median_resolution_s: float | None = None


def resolved_share(j: JourneyCounts) -> float | None:
    return 100.0 * j.resolved / j.journeys if j.journeys else None


def fcr_rate(j: JourneyCounts) -> float | None:
    return 100.0 * j.fcr / j.resolved if j.resolved else None


def repeat_contact_rate(j: JourneyCounts) -> float | None:
    return 100.0 * (j.resolved - j.fcr) / j.resolved if j.resolved else None


def mean_contacts(j: JourneyCounts) -> float | None:
    return j.contacts / j.journeys if j.journeys else None


def iso_week(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True)
class Window:
    """Event-time days, UTC: from `since` (included) to `until` (included: the whole day). None: open."""

    since: date | None = None
    until: date | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise ValueError(f"--since {self.since} is after --until {self.until}")

    @property
    def start_ms(self) -> int | None:
        return _ms(self.since) if self.since else None

    @property
    def end_ms(self) -> int | None:
        """Exclusive: midnight after the last day."""
        return _ms(self.until + timedelta(days=1)) if self.until else None

    def contains(self, ms: int) -> bool:
        return (self.start_ms is None or ms >= self.start_ms) and (self.end_ms is None or ms < self.end_ms)

    def describe(self, first_ms: int | None, last_ms: int | None) -> str:
        """The window in words, with the days events were actually found on."""
        if self.since is None and self.until is None:
            if first_ms is None or last_ms is None:
                return "all events (there are none yet)"
            return (f"all events, {day(first_ms)} to {day(last_ms)} (event time, UTC); "
                    "narrow it with --since/--until")
        since = str(self.since) if self.since else "the first event"
        until = str(self.until) if self.until else "the last event"
        return f"{since} to {until}, both days included (event time, UTC)"


def _ms(day_: date) -> int:
    return int(datetime(day_.year, day_.month, day_.day, tzinfo=UTC).timestamp()) * 1000


def day(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, tz=UTC).date().isoformat()

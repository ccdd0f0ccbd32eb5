"""The windows, thresholds and event types of the experience measures (docs/analytics.md), in one place.

The measures themselves are SQL views over the exact base views (migration 0009_experience): they recompute
from the latest versions of interactions, journeys and sessions, so a late event or a customer merge changes a
measure exactly once. The views bake in the values below; tests/unit/test_experience.py checks the migration
carries the same numbers, and the helpers here turn the views' counts into scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cem.domain.cx_metrics import mean, nps_of, percent

DAY_MS = 86_400_000

# A survey answered without an issue_ref is attributed to the customer's most recent touchpoint this recent.
SURVEY_WINDOW_DAYS = 7
# Repeat contacts: a journey's contact within this long of its previous contact (CEM_FCR_WINDOW_DAYS's default).
REPEAT_CONTACT_WINDOW_DAYS = 7
# Digital friction: a page viewed again within this many seconds; a session followed by an assisted contact
# within this many minutes of its end (or during it) is a digital failure.
REPEAT_VIEW_SECONDS = 10
DIGITAL_FAILURE_MINUTES = 60
# Attribution: touchpoints that started this long before a purchase, at most.
ATTRIBUTION_WINDOW_DAYS = 30
# Lifecycle, as of a point in time: active within ACTIVE_DAYS, dormant past DORMANT_DAYS, new within NEW_DAYS
# of the first activity; a journey open longer than UNRESOLVED_AFTER_DAYS is a churn driver.
ACTIVE_DAYS = 30
DORMANT_DAYS = 90
NEW_DAYS = 30
UNRESOLVED_AFTER_DAYS = 3
LIFECYCLE_STEP_DAYS = 30  # customer_lifecycle_history: as of the latest event, and 30, 60, 90 days before
LIFECYCLE_POINTS = 4
NEGATIVE_TREND_POINTS = 1.0  # text sentiment (-5..+5): the last 30 days' mean this far below the 60 days before

# Event types. Marketing sends and the company's own resolutions are not the customer's touchpoints.
NOT_TOUCHPOINT_TYPES = ("survey_response", "ticket_resolved", "email_open", "email_click")
PURCHASE_TYPES = ("purchase", "order_completed")
VIEW_TYPES = ("page_view", "screen_view")
ERROR_TYPES = ("error", "app_error", "page_error")
CART_TYPES = ("add_to_cart", "product_added")
FORM_START_TYPE = "form_start"
FORM_SUBMIT_TYPE = "form_submit"
RESPONSE_TYPES = ("agent_reply", "agent_message", "ticket_updated", "ticket_resolved", "call_ended")
ASSISTED_CHANNELS = ("call_center", "chat", "support", "email", "social")
# Touchpoints in experience_responses when nothing is attributed, and the credited channel of a purchase with no
# touchpoint in the window.
NO_CHANNEL = "(none)"

STAGES = ("new", "active", "returning", "at_risk", "dormant")
CHURN_DRIVERS = ("falling_activity", "detractor", "unresolved_journeys", "negative_trend")

# Friction score weights (docs/analytics.md, "Journey friction").
UNRESOLVED_POINTS = 3
MAX_WAIT_DAYS = 5


@dataclass(frozen=True)
class SurveyCounts:
    """One row of experience_daily, or a sum of rows of one survey kind."""

    responses: int = 0
    promoters: int = 0
    detractors: int = 0
    satisfied: int = 0
    ces_sum: int = 0
    ces_easy: int = 0

    def __add__(self, other: SurveyCounts) -> SurveyCounts:
        return SurveyCounts(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, ...]:
        return (self.responses, self.promoters, self.detractors, self.satisfied, self.ces_sum, self.ces_easy)


def nps(c: SurveyCounts) -> float | None:
    """% answering 9-10 minus % answering 0-6, of the NPS answers counted in `c`."""
    return nps_of(c.promoters, c.detractors, c.responses)


def csat(c: SurveyCounts) -> float | None:
    """% answering 4 or 5 on 1-5."""
    return percent(c.satisfied, c.responses)


def ces_mean(c: SurveyCounts) -> float | None:
    """Mean answer on 1-7 (7: very easy)."""
    return mean(c.ces_sum, c.responses)


def ces_easy_share(c: SurveyCounts) -> float | None:
    """% answering 5-7 on 1-7."""
    return percent(c.ces_easy, c.responses)


def is_detractor(kind: str, score: int) -> bool:
    """A churn-risk driver: NPS 0-6, CSAT 1-2, CES 1-3."""
    return {"nps": score <= 6, "csat": score <= 2, "ces": score <= 3}.get(kind, False)


def friction_score(contacts: int, channel_switches: int, resolved: bool, wait_days: int, effort_penalty: int) -> int:
    """A service journey's friction: each contact after the first, each channel switch, 3 if unresolved, each
    whole day to resolution (at most 5), and the customers' stated effort (0..5)."""
    return (max(0, contacts - 1) + channel_switches + (0 if resolved else UNRESOLVED_POINTS)
            + min(wait_days, MAX_WAIT_DAYS) + effort_penalty)


def effort_penalty(effort_tenths: list[int]) -> int:
    """How hard the contacts' texts say it was: minus their mean effort (-5..+5, in tenths), whole points, >= 0."""
    if not effort_tenths:
        return 0
    return max(0, -sum(effort_tenths)) // (10 * len(effort_tenths))


@dataclass(frozen=True)
class JourneyFriction:
    """journey_experience summed over the service journeys that started in a window."""

    journeys: int = 0
    with_repeat_contacts: int = 0
    with_channel_switch: int = 0
    resolved: int = 0
    contacts_to_resolution: int = 0  # summed over the resolved journeys
    responded: int = 0  # journeys with a first response
    first_response_s: float = 0.0  # summed over them
    friction: int = 0

    @classmethod
    def of(cls, row: Sequence[object]) -> JourneyFriction:
        """From one result row, in field order; engines hand 64-bit integers as numbers or strings."""
        n = [int(str(v)) for v in row[:6]]
        return cls(n[0], n[1], n[2], n[3], n[4], n[5], float(str(row[6])), int(str(row[7])))

    def contacts_per_resolution(self) -> float | None:
        return self.contacts_to_resolution / self.resolved if self.resolved else None

    def mean_minutes_to_first_response(self) -> float | None:
        return self.first_response_s / self.responded / 60 if self.responded else None

    def mean_friction(self) -> float | None:
        return self.friction / self.journeys if self.journeys else None


@dataclass(frozen=True)
class DigitalFriction:
    """session_friction summed over the web and app sessions that started in a window."""

    sessions: int = 0
    with_repeat_views: int = 0
    with_errors: int = 0
    with_cart: int = 0
    abandoned_carts: int = 0
    failures: int = 0


@dataclass(frozen=True)
class ExperienceFigures:
    """The report's experience sections: surveys per kind of journey rated, friction, lifecycle, attribution."""

    surveys: tuple[tuple[str, str, SurveyCounts], ...] = ()  # (journey type, survey kind, counts)
    journeys: JourneyFriction = JourneyFriction()
    digital: DigitalFriction = DigitalFriction()
    stages: tuple[tuple[str, int, int], ...] = ()  # (stage, customers, of them with two churn drivers or more)
    attribution: tuple[tuple[str, int, int, float], ...] = ()  # (channel, first touch, last touch, linear)

    def by_journey_type(self) -> list[tuple[str, dict[str, SurveyCounts]]]:
        """Per journey type (then all types): survey kind -> counts."""
        table: dict[str, dict[str, SurveyCounts]] = {}
        for journey_type, kind, counts in self.surveys:
            for key in (journey_type, "all"):
                kinds = table.setdefault(key, {})
                kinds[kind] = kinds.get(kind, SurveyCounts()) + counts
        order = sorted(k for k in table if k != "all") + (["all"] if table else [])
        return [(key, table[key]) for key in order]

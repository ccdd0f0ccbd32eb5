"""The experience measures' constants agree with the views of migration 0009_experience, which bake them in, and
the score helpers of cem.domain.experience."""

from __future__ import annotations

import re

import pytest

from cem.domain import experience as x
from cem.domain.cx_metrics import Window
from cem.report import build_experience, experience_sections
from sinks.clickhouse import MIGRATIONS_DIR, split_statements

STATEMENTS = split_statements((MIGRATIONS_DIR / "0009_experience.sql").read_text())


def view(name: str) -> str:
    found = [s for s in STATEMENTS if re.match(rf"CREATE VIEW IF NOT EXISTS \{{db\}}\.{name} AS", s)]
    assert len(found) == 1, name
    return re.sub(r"\s+", " ", found[0])


def quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


@pytest.mark.parametrize(("name", "numbers", "lists"), [
    ("experience_responses", [x.SURVEY_WINDOW_DAYS * x.DAY_MS], [x.NOT_TOUCHPOINT_TYPES, x.PURCHASE_TYPES]),
    ("journey_experience", [x.REPEAT_CONTACT_WINDOW_DAYS * x.DAY_MS, x.DAY_MS, x.MAX_WAIT_DAYS, x.UNRESOLVED_POINTS],
     [x.RESPONSE_TYPES]),
    ("session_friction", [x.REPEAT_VIEW_SECONDS * 1000, x.DIGITAL_FAILURE_MINUTES * 60_000],
     [x.VIEW_TYPES, x.ERROR_TYPES, x.CART_TYPES, x.ASSISTED_CHANNELS, x.PURCHASE_TYPES, x.NOT_TOUCHPOINT_TYPES]),
    ("customer_lifecycle_history", [x.ACTIVE_DAYS * x.DAY_MS, x.DORMANT_DAYS * x.DAY_MS, x.NEW_DAYS * x.DAY_MS,
                                    x.UNRESOLVED_AFTER_DAYS * x.DAY_MS, x.LIFECYCLE_STEP_DAYS * x.DAY_MS,
                                    int(x.NEGATIVE_TREND_POINTS * 10)], []),
    ("purchase_touchpoints", [x.ATTRIBUTION_WINDOW_DAYS * x.DAY_MS], [x.PURCHASE_TYPES]),
])
def test_each_view_bakes_in_the_documented_constants(name: str, numbers: list[int], lists: list[tuple[str, ...]]
                                                     ) -> None:
    sql = view(name)
    for number in numbers:
        assert re.search(rf"(?<![\d.]){number}(?![\d.])", sql), (name, number)
    for values in lists:
        assert quoted(values) in sql, (name, values)


def test_the_views_name_every_stage_driver_and_event_type() -> None:
    sql = view("customer_lifecycle_history")
    assert {*x.STAGES, *x.CHURN_DRIVERS} <= set(re.findall(r"'(\w+)'", sql))
    assert f"[{', '.join(str(k) for k in range(x.LIFECYCLE_POINTS))}] AS months_back" in sql
    assert f"'{x.FORM_START_TYPE}'" in view("session_friction") and f"'{x.FORM_SUBMIT_TYPE}'" in view(
        "session_friction")
    assert f"'{x.NO_CHANNEL}'" in view("purchase_attribution")


def test_scores_from_counts() -> None:
    answers = [10, 9, 9, 8, 7, 6, 0, 3]  # 3 promoters, 2 passives, 3 detractors
    counts = x.SurveyCounts(responses=len(answers), promoters=3, detractors=3)
    assert x.nps(counts) == 0.0
    assert x.nps(counts + x.SurveyCounts(responses=2, promoters=2)) == 20.0
    assert x.csat(x.SurveyCounts(responses=4, satisfied=3)) == 75.0
    ces = x.SurveyCounts(responses=3, ces_sum=2 + 5 + 7, ces_easy=2)
    assert x.ces_mean(ces) == pytest.approx(14 / 3) and x.ces_easy_share(ces) == pytest.approx(200 / 3)
    assert x.nps(x.SurveyCounts()) is None and x.csat(x.SurveyCounts()) is None and x.ces_mean(x.SurveyCounts()) is None


@pytest.mark.parametrize(("kind", "score", "detractor"), [
    ("nps", 6, True), ("nps", 7, False), ("nps", 0, True), ("csat", 2, True), ("csat", 3, False),
    ("ces", 3, True), ("ces", 4, False), ("other", 0, False)])
def test_detractors(kind: str, score: int, detractor: bool) -> None:
    assert x.is_detractor(kind, score) is detractor


def test_friction_score_adds_its_components() -> None:
    assert x.friction_score(contacts=1, channel_switches=0, resolved=True, wait_days=0, effort_penalty=0) == 0
    assert x.friction_score(contacts=3, channel_switches=2, resolved=False, wait_days=0, effort_penalty=1) == 8
    assert x.friction_score(contacts=0, channel_switches=0, resolved=True, wait_days=9, effort_penalty=0) == 5


@pytest.mark.parametrize(("tenths", "penalty"), [
    ([], 0), ([30], 0), ([-33], 3), ([-33, -27], 3), ([-50, -49], 4), ([-10, 10], 0), ([-9], 0), ([-50], 5)])
def test_effort_penalty_is_whole_points_of_minus_the_mean(tenths: list[int], penalty: int) -> None:
    assert x.effort_penalty(tenths) == penalty


def figures() -> x.ExperienceFigures:
    return x.ExperienceFigures(
        surveys=(("digital", "ces", x.SurveyCounts(responses=4, ces_sum=20, ces_easy=3)),
                 ("service", "nps", x.SurveyCounts(responses=4, promoters=1, detractors=2)),
                 ("unattributed", "nps", x.SurveyCounts(responses=1, promoters=1))),
        journeys=x.JourneyFriction(journeys=8, with_repeat_contacts=2, with_channel_switch=4, resolved=5,
                                   contacts_to_resolution=9, responded=4, first_response_s=4 * 1800.0, friction=20),
        digital=x.DigitalFriction(sessions=40, with_repeat_views=10, with_errors=4, with_cart=8, abandoned_carts=6,
                                  failures=2),
        stages=(("active", 7, 1), ("dormant", 3, 0)),
        attribution=(("web", 3, 2, 2.5), ("email", 1, 2, 1.5)))


def test_the_report_prints_the_experience_sections() -> None:
    text = "\n\n".join(experience_sections(figures()))
    surveys = table(text, "Surveys by the journey they rate")
    assert surveys[0].split()[:3] == ["journey", "rated", "NPS"]
    rows = {line.split()[0]: line.split() for line in surveys[2:]}
    assert rows["service"] == ["service", "-25.0", "4", "-", "0", "-", "-", "0"]  # (1 - 2) / 4
    assert rows["digital"] == ["digital", "-", "0", "-", "0", "5.00", "75.0", "4"]
    assert rows["all"] == ["all", "0.0", "5", "-", "0", "5.00", "75.0", "4"]  # (2 - 2) / 5: counts added, not scores
    assert table(text, "Journey friction")[2].split() == ["8", "25.0", "50.0", "1.80", "30.0", "2.50"]
    assert table(text, "Digital friction")[2].split() == ["40", "25.0", "10.0", "75.0", "5.0"]
    assert [r.split() for r in table(text, "Customer lifecycle")[2:]] == [["active", "7", "1"], ["dormant", "3", "0"]]
    assert table(text, "Purchase attribution")[2].split() == ["web", "3", "2", "2.50"]


def test_no_experience_data_prints_dashes() -> None:
    text = "\n\n".join(experience_sections(x.ExperienceFigures()))
    assert table(text, "Journey friction")[2].split() == ["0", "-", "-", "-", "-", "-"]
    assert table(text, "Digital friction")[2].split() == ["0", "-", "-", "-", "-"]
    assert table(text, "Surveys by the journey they rate")[2] == "(none)"


def table(text: str, title: str) -> list[str]:
    block = text.split(f"{title}", 1)[1].split("\n\n", 1)[0]
    return block.splitlines()[1:]


def test_a_warehouse_without_the_experience_views_says_so() -> None:
    assert experience_sections(None) == [
        "Experience measures: this warehouse has no experience views yet (run `cem migrate`)."]


class NotMigrated:
    database = "cem"

    def query(self, sql: str) -> list[tuple[object, ...]]:
        assert "system.tables" in sql and "'experience_responses'" in sql
        return [(0,)]


def test_the_report_leaves_the_experience_out_of_a_warehouse_that_predates_it() -> None:
    assert build_experience(NotMigrated(), Window()) is None  # type: ignore[arg-type]

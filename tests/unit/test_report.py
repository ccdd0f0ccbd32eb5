"""The report's scores from counts (cem.domain.cx_metrics), its window, and its layout (cem.report.render_report),
on hand-made counts: the warehouse's side is in tests/component/test_report_chdb.py."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, date, datetime

import pytest

from cem import report
from cem.domain import cx_metrics as cx
from cem.domain.cx_metrics import JourneyCounts, ScoreCounts, Window
from cem.report import Report, day_argument, render_report
from cem.settings import Settings


@pytest.mark.parametrize(("answers", "expected"), [
    ([10, 9, 8, 7, 0], 20.0),  # 2 promoters, 1 detractor, 2 passives in the denominator
    ([6, 6, 6], -100.0), ([9, 10], 100.0), ([7, 8], 0.0), ([9, 6, 7, 8], 0.0), ([10, 5, 3], -100 / 3),
])
def test_nps_is_percent_promoters_minus_percent_detractors(answers: list[int], expected: float) -> None:
    counts = ScoreCounts(nps_answers=len(answers), promoters=sum(a >= 9 for a in answers),
                         detractors=sum(a <= 6 for a in answers))
    assert cx.nps(counts) == pytest.approx(expected)


def test_csat_is_the_top_two_box_share_and_ces_the_mean() -> None:
    assert cx.csat(ScoreCounts(csat_answers=8, satisfied=6)) == 75.0  # mean 1..5 would be another number
    assert cx.ces(ScoreCounts(ces_answers=4, ces_sum=1 + 7 + 5 + 6)) == 4.75
    empty = ScoreCounts()
    assert (cx.nps(empty), cx.csat(empty), cx.ces(empty), cx.mean_sentiment(empty)) == (None, None, None, None)


def test_the_overall_row_adds_counts_not_scores() -> None:
    small = ScoreCounts(nps_answers=1, promoters=1)  # NPS +100 on one answer
    large = ScoreCounts(nps_answers=9, detractors=9)  # NPS -100 on nine
    assert cx.nps(cx.total([small, large])) == -80.0  # an average of the two scores would say 0


def test_fcr_and_repeat_contacts_are_shares_of_the_resolved_journeys() -> None:
    counts = JourneyCounts(journeys=10, resolved=8, fcr=6, contacts=17)
    assert (cx.resolved_share(counts), cx.fcr_rate(counts), cx.repeat_contact_rate(counts)) == (80.0, 75.0, 25.0)
    assert cx.mean_contacts(counts) == 1.7
    assert cx.fcr_rate(JourneyCounts(journeys=3)) is None


def test_counts_read_from_an_engine_that_quotes_64_bit_integers() -> None:
    row = ["12", "10", "-3.5", "4", "5", "2", "1", "3", "2", "2", "11"]
    assert ScoreCounts.of(row) == ScoreCounts(12, 10, -3.5, 4, 5, 2, 1, 3, 2, 2, 11)
    with pytest.raises(ValueError, match="10 values for 11 counts"):
        ScoreCounts.of(row[:10])


@pytest.mark.parametrize(("monday", "week"), [(date(2026, 11, 16), "2026-W47"), (date(2026, 12, 28), "2026-W53"),
                                              (date(2024, 12, 30), "2025-W01"), (date(2027, 1, 4), "2027-W01")])
def test_iso_weeks_across_year_ends(monday: date, week: str) -> None:
    assert cx.iso_week(monday) == week


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_the_window_includes_both_days_whole() -> None:
    window = Window(date(2026, 11, 5), date(2026, 11, 24))
    assert window.start_ms == ms(2026, 11, 5) and window.end_ms == ms(2026, 11, 25)
    inside = [ms(2026, 11, 5), ms(2026, 11, 24, 23, 59, 59) + 999, ms(2026, 11, 15, 12)]
    outside = [ms(2026, 11, 5) - 1, ms(2026, 11, 25), ms(2027, 1, 1)]
    assert [window.contains(t) for t in inside + outside] == [True] * 3 + [False] * 3
    one_day = Window(date(2026, 11, 5), date(2026, 11, 5))
    assert one_day.contains(ms(2026, 11, 5, 13)) and not one_day.contains(ms(2026, 11, 6))
    assert Window().contains(0) and Window(until=date(2026, 1, 1)).contains(0)
    with pytest.raises(ValueError, match="--since 2026-11-24 is after --until 2026-11-05"):
        Window(date(2026, 11, 24), date(2026, 11, 5))


def test_the_window_is_described_in_words() -> None:
    first, last = ms(2026, 11, 2, 8), ms(2026, 11, 29, 22)
    assert Window().describe(first, last) == ("all events, 2026-11-02 to 2026-11-29 (event time, UTC); narrow it "
                                              "with --since/--until")
    assert Window().describe(None, None) == "all events (there are none yet)"
    assert Window(since=date(2026, 11, 9)).describe(first, last) == (
        "2026-11-09 to the last event, both days included (event time, UTC)")


def test_a_day_argument_that_is_no_date_says_what_is_expected() -> None:
    assert day_argument("2026-11-30") == date(2026, 11, 30)
    with pytest.raises(argparse.ArgumentTypeError, match="'30/11/2026' is not a day like 2026-11-30"):
        day_argument("30/11/2026")


def sample() -> Report:
    web = ScoreCounts(interactions=1200, scored=300, sentiment_sum=-30.0, negative=90, nps_answers=40, promoters=20,
                      detractors=10, csat_answers=0, satisfied=0, ces_answers=4, ces_sum=22)
    chat = ScoreCounts(interactions=35, scored=35, sentiment_sum=7.0, negative=5, nps_answers=2, promoters=0,
                       detractors=2, csat_answers=10, satisfied=7)
    return Report(window=Window(date(2026, 11, 5), date(2026, 11, 24)), overview=(1235, 1235, 311, 20, 400),
                  first_ms=ms(2026, 11, 5), last_ms=ms(2026, 11, 24), channels=[("chat", chat), ("web", web)],
                  weeks=[(date(2026, 11, 2), web, JourneyCounts(3, 2, 1, 4)),
                         (date(2026, 11, 9), chat, JourneyCounts())],
                  journeys=JourneyCounts(20, 10, 4, 31, 5400.0), topics=[("refund", 40), ("late", 9)],
                  identity=(600, 2, 17, 1), fcr_window_days=7.0)


def table(text: str, title: str) -> list[str]:
    block = text.split(f"\n{title}", 1)[1].split("\n\n", 1)[0]
    return block.splitlines()[1:]


def test_the_report_prints_each_section_as_an_aligned_table() -> None:
    text = render_report(sample())
    assert "Window: 2026-11-05 to 2026-11-24, both days included (event time, UTC)" in text
    scores = table(text, "Scores by channel")
    assert scores[0].split()[:4] == ["channel", "interactions", "NPS", "answers"]
    assert set(scores[1].replace(" ", "")) == {"-"}
    rows = {line.split()[0]: line for line in scores[2:5]}
    assert rows["chat"].split() == ["chat", "35", "-100.0", "2", "70.0", "10", "-", "0", "0.200", "14.3"]
    assert rows["web"].split() == ["web", "1200", "25.0", "40", "-", "0", "5.50", "4", "-0.100", "30.0"]
    assert scores[4].split()[:5] == ["all", "channels", "1235", "19.0", "42"]  # (20 - 12) / 42
    for row in scores[2:5]:  # figures right-aligned: every row ends its columns where the header does
        assert [row[:scores[0].index(h) + len(h)][-1] != " " for h in ("interactions", "NPS", "negative %")] == [
            True] * 3
    assert table(text, "Trend by ISO week")[2].split() == ["2026-W45", "2026-11-02", "1200", "25.0", "40", "-", "0",
                                                           "5.50", "4", "3", "50.0"]
    journeys = table(text, "Service journeys")
    assert journeys[2].split() == ["20", "10", "50.0", "40.0", "60.0", "1.55", "1.5"]
    assert "within 7 days" in text
    topics = table(text, "Top negative topics (words in the text of the 95 negative interactions)")
    assert [line.split() for line in topics[2:4]] == [["refund", "40", "42.1"], ["late", "9", "9.5"]]
    overview = text.split("Overview")[1].splitlines()  # the shape scripts and tests read
    assert overview[1].split()[:2] == ["interactions", "unique"] and overview[3].split()[:3] == ["1235", "1235", "311"]


def test_an_empty_warehouse_prints_dashes_not_zero_divisions() -> None:
    empty = Report(window=Window(), overview=(0, 0, 0, 0, 0), first_ms=None, last_ms=None, channels=[], weeks=[],
                   journeys=JourneyCounts(), topics=[], identity=(0, 0, 0, 0))
    text = render_report(empty)
    assert "all events (there are none yet)" in text
    assert table(text, "Scores by channel")[2].split() == ["all", "channels", "0", "-", "0", "-", "0", "-", "0", "-",
                                                           "-"]
    assert table(text, "Top negative topics (words in the text of the 0 negative interactions)")[2] == "(none)"
    assert "within the FCR window" in text


class FailingWarehouse:
    database = "cem"

    def __init__(self, message: str) -> None:
        self.message, self.closed = message, False

    def query(self, sql: str) -> list[tuple[object, ...]]:
        raise RuntimeError(self.message)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("message", "hint"), [
    ("Code: 81. DB::Exception: Database cem doesn't exist.", True),
    ("Code: 60. DB::Exception: Table cem.interactions doesn't exist.", True),
    ("Code: 159. DB::Exception: Timeout exceeded", False),
])
def test_a_warehouse_error_is_printed_with_a_hint_when_it_is_not_migrated(
        monkeypatch: pytest.MonkeyPatch, message: str, hint: bool) -> None:
    warehouse = FailingWarehouse(message)
    monkeypatch.setattr(report, "open_read_only", lambda settings, err: warehouse)
    err = io.StringIO()
    assert report.run_report(Settings(), None, None, io.StringIO(), err) == 1
    assert err.getvalue().startswith(f"error: {message}") and ("cem migrate" in err.getvalue()) == hint
    assert warehouse.closed


def test_a_window_ending_before_it_starts_is_refused_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "open_read_only", lambda settings, err: pytest.fail("connected"))
    err = io.StringIO()
    assert report.run_report(Settings(), date(2026, 11, 30), date(2026, 11, 1), io.StringIO(), err) == 2
    assert err.getvalue() == "error: --since 2026-11-30 is after --until 2026-11-01\n"

"""`cem report` on the embedded warehouse (chdb): generated traffic written by the worker's own sink, the report
built over a read-only connection, and every figure compared with the same figure computed in Python from the
generated events (tests/integration/report_scenario.py)."""

from __future__ import annotations

import io

import pytest

from cem.domain.cx_metrics import Window
from cem.report import build_report, print_report
from cem.settings import Settings
from sinks.clickhouse import connect
from tests.integration import report_scenario as scenario


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, scenario.Scenario]:
    path = tmp_path_factory.mktemp("report")
    settings = Settings.from_env({}, clickhouse_url=f"chdb://{path}/warehouse?database=rep",
                                 state_dir=str(path / "state"))
    generated = scenario.generate()
    scenario.load(settings, generated)
    return settings, generated


@pytest.mark.parametrize("window", [scenario.WINDOW, Window(), Window(since=scenario.WINDOW.since),
                                    Window(until=scenario.START)], ids=["cut", "all", "since", "one-day"])
def test_every_figure_equals_a_direct_computation(loaded: tuple[Settings, scenario.Scenario],
                                                  window: Window) -> None:
    settings, generated = loaded
    warehouse = connect(settings.clickhouse_url, read_only=True)
    try:
        report = build_report(warehouse, window, settings.fcr_window_days)
    finally:
        warehouse.close()
    scenario.assert_report_matches(report, scenario.expected(generated, window))


def test_the_printed_report_names_its_window_and_sections(loaded: tuple[Settings, scenario.Scenario]) -> None:
    settings, _ = loaded
    warehouse = connect(settings.clickhouse_url, read_only=True)
    out = io.StringIO()
    try:
        print_report(warehouse, scenario.WINDOW, 7.0, out)
    finally:
        warehouse.close()
    text = out.getvalue()
    print(text)
    assert "Window: 2026-11-05 to 2026-11-24, both days included (event time, UTC)" in text
    for title in ("Overview", "Scores by channel", "Trend by ISO week", "Service journeys", "Top negative topics",
                  "Identity"):
        assert f"\n{title}" in text
    assert "2026-W45  2026-11-02" in text and "2026-W48  2026-11-23" in text  # cut weeks, by their Monday

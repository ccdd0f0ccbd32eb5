"""`cem report` on ClickHouse 18.16: the generated traffic of the chdb component test, written by the worker's own
sink to the server, read by the `readonly` user, every figure compared with the direct computation; and the
command itself, window flags included."""

from __future__ import annotations

from cem.report import build_report
from cem.settings import Settings
from devtools.harness import run_cem
from devtools.services import ClickHouseServer
from sinks.clickhouse import connect
from tests.integration import report_scenario as scenario


def test_report_on_clickhouse_18_16_equals_a_direct_computation(clickhouse: ClickHouseServer) -> None:
    url = clickhouse.url.rsplit("/", 1)[0] + "/report"
    settings = Settings.from_env({}, clickhouse_url=url)
    generated = scenario.generate(seed=5)
    scenario.load(settings, generated)

    reader = connect(clickhouse.readonly_url.rsplit("/", 1)[0] + "/report", read_only=True)
    try:
        for window in (scenario.WINDOW, scenario.Window()):
            scenario.assert_report_matches(build_report(reader, window), scenario.expected(generated, window))
    finally:
        reader.close()

    printed = run_cem("report", "--since", "2026-11-05", "--until", "2026-11-24", env=settings.as_env())
    assert printed.returncode == 0, printed.stderr
    assert "Window: 2026-11-05 to 2026-11-24, both days included (event time, UTC)" in printed.stdout
    overview = printed.stdout.split("Overview")[1].splitlines()[3].split()
    assert tuple(int(v) for v in overview[:4]) == scenario.expected(generated, scenario.WINDOW).overview
    backwards = run_cem("report", "--since", "2026-11-24", "--until", "2026-11-05", env=settings.as_env())
    assert backwards.returncode == 2 and "--since 2026-11-24 is after --until 2026-11-05" in backwards.stderr

"""Progress bars drawn only on a terminal (cem.progress), `cem doctor`'s verdicts (cem.domain.health) and the
arguments of `cem replay`."""

from __future__ import annotations

import argparse
import io

import pytest

from cem.domain.health import (
    FAIL,
    INFO,
    OK,
    Check,
    exit_code,
    judge_deadletters,
    judge_lag,
    judge_members,
    judge_migrations,
    judge_topics,
    render,
)
from cem.progress import progress_bar
from cem.replay import database_argument, time_argument, with_database


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_on_a_terminal_with_the_rate_and_nothing_elsewhere() -> None:
    for stream, drawn in ((Terminal(), True), (io.StringIO(), False)):
        with progress_bar("replaying", 3_000, "records", stream) as advance:
            for _ in range(3):
                advance(1_000)
        text = stream.getvalue()
        assert ("replaying" in text and "3000/3000" in text) is drawn
        assert ("\x1b" in text) is drawn
        if not drawn:
            assert text == ""


# ---- cem doctor ----------------------------------------------------------------------------------------------
WANTED = {"p.raw.web": 4, "p.raw.chat": 4, "p.resolve": 1, "p.control": 1}
SINGLE = ["p.resolve", "p.control"]


def test_topics_all_present_is_one_ok_line() -> None:
    checks = judge_topics(WANTED, {"p.raw.web": 4, "p.raw.chat": 8, "p.resolve": 1, "p.control": 1}, SINGLE)
    assert checks == [Check(OK, "topics", "all 4 present (4/8 partitions each, p.resolve, p.control: 1)")]


def test_a_missing_topic_and_a_resolver_topic_with_partitions_fail_each_on_its_line() -> None:
    checks = judge_topics(WANTED, {"p.raw.web": 4, "p.resolve": 3, "p.control": 1}, SINGLE)
    assert [(c.status, c.name) for c in checks] == [(FAIL, "topic p.raw.chat"), (FAIL, "topic p.resolve")]
    assert "missing" in checks[0].detail and "3 partitions, must be 1" in checks[1].detail


@pytest.mark.parametrize("applied,status,shown", [
    ({"0001_a", "0002_b", "0003_c"}, OK, "all 3 applied (last: 0003_c)"),
    ({"0001_a", "0003_c"}, FAIL, "not applied: 0002_b: run `cem migrate`"),
    (set(), FAIL, "not applied: 0001_a, 0002_b, 0003_c: run `cem migrate`"),
    (None, FAIL, "none applied (no schema_migrations table)"),
])
def test_migrations(applied: set[str] | None, status: str, shown: str) -> None:
    check = judge_migrations(["0001_a", "0002_b", "0003_c"], applied)
    assert check.status == status and shown in check.detail


def test_lag_under_the_limit_is_shown_over_it_fails() -> None:
    assert judge_lag({"a": 0, "b": 0}, 10) == [Check(OK, "lag", "nothing waiting on 2 topics")]
    checks = judge_lag({"a": 0, "b": 10, "c": 11}, 10)
    assert [(c.status, c.name) for c in checks] == [(OK, "lag b"), (FAIL, "lag c")]
    assert checks[1].detail.startswith("11 messages waiting (> CEM_DOCTOR_MAX_LAG=10)")


def test_workers_and_dead_letters() -> None:
    assert judge_members(0, "g").status == FAIL
    assert judge_members(2, "g") == Check(OK, "workers", "2 in consumer group g")
    assert judge_members(None, "g").status == INFO
    assert judge_deadletters(5, 40, 5, "p.deadletter") == Check(OK, "dead letters",
                                                                 "5 in the last hour (40 retained in p.deadletter)")
    assert judge_deadletters(6, 40, 5, "p.deadletter").status == FAIL


def test_render_and_exit_code() -> None:
    checks = [Check(OK, "kafka", "answers"), Check(INFO, "worker /status", "nothing answers"),
              Check(OK, "lag", "nothing")]
    assert render(checks) == ["OK    kafka           answers", "--    worker /status  nothing answers",
                              "OK    lag             nothing"]
    assert exit_code(checks) == 0
    assert exit_code([*checks, Check(FAIL, "topics", "x")]) == 1


def test_a_warehouse_that_is_not_there_fails_without_being_created(tmp_path) -> None:
    from cem.doctor import warehouse_checks
    from cem.settings import Settings

    missing = tmp_path / "nowhere"
    checks = warehouse_checks(Settings(clickhouse_url=f"chdb://{missing}"))
    assert [(c.status, c.name) for c in checks] == [(FAIL, "warehouse")]
    assert f"no embedded warehouse at {missing}" in checks[0].detail and not missing.exists()
    checks = warehouse_checks(Settings(clickhouse_url="postgres://h/db"))
    assert [(c.status, c.name) for c in checks] == [(FAIL, "warehouse")] and "clickhouse://" in checks[0].detail


# ---- cem replay ----------------------------------------------------------------------------------------------
def test_replay_arguments() -> None:
    assert time_argument("2026-11-20T00:00:00Z") == 1_795_132_800_000
    assert time_argument("2026-11-20T01:00:00+01:00") == 1_795_132_800_000
    assert time_argument("1795132800000") == 1_795_132_800_000
    for bad in ("yesterday", "2026-13-01"):
        with pytest.raises(argparse.ArgumentTypeError):
            time_argument(bad)
    assert database_argument("cem_rebuilt_2") == "cem_rebuilt_2"
    for bad in ("2cem", "cem-x", "cem;DROP", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            database_argument(bad)


@pytest.mark.parametrize("url,expected", [
    ("clickhouse://u:p@h:9000/cem", "clickhouse://u:p@h:9000/rebuilt"),
    ("clickhouse://h:9000", "clickhouse://h:9000/rebuilt"),
    ("chdb:///var/lib/cem/warehouse", "chdb:///var/lib/cem/warehouse?database=rebuilt"),
    ("chdb:///var/lib/cem/warehouse?database=cem", "chdb:///var/lib/cem/warehouse?database=rebuilt"),
])
def test_the_new_database_is_on_the_same_server(url: str, expected: str) -> None:
    assert with_database(url, "rebuilt") == expected

"""`cem sql` output (cem.sql_cli) and the client side of the read-only limits (sinks.read_only), against fakes of
clickhouse-driver's client: the real engines are in tests/integration/test_sql_guard_engines.py."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pytest
from clickhouse_driver.errors import ServerException

from cem.sql_cli import error_text, render
from sinks import clickhouse
from sinks.read_only import QueryLimits, QueryTimeout, run_bounded

NAMES = ["n", "text", "arr", "nothing"]
ROWS = [(1, "a,b \"q\"", [1, 2], None), (22, "tab\there\nnew line", [], None)]


def test_table_has_headers_aligned_columns_and_a_row_count() -> None:
    lines = render("table", NAMES, ROWS).splitlines()
    assert lines[0].split() == NAMES
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["1", "a,b", '"q"', "[1,2]", "NULL"]
    assert lines[3].split() == ["22", "tab\\there\\nnew", "line", "[]", "NULL"]
    assert lines[2].index("a,b") == lines[3].index("tab") == lines[0].index("text")  # one column, one offset
    assert lines[2].index("1") == lines[3].index("22") + 1  # numbers right-aligned
    assert lines[-1] == "(2 rows)"
    assert all(line == line.rstrip() for line in lines)
    assert render("table", ["x"], []).splitlines() == ["x", "-", "(0 rows)"]


def test_csv_round_trips_through_a_csv_reader() -> None:
    assert list(csv.reader(io.StringIO(render("csv", NAMES, ROWS)))) == [
        NAMES, ["1", "a,b \"q\"", "[1,2]", ""], ["22", "tab\there\nnew line", "[]", ""]]


def test_tsv_escapes_like_clickhouse() -> None:
    assert render("tsv", NAMES, ROWS).splitlines() == [
        "n\ttext\tarr\tnothing", "1\ta,b \"q\"\t[1,2]\t\\N", "22\ttab\\there\\nnew line\t[]\t\\N"]


def test_json_is_columns_and_rows() -> None:
    assert orjson.loads(render("json", ["1", "1"], [(1, 2)])) == {"columns": ["1", "1"], "rows": [[1, 2]]}
    document = orjson.loads(render("json", NAMES, ROWS))
    assert document["rows"][1] == [22, "tab\there\nnew line", [], None]


def test_jsonl_is_one_object_per_row_with_unique_keys() -> None:
    lines = render("jsonl", ["a", "a", "b", "a"], [(1, 2, 3, 4), (5, 6, 7, 8)]).splitlines()
    assert [orjson.loads(line) for line in lines] == [{"a": 1, "a_2": 2, "b": 3, "a_3": 4},
                                                        {"a": 5, "a_2": 6, "b": 7, "a_3": 8}]
    assert render("jsonl", ["a"], []) == ""


def test_error_text_is_the_whole_message_without_the_stack_trace() -> None:
    server = ServerException("DB::Exception: Syntax error: failed at position 8: +. Expected one of: "
                             "NOT, LIKE.\nSecond line of the message. Stack trace:\n\n0. StackTrace()\n1. f()",
                             code=62)
    assert error_text(server) == ("Code: 62. DB::Exception: Syntax error: failed at position 8: +. Expected one of: "
                                  "NOT, LIKE.\nSecond line of the message.")
    assert error_text(RuntimeError("Code: 60. DB::Exception: Unknown table x. (UNKNOWN_TABLE)")) == (
        "Code: 60. DB::Exception: Unknown table x. (UNKNOWN_TABLE)")
    assert error_text(EOFError()) == "EOFError"


# ---- the client side of the limits ----------------------------------------------------------------------
class FakeProgress:
    """clickhouse-driver's ProgressQueryResult: iterating yields progress; data blocks pile up in `data`."""

    def __init__(self, blocks: list[list[tuple[Any, ...]]]) -> None:
        self.blocks = blocks
        self.data: list[tuple[Any, ...]] = []
        self.columns_with_types = [("n", "UInt64")]

    def __iter__(self) -> FakeProgress:
        return self

    def __next__(self) -> tuple[int, int]:
        if not self.blocks:
            raise StopIteration
        self.data.extend(self.blocks.pop(0))
        return len(self.data), 0

    def get_result(self) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
        return self.data, self.columns_with_types


class FakeClient:
    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.cancelled = 0

    def execute_with_progress(self, sql: str, with_column_types: bool, settings: dict[str, Any]) -> FakeProgress:
        self.sent.append((sql, dict(settings)))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return FakeProgress(outcome)

    def cancel(self) -> None:
        self.cancelled += 1


class Clock:
    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_query_within_bounds_returns_all_its_rows() -> None:
    client = FakeClient([[(1,)], [(2,)], [(3,)]])
    assert run_bounded(client, "SELECT n", {}, QueryLimits(10, 3), Clock(0.1)) == (["n"], [(1,), (2,), (3,)])
    assert client.cancelled == 0


@pytest.mark.parametrize("limit", [1, 4, 9])
def test_past_the_row_limit_the_query_is_cancelled_with_one_row_more(limit: int) -> None:
    client = FakeClient([[(i,) for i in range(5)]] * 50)
    names, rows = run_bounded(client, "SELECT n", {}, QueryLimits(10, limit), Clock(0.0))
    assert rows == [(i % 5,) for i in range(limit + 1)] and names == ["n"]
    assert client.cancelled == 1


@pytest.mark.parametrize(("timeout", "step"), [(1, 0.3), (5, 1.0), (60, 7.0)])
def test_past_the_timeout_the_query_is_cancelled_on_the_server(timeout: int, step: float) -> None:
    """A server that ignores the settings (18.16 with a readonly=1 profile) still gets the query stopped."""
    client = FakeClient([[]] * 1000)
    with pytest.raises(QueryTimeout, match=f"longer than {timeout} s"):
        run_bounded(client, "SELECT count() FROM system.numbers", {}, QueryLimits(timeout, 10), Clock(step))
    assert client.cancelled == 1


def _server(client: FakeClient, major: int = 18, minor: int = 16) -> clickhouse.ServerWarehouse:
    warehouse = clickhouse.ServerWarehouse.__new__(clickhouse.ServerWarehouse)
    warehouse.database, warehouse.read_only, warehouse.limits = "cem", True, QueryLimits(7, 10)
    warehouse._query_settings = {**warehouse.limits.engine_settings(), "readonly": 1}

    class Info:
        version_major, version_minor, version_patch = major, minor, 1

    class Connection:
        server_info = Info()

        def force_connect(self) -> None:
            pass

    client.connection = Connection()  # type: ignore[attr-defined]
    warehouse._client = client  # type: ignore[assignment]
    return warehouse


def test_server_read_only_sends_the_limits_then_readonly() -> None:
    client = FakeClient([[(1,)]])
    assert _server(client).query_with_columns("SELECT 1 -- a comment") == (["n"], [(1,)])
    (sql, settings), = client.sent
    assert sql == "SELECT 1"
    assert settings == {"max_execution_time": 7, "max_result_rows": 11, "result_overflow_mode": "break",
                        "readonly": 1}
    assert list(settings)[-1] == "readonly"


def test_a_user_that_may_not_change_settings_keeps_its_profile_limits() -> None:
    refused = ServerException("DB::Exception: Cannot modify 'max_execution_time' setting in readonly mode", 164)
    client = FakeClient(refused, [[(1,)]], [[(2,)]])
    warehouse = _server(client)
    assert warehouse.query("SELECT 1") == [(1,)]
    assert warehouse.query("SELECT 2") == [(2,)]
    assert [settings for _, settings in client.sent] == [{**warehouse.limits.engine_settings(), "readonly": 1}, {},
                                                          {}]


def test_other_server_errors_pass_through_and_a_server_timeout_is_a_query_timeout() -> None:
    warehouse = _server(FakeClient(ServerException("DB::Exception: Table functions are forbidden", 164),
                                   ServerException("DB::Exception: Timeout exceeded: elapsed 7 seconds", 159)))
    with pytest.raises(ServerException, match="Table functions"):
        warehouse.query("SELECT 1")
    with pytest.raises(QueryTimeout):
        warehouse.query("SELECT 1")


@pytest.mark.parametrize(("major", "minor", "supported"), [(18, 16, False), (20, 5, False), (20, 6, True),
                                                           (24, 3, True)])
def test_explain_on_a_server_without_it_says_which_version_it_needs(major: int, minor: int, supported: bool) -> None:
    client = FakeClient([[("plan",)]])
    warehouse = _server(client, major, minor)
    if supported:
        assert warehouse.query("EXPLAIN SELECT 1") == [("plan",)]
    else:
        with pytest.raises(clickhouse.WarehouseError, match=f"EXPLAIN needs ClickHouse 20.6 or later; this server "
                                                            f"runs {major}.{minor}.1"):
            warehouse.query("EXPLAIN SELECT 1")
        assert client.sent == []

"""`cem sql`: one read-only query, printed as an aligned table, CSV, TSV, JSON or JSON lines, with column names.

`--format json` prints one object, {"columns": [...], "rows": [[...], ...]}: lossless even when two columns share
a name (`SELECT 1, 1`). `--format jsonl` prints one object per row keyed by column name, for jq and friends; a
repeated name gets a suffix (`1`, `1_2`).
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import orjson

from cem.settings import Settings
from cem.tables import format_table
from sinks.clickhouse import ReadOnlyViolation, Warehouse, connect
from sinks.read_only import QueryLimits, QueryTimeout
from sinks.sql_guard import check_read_only

FORMATS = ("table", "csv", "tsv", "json", "jsonl")
_MAX_ERROR_LINES = 12


def sql_limits(settings: Settings) -> QueryLimits:
    return QueryLimits(settings.sql_timeout_seconds, settings.sql_max_result_rows)


def open_read_only(settings: Settings, err: TextIO) -> Warehouse | None:
    """The read-only warehouse of `cem sql` and `cem report`, or None after one line on `err` saying why not (an
    embedded warehouse another process holds is caught before, by cem.preflight)."""
    try:
        return connect(settings.clickhouse_url, read_only=True, limits=sql_limits(settings))
    except Exception as exc:  # a server that is down, a directory that cannot be read: the engine's words
        print(f"error: {error_text(exc)}", file=err)
        return None


def refusal(query: str) -> str:
    """'refused: …' when the read-only guard refuses `query`, else ''."""
    try:
        check_read_only(query)
    except ReadOnlyViolation as exc:
        return f"refused: {exc}"
    return ""


def run_sql(settings: Settings, query: str, fmt: str, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    warehouse = open_read_only(settings, err)
    if warehouse is None:
        return 1
    try:
        names, rows = warehouse.query_with_columns(query)
    except ReadOnlyViolation as exc:
        print(f"refused: {exc}", file=err)
        return 2
    except QueryTimeout as exc:
        print(f"error: {exc} (CEM_SQL_TIMEOUT_SECONDS={settings.sql_timeout_seconds})", file=err)
        return 1
    except Exception as exc:  # syntax, unknown table, readonly: the engine's message is the useful part
        print(f"error: {error_text(exc)}", file=err)
        return 1
    finally:
        warehouse.close()
    limit = settings.sql_max_result_rows
    out.write(render(fmt, names, rows[:limit]))
    if len(rows) > limit:
        print(f"note: only the first {limit} rows are shown, the result has more (add a LIMIT, or raise "
              "CEM_SQL_MAX_RESULT_ROWS)", file=err)
    return 0


def error_text(exc: BaseException) -> str:
    """The engine's message without its stack trace: `Code: 62. DB::Exception: Syntax error: ...`."""
    text = str(exc).split("Stack trace:", 1)[0]
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1 and re.fullmatch(r"Code: \d+\.", lines[0]):
        lines[:2] = [f"{lines[0]} {lines[1]}"]
    return "\n".join(lines[:_MAX_ERROR_LINES]) or type(exc).__name__


def render(fmt: str, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if fmt == "json":
        return orjson.dumps({"columns": list(names), "rows": rows}, default=_json_default,
                            option=orjson.OPT_NON_STR_KEYS).decode() + "\n"
    if fmt == "jsonl":
        keys = _unique(names)
        return "".join(orjson.dumps(dict(zip(keys, row, strict=True)), default=_json_default,
                                    option=orjson.OPT_NON_STR_KEYS).decode() + "\n" for row in rows)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([["" if v is None else _text(v) for v in row] for row in rows])
        return buffer.getvalue()
    if fmt == "tsv":
        lines = ["\t".join(_tsv(n) for n in names)]
        lines += ["\t".join("\\N" if v is None else _tsv(_text(v)) for v in row) for row in rows]
        return "\n".join(lines) + "\n"
    cells = [["NULL" if v is None else _printable(_text(v)) for v in row] for row in rows]
    footer = "1 row" if len(rows) == 1 else f"{len(rows)} rows"
    table = "\n".join(line.rstrip() for line in format_table([_printable(n) for n in names], cells).splitlines())
    return f"{table}\n({footer})\n"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple | dict):
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)  # Decimal, IPv4Address, Enum


def _tsv(text: str) -> str:
    """ClickHouse's TabSeparated escaping, so a value with a tab or a newline stays one cell."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _printable(text: str) -> str:
    return text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    keys = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return keys

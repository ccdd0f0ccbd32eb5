"""Every command that needs Kafka or ClickHouse says in one line what it tried to reach, what failed and what to do,
exits 69, and prints no traceback (unless --debug): no broker, no ClickHouse server, an embedded warehouse held by
another process, an empty embedded warehouse. Real `cem` processes, closed local ports and a real embedded engine
holding its directory; no timing assertion (a generous timeout bounds each command instead)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.harness import run_cem
from devtools.services import free_port

EXAMPLE = str(Path(__file__).resolve().parents[2] / "docs" / "examples" / "jane.jsonl")
COMMAND_TIMEOUT = 60.0


def closed_port() -> int:
    """A loopback port nobody listens on (probed free; nothing here binds it)."""
    return free_port()


def only_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("args", [
    ("publish", EXAMPLE),
    ("worker",),
    ("forget", "email", "jane.doe@example.com"),
])
def test_no_broker(args: tuple[str, ...], tmp_path: Path) -> None:
    port = closed_port()
    env = {"CEM_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "CEM_STATE_DIR": str(tmp_path)}
    done = run_cem(*args, env=env, timeout=COMMAND_TIMEOUT)
    assert done.returncode == 69
    assert only_line(done) == (f"cem {args[0]}: no Kafka broker at 127.0.0.1:{port} (connection refused): start one "
                               "with `make dev-up` (then `eval \"$(make -s dev-env)\"`) or set CEM_KAFKA_BOOTSTRAP")


@pytest.mark.parametrize("args", [
    ("sql", "SELECT 1"),
    ("report",),
    ("identity", "explain", "email", "jane.doe@example.com"),
    ("migrate",),
])
def test_no_clickhouse_server(args: tuple[str, ...]) -> None:
    port = closed_port()
    env = {"CEM_CLICKHOUSE_URL": f"clickhouse://default:pw@127.0.0.1:{port}/cem"}
    done = run_cem(*args, env=env, timeout=COMMAND_TIMEOUT)
    assert done.returncode == 69
    assert only_line(done) == (f"cem {args[0]}: no ClickHouse server at 127.0.0.1:{port} (connection refused): start "
                               "one with `make dev-up` (then `eval \"$(make -s dev-env)\"`) or set CEM_CLICKHOUSE_URL")


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel completes them; nothing answers): a connection check passes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_a_worker_names_the_clickhouse_server_once_the_broker_answers(tmp_path: Path, listening_port: int) -> None:
    port = closed_port()
    env = {"CEM_KAFKA_BOOTSTRAP": f"127.0.0.1:{listening_port}", "CEM_STATE_DIR": str(tmp_path),
           "CEM_CLICKHOUSE_URL": f"clickhouse://127.0.0.1:{port}/cem"}
    done = run_cem("worker", env=env, timeout=COMMAND_TIMEOUT)
    assert done.returncode == 69
    assert only_line(done).startswith(f"cem worker: no ClickHouse server at 127.0.0.1:{port} (connection refused)")


@pytest.fixture
def held_warehouse(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """An embedded warehouse with the database, held open by another process (as a running worker holds it)."""
    path = tmp_path / "warehouse"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from chdb import session
        s = session.Session({str(path)!r})
        s.query("CREATE DATABASE IF NOT EXISTS cem")
        print("ready", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield path, holder.pid
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)


@pytest.mark.parametrize("args", [
    ("sql", "SELECT count() FROM system.one"),
    ("report",),
    ("identity", "explain", "email", "jane.doe@example.com"),
    ("migrate",),
])
def test_an_embedded_warehouse_held_by_another_process(args: tuple[str, ...], held_warehouse: tuple[Path, int]) -> None:
    path, pid = held_warehouse
    done = run_cem(*args, env={"CEM_CLICKHOUSE_URL": f"chdb://{path}"}, timeout=COMMAND_TIMEOUT)
    assert done.returncode == 69
    assert only_line(done) == (
        f"cem {args[0]}: the embedded warehouse at {path} is in use by process {pid} (a `cem worker` or the demo; "
        "the embedded engine allows one process per directory): stop it, or run the worker on a ClickHouse server "
        "(`make dev-up` (then `eval \"$(make -s dev-env)\"`)) so that other commands can query alongside it")


def test_the_default_warehouse_follows_the_state_dir_and_is_checked_too(held_warehouse: tuple[Path, int]) -> None:
    path, pid = held_warehouse
    done = run_cem("sql", "SELECT 1", env={"CEM_STATE_DIR": str(path.parent)}, timeout=COMMAND_TIMEOUT)
    assert done.returncode == 69 and f"at {path} is in use by process {pid} " in only_line(done)


def test_an_empty_embedded_warehouse_from_another_directory(tmp_path: Path) -> None:
    done = run_cem("report", env={"CEM_STATE_DIR": str(tmp_path / "elsewhere")}, timeout=COMMAND_TIMEOUT)
    assert done.returncode == 69
    assert only_line(done) == (f"cem report: the embedded warehouse at {tmp_path}/elsewhere/warehouse has no "
                               "database cem: run `make demo` to fill it, or set CEM_CLICKHOUSE_URL (or CEM_STATE_DIR) "
                               "to the warehouse you mean")


def test_debug_shows_the_traceback() -> None:
    port = closed_port()
    done = run_cem("--debug", "sql", "SELECT 1", env={"CEM_CLICKHOUSE_URL": f"clickhouse://127.0.0.1:{port}/cem"},
                   timeout=COMMAND_TIMEOUT)
    assert done.returncode == 1  # the interpreter's code for an uncaught exception
    assert "Traceback (most recent call last)" in done.stderr
    assert f"cem.preflight.Unavailable: no ClickHouse server at 127.0.0.1:{port}" in done.stderr


def test_an_unexpected_failure_is_one_line_naming_the_debug_flag(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    done = run_cem("migrate", env={"CEM_CLICKHOUSE_URL": f"chdb://{not_a_directory}"}, timeout=COMMAND_TIMEOUT)
    assert done.returncode == 1
    assert re.match(r"cem migrate: (NotADirectoryError|FileExistsError): .*/file\b", only_line(done)), only_line(done)
    assert only_line(done).endswith("(run `cem --debug migrate ...` for the traceback)")

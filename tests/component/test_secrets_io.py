"""Secrets and the clients that open connections: a failed ClickHouse connection logs no password, and `cem sql`
on the embedded engine refuses to write a file. (The pure checks are in tests/unit/test_secrets.py.)"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from cem.service.resolver_service import ResolverService
from cem.service.retry import Stopping
from cem.settings import Settings
from devtools.harness import run_cem
from devtools.services import free_port
from sinks.clickhouse import connect
from sinks.errors import describe_error

SECRET = "s3cr3t-P@ss/word"
URL_SECRET = "s3cr3t-P%40ss%2Fword"  # the same password, URL-encoded as CEM_CLICKHOUSE_URL carries it


def test_a_failing_connection_logs_no_password(caplog: pytest.LogCaptureFixture) -> None:
    url = f"clickhouse://cem:{URL_SECRET}@127.0.0.1:{free_port()}/cem"  # nothing listens there
    with pytest.raises(Exception) as raised:
        connect(url).query("SELECT 1")
    caplog.set_level(logging.DEBUG)
    stopping = threading.Event()
    stopping.set()  # the first failure gives the batch up
    with pytest.raises(Stopping):
        ResolverService(Settings(clickhouse_url=url, state_store="memory"), stopping=stopping).process_and_write([])
    logged = caplog.text + describe_error(raised.value) + str(raised.value)
    assert "ClickHouse write failed, retrying: NetworkError" in caplog.text
    assert SECRET not in logged and URL_SECRET not in logged


@pytest.mark.parametrize("query", [
    "SELECT 1 INTO OUTFILE '{target}'",
    "select 1 into outfile '{target}' format TSV",
    "SELECT 1 INTO -- a comment between the words\nOUTFILE '{target}'",
    "WITH 1 AS x SELECT x INTO OUTFILE '{target}'",
])
def test_cem_sql_on_the_embedded_engine_refuses_to_write_a_file(tmp_path: Path, query: str) -> None:
    target = tmp_path / "written.tsv"
    done = run_cem("sql", query.format(target=target), env={"CEM_CLICKHOUSE_URL": f"chdb://{tmp_path}/warehouse"},
                   timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr  # 2: refused by the guard (1 would be an engine error)
    assert done.stderr.startswith("refused: "), done.stderr
    assert "OUTFILE" in done.stderr.upper() and done.stdout == ""
    assert not target.exists(), "cem sql wrote a file"

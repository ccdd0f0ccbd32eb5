"""`cem sql` and `cem report` while another process has the embedded warehouse open (a running worker does): one
line that names the process and what to do, exit code 1, and no engine noise; once it is gone, both work."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from cem.settings import Settings
from devtools.harness import run_cem
from sinks.clickhouse import connect, migrate

HOLDER = """
import sys, time
from chdb import session
held = session.Session(sys.argv[1])
held.query("SELECT 1")
print("open", flush=True)
sys.stdin.read()
"""


def test_a_held_warehouse_is_refused_in_one_line_and_freed_afterwards(tmp_path: Path) -> None:
    path = tmp_path / "warehouse"
    settings = Settings.from_env({}, clickhouse_url=f"chdb://{path}?database=cem")
    warehouse = connect(settings.clickhouse_url)
    migrate(warehouse)
    warehouse.close()

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        for args in (["sql", "SELECT 1"], ["report"]):
            refused = run_cem(*args, env=settings.as_env())
            assert refused.returncode == 69, refused.stderr  # a service the command needs is unavailable
            assert refused.stderr.count("\n") == 1, refused.stderr  # the engine's own error is never reached
            assert f"is in use by process {holder.pid} " in refused.stderr
    finally:
        holder.communicate("", timeout=60)
    deadline = time.monotonic() + 30
    while (path / "status").exists() and time.monotonic() < deadline:  # the engine removes it on exit
        time.sleep(0.1)

    freed = run_cem("sql", "SELECT 1 AS one", env=settings.as_env())
    assert freed.returncode == 0 and freed.stdout.split() == ["one", "---", "1", "(1", "row)"], freed
    report = run_cem("report", env=settings.as_env())
    assert report.returncode == 0 and "all events (there are none yet)" in report.stdout, report.stderr

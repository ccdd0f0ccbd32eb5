"""Migrations run from several threads of one process at once, on a ClickHouse 18.16 server: as a worker's stages
do when each opens its connection on start."""

from __future__ import annotations

import itertools
import threading

import pytest

from devtools.services import ClickHouseServer
from sinks.clickhouse import MIGRATIONS_DIR, connect, migrate

pytestmark = pytest.mark.integration

_databases = itertools.count()


def test_migrations_run_at_once_in_one_process_apply_each_once_and_leave_the_latest_views(
        clickhouse: ClickHouseServer) -> None:
    database = f"migrate_race_{next(_databases)}"
    url = clickhouse.url.rsplit("/", 1)[0] + "/" + database
    start = threading.Barrier(8)
    failures: list[BaseException] = []
    applied: list[list[str]] = []

    def run() -> None:
        warehouse = connect(url)
        try:
            start.wait()
            applied.append(migrate(warehouse))
        except BaseException as exc:  # noqa: BLE001  # every failure is the finding
            failures.append(exc)
        finally:
            warehouse.close()

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    admin = connect(clickhouse.url)
    try:
        assert failures == []
        names = sorted(path.stem for path in MIGRATIONS_DIR.glob("*.sql"))
        assert sorted(itertools.chain.from_iterable(applied)) == names  # each applied by one run only
        recorded = admin.query(f"SELECT name, count() FROM {database}.schema_migrations GROUP BY name ORDER BY name")
        assert recorded == [(name, 1) for name in names]
        # the view as the last migration that defines it made it (0008 added the text signals)
        assert admin.query(f"SELECT count() FROM {database}.interactions WHERE effort IS NOT NULL") == [(0,)]
    finally:
        admin.command(f"DROP DATABASE IF EXISTS {database}")
        admin.close()

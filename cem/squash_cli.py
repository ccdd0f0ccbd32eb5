"""`cem squash`: the squash job (sinks.squash) on CEM_CLICKHOUSE_URL, for a cron job or a Kubernetes CronJob."""

from __future__ import annotations

import time
from collections.abc import Callable

from cem.settings import Settings
from sinks.clickhouse import open_migrated
from sinks.squash import squash


def run_squash(settings: Settings, min_age_minutes: int | None = None,
               clock: Callable[[], float] = time.time) -> int:
    age = settings.squash_min_age_minutes if min_age_minutes is None else min_age_minutes
    before_version = int((clock() - age * 60) * 1000) * 1000
    warehouse = open_migrated(settings.clickhouse_url)
    try:
        result = squash(warehouse, before_version)
    finally:
        warehouse.close()
    applied = ", ".join(f"{n} {kind}" for kind, n in result.squashed.items())
    print(f"squashed overrides older than {age} min: {applied}; {result.remaining} override rows left")
    return 0

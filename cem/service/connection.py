"""A service's warehouse connection: opened on first use, dropped after a failed step, and the retry loop every
blocking step runs in (backoff, a way out when the worker stops, and one when a rebalance waits too long). The
single resolver's service and each stage of the split hold one each."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable

from cem.config import resolver_config
from cem.service.retry import RebalanceWatch, Retry
from cem.settings import Settings
from sinks.clickhouse import open_migrated
from sinks.warehouse import Warehouse


class WarehouseClient:
    """Subclasses say what a failed attempt drops (`_failed`); the connection is theirs to use in `retry.run`."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 open_warehouse: Callable[[], Warehouse] | None = None, stopping: threading.Event | None = None,
                 rebalance_pending: Callable[[], bool] = lambda: False,
                 on_stuck: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.config = resolver_config(settings)
        self.clock = clock
        self.open_warehouse = open_warehouse or functools.partial(
            open_migrated, settings.clickhouse_url, settings.clickhouse_cluster)
        self.stopping = stopping if stopping is not None else threading.Event()
        self.warehouse: Warehouse | None = None
        self.lock = threading.Lock()  # one connection, shared by the tasks of a worker that use this service
        self.retry = Retry(self.stopping, settings.sink_retry_max_seconds, self._failed,
                           RebalanceWatch(rebalance_pending, on_stuck))

    def _failed(self, exc: Exception) -> None:
        raise NotImplementedError

    def _ensure_warehouse(self) -> Warehouse:
        if self.warehouse is None:
            self.warehouse = self.open_warehouse()
        return self.warehouse

    def close(self) -> None:
        """Closes the warehouse connection; the next call opens another (the embedded engine serves one data
        directory per process until every connection to it is closed)."""
        if self.warehouse is not None:
            with contextlib.suppress(Exception):
                self.warehouse.close()
            self.warehouse = None

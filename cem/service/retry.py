"""Retrying a blocking step until it succeeds: exponential backoff, a way out when the worker stops, and one when
a rebalance has waited on the failing step for too long."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

log = logging.getLogger("cem.worker")
T = TypeVar("T")
FIRST_DELAY_SECONDS = 0.2
# A resolver stuck on a failing warehouse while the consumer group waits for it to give up its partitions gives up
# after this long, well inside Faust's broker_rebalance_timeout (60 s). Otherwise the group would drop it after the
# timeout, hand the resolver partition to another worker, and the stuck one, still holding its batch, would write
# it too once ClickHouse is back: a zombie writer.
REBALANCE_GIVE_UP_SECONDS = 20.0


class Stopping(Exception):
    """Raised inside a retry loop once the worker is stopping: give up the batch, do not acknowledge it."""


@dataclass
class RebalanceWatch:
    """Calls `on_stuck` once a rebalance has waited longer than `give_up_seconds` on a step that keeps failing.
    `on_stuck` is expected not to return (the worker exits: the crash path, which is proven safe); if it does,
    the retries go on."""

    pending: Callable[[], bool] = lambda: False
    on_stuck: Callable[[], None] = lambda: None
    give_up_seconds: float = REBALANCE_GIVE_UP_SECONDS
    monotonic: Callable[[], float] = time.monotonic
    stuck_since: float | None = None

    def failed(self) -> None:
        if not self.pending():
            self.stuck_since = None
            return
        now = self.monotonic()
        if self.stuck_since is None:
            self.stuck_since = now
        elif now - self.stuck_since > self.give_up_seconds:
            log.error("a rebalance has waited %.0f s for a batch ClickHouse keeps failing; giving it up so that no "
                      "later write can race the worker taking over", now - self.stuck_since)
            self.on_stuck()

    def succeeded(self) -> None:
        self.stuck_since = None


@dataclass
class Retry:
    """`run(attempt)` calls `attempt` until it returns. After each failure: `on_failure(exc)`, the rebalance
    watch, then a wait that doubles up to `max_delay_seconds`; `Stopping` (from the failure) once `stopping` is
    set."""

    stopping: threading.Event
    max_delay_seconds: float
    on_failure: Callable[[Exception], None] = lambda exc: None
    watch: RebalanceWatch = field(default_factory=RebalanceWatch)

    def run(self, attempt: Callable[[], T]) -> T:
        delay = min(FIRST_DELAY_SECONDS, self.max_delay_seconds)
        while True:
            try:
                result = attempt()
            except Stopping:
                raise
            except Exception as exc:
                self.on_failure(exc)
                self.watch.failed()
                if self.stopping.wait(delay):
                    raise Stopping() from exc
                delay = min(delay * 2, self.max_delay_seconds)
                continue
            self.watch.succeeded()
            return result

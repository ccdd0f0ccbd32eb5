"""Running one batch of a stage so that nothing is acknowledged before it is done.

Faust acknowledges a `take_events` batch when the agent asks for the next one, when the agent raises, and when
the agent is cancelled (the generator's `finally`). So a stage must never raise, and must never be cancelled
half-way: `BatchRunner.run` retries a failing batch with backoff until it succeeds, and when the worker stops
while a batch is unfinished it waits a grace period for it, then exits the process without acknowledging it.
The next owner of the partition replays the batch; every effect downstream is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from cem import metrics
from cem.service.retry import Stopping as Stopping  # raised by the service's retry loops too

log = logging.getLogger("cem.worker")

# Exit code of a worker that stopped (or gave up) with a batch it could not finish: nothing of that batch was
# acknowledged, so whoever takes its partitions processes it again.
EXIT_UNFINISHED_BATCH = 75
T = TypeVar("T")
STOP_POLL_SECONDS = 0.25
# After the grace period, the time a clean shutdown may still take (commit, leave the group) before exiting.
STOP_DEADLINE_MARGIN_SECONDS = 15.0


@dataclass
class BatchRunner:
    stage: str
    stopping: threading.Event
    grace_seconds: float
    retry_max_seconds: float
    exit: Callable[[int], None] = os._exit
    on_failure: Callable[[Exception], None] = field(default=lambda exc: None)

    async def run(self, handle: Callable[[T], Awaitable[None]], batch: T) -> None:
        """Run `handle(batch)` until it succeeds. Returns only once it did; never raises anything but
        cancellation, and lets a cancellation through only when the batch finished within the grace period."""
        task = asyncio.ensure_future(self._until_done(lambda: handle(batch)))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=STOP_POLL_SECONDS)  # never cancels the batch itself
                if self.stopping.is_set() and not task.done():
                    await asyncio.wait({task}, timeout=self.grace_seconds)
                    if not task.done():
                        raise Stopping()
            task.result()
        except asyncio.CancelledError:
            self.stopping.set()
            await asyncio.wait({task}, timeout=self.grace_seconds)
            if not task.done() or task.cancelled() or task.exception() is not None:
                self._abandon()
            raise
        except Stopping:  # a retry loop gave the batch up because the worker is stopping
            self._abandon()
            raise

    def _abandon(self) -> None:
        log.error("%s: stopping with a batch unfinished; exiting (code %d) without acknowledging it, the next "
                  "owner of its partition replays it", self.stage, EXIT_UNFINISHED_BATCH)
        self.exit(EXIT_UNFINISHED_BATCH)

    async def _until_done(self, work: Callable[[], Awaitable[None]]) -> None:
        delay = 0.2
        while True:
            try:
                await work()
                return
            except Stopping:
                raise
            except Exception as exc:
                if self.stopping.is_set():
                    raise Stopping() from exc
                metrics.STAGE_FAILURES.labels(self.stage, type(exc).__name__).inc()
                log.warning("%s: batch failed, retrying in %.1f s: %s: %s", self.stage, delay,
                            type(exc).__name__, str(exc)[:300])
                self.on_failure(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_seconds)


def request_stop(stopping: threading.Event, deadline_seconds: float,
                 exit: Callable[[int], None] = os._exit) -> threading.Thread:
    """A stop was asked for (SIGTERM): retry loops give their batch up from now on, and whatever still runs after
    `deadline_seconds` (a batch stuck in a call that never returns, a shutdown step that hangs) is ended by
    exiting without acknowledging anything more."""
    stopping.set()

    def end() -> None:
        time.sleep(deadline_seconds)
        log.error("still running %.0f s after the stop was asked for; exiting (code %d)", deadline_seconds,
                  EXIT_UNFINISHED_BATCH)
        logging.shutdown()
        exit(EXIT_UNFINISHED_BATCH)

    timer = threading.Thread(target=end, name="stop-deadline", daemon=True)
    timer.start()
    return timer

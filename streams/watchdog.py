"""Event-loop watchdog: a worker whose asyncio loop stops turning exits, so its partitions move to another worker.

Why: Faust runs the Kafka consumer in its own thread, with its own event loop, so its heartbeats keep the worker in
the consumer group even when the worker's main loop is stuck (a deadlock in a library, an endless loop in a
handler). Such a worker keeps its partitions forever, answers neither /status nor /metrics and uses no CPU.

How: a cheap callback on the loop stamps a monotonic time every `interval` seconds; a daemon thread compares the
stamp with the clock. When the loop has not turned for `timeout` seconds, the thread calls `on_stall` with a
report holding the stack of every thread. In the worker that writes the report to stderr and exits the process
with EXIT_EVENT_LOOP_STALLED (docs/operations.md). Blocking work the worker hands to executor threads (the
resolver's ClickHouse calls) does not trip it: only the loop itself being stuck does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cem.watchdog")

# The process exit code of a worker the watchdog stopped (EX_SOFTWARE of sysexits.h).
EXIT_EVENT_LOOP_STALLED = 70

StallHandler = Callable[[float, str], None]  # (seconds the loop has not turned, report with every thread's stack)


def thread_stacks(loop_thread_id: int | None = None) -> str:
    """The current stack of every other thread of the process, the event loop's thread marked. Lock-free enough to
    run while another thread is stuck: sys._current_frames() and formatting only need the GIL."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    sections = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        mark = " (the event loop)" if ident == loop_thread_id else ""
        stack = "".join(traceback.format_stack(frame))
        sections.append(f"Thread {names.get(ident, '?')} [{ident}]{mark}, most recent call last:\n{stack}")
    return "\n".join(sections)


def exit_process(stalled_for: float, report: str) -> None:
    """The worker's stall action: write the report straight to the stderr file descriptor (not through logging,
    whose locks the stuck thread may hold) and exit at once; the consumer group then moves the partitions."""
    header = (f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] [{os.getpid()}] [CRITICAL] cem.watchdog: {report}\n"
              f"cem.watchdog: exiting with code {EXIT_EVENT_LOOP_STALLED} after the event loop stalled for "
              f"{stalled_for:.0f} s\n")
    try:
        os.write(2, header.encode("utf-8", "replace"))
    finally:
        os._exit(EXIT_EVENT_LOOP_STALLED)


class LoopWatchdog:
    """Watches one asyncio loop from a daemon thread. `timeout` <= 0 disables it."""

    def __init__(self, timeout: float, on_stall: StallHandler = exit_process,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.on_stall = on_stall
        self.clock = clock
        self.interval = max(0.01, min(1.0, timeout / 5))
        self.fired = False
        self._last_turn = clock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Call from the loop's own thread (an @app.task). Idempotent."""
        if self.timeout <= 0 or self._thread is not None:
            return
        self._loop = loop
        self._loop_thread_id = threading.get_ident()
        self._last_turn = self.clock()
        loop.call_soon(self._turn)
        self._thread = threading.Thread(target=self._watch, name="cem-watchdog", daemon=True)
        self._thread.start()
        log.info("watching the event loop: the worker exits (code %d) if it does not turn for %g s",
                 EXIT_EVENT_LOOP_STALLED, self.timeout)

    def stop(self) -> None:
        self._stopped.set()

    def _turn(self) -> None:
        self._last_turn = self.clock()
        if not self._stopped.is_set() and self._loop is not None:
            self._loop.call_later(self.interval, self._turn)

    def _watch(self) -> None:
        loop = self._loop
        assert loop is not None
        while not self._stopped.wait(self.interval):
            if loop.is_closed():
                return
            if not loop.is_running():  # between two run_until_complete() of a shutdown: nothing to judge
                self._last_turn = self.clock()
                continue
            stalled_for = self.clock() - self._last_turn
            if stalled_for > self.timeout:
                self.fired = True
                self.on_stall(stalled_for, f"the event loop has not turned for {stalled_for:.1f} s "
                                           f"(CEM_WATCHDOG_SECONDS={self.timeout:g}); stacks of all threads:\n"
                                           + thread_stacks(self._loop_thread_id))
                return


def watch_event_loop(app: Any, timeout: float, on_stall: StallHandler = exit_process) -> LoopWatchdog:
    """Start a LoopWatchdog on the app's loop once the Faust app has started (an app task)."""
    watchdog = LoopWatchdog(timeout, on_stall)

    @app.task
    async def start_watchdog() -> None:
        watchdog.start(asyncio.get_running_loop())

    return watchdog

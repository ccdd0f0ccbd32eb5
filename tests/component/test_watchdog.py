"""The event-loop watchdog on a real asyncio loop running in a thread; the exit action is replaced by a callback."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.watchdog import EXIT_EVENT_LOOP_STALLED, LoopWatchdog, thread_stacks

REPO_ROOT = Path(__file__).resolve().parents[2]


class LoopThread:
    """An asyncio loop in its own thread, as the worker's main loop, that the test can block or hand work to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="loop-under-test", daemon=True)
        self.thread.start()

    def run(self, fn: Callable[[], object]) -> None:
        """Schedule a plain callback on the loop (it may block the loop)."""
        self.loop.call_soon_threadsafe(fn)

    def submit(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Stalls:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []
        self.event = threading.Event()

    def __call__(self, stalled_for: float, report: str) -> None:
        self.calls.append((stalled_for, report))
        self.event.set()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


def started(loop_thread: LoopThread, timeout: float, stalls: Stalls) -> LoopWatchdog:
    watchdog = LoopWatchdog(timeout, on_stall=stalls)
    # start() runs on the loop's thread, as the worker's app task does.
    loop_thread.submit(_start(watchdog, loop_thread.loop)).result(5)  # type: ignore[attr-defined]
    return watchdog


async def _start(watchdog: LoopWatchdog, loop: asyncio.AbstractEventLoop) -> None:
    watchdog.start(loop)


def blocked_in_a_sleep_loop(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("timeout", [0.3, 0.8])
def test_a_blocked_loop_fires_on_stall_once_with_the_stack_of_the_blocked_call(loop_thread: LoopThread,
                                                                               timeout: float) -> None:
    stalls = Stalls()
    watchdog = started(loop_thread, timeout, stalls)
    loop_thread.run(lambda: blocked_in_a_sleep_loop(timeout * 6))
    assert stalls.event.wait(timeout * 5), "the watchdog did not notice the blocked loop"
    time.sleep(timeout * 2)
    assert len(stalls.calls) == 1 and watchdog.fired
    stalled_for, report = stalls.calls[0]
    assert stalled_for > timeout
    loop_section = next(s for s in report.split("\nThread ") if "(the event loop)" in s)
    assert "loop-under-test" in loop_section
    assert "blocked_in_a_sleep_loop" in loop_section  # where the loop is stuck
    assert "time.sleep" in loop_section


def test_a_loop_that_keeps_turning_never_fires(loop_thread: LoopThread) -> None:
    stalls = Stalls()
    started(loop_thread, 1.0, stalls)

    async def busy_but_yielding() -> None:
        for _ in range(60):
            blocked_in_a_sleep_loop(0.05)  # short blocking steps, far below the timeout
            await asyncio.sleep(0)

    loop_thread.submit(busy_but_yielding()).result(10)  # type: ignore[attr-defined]
    assert not stalls.event.wait(1.5)


def test_blocking_work_in_an_executor_thread_does_not_fire(loop_thread: LoopThread) -> None:
    """The resolver's ClickHouse calls block a worker thread for a long time, never the loop."""
    stalls = Stalls()
    started(loop_thread, 0.5, stalls)

    async def long_executor_call() -> None:
        await asyncio.get_running_loop().run_in_executor(None, blocked_in_a_sleep_loop, 3.0)

    loop_thread.submit(long_executor_call()).result(10)  # type: ignore[attr-defined]
    assert not stalls.calls


def test_a_block_shorter_than_the_timeout_does_not_fire(loop_thread: LoopThread) -> None:
    stalls = Stalls()
    started(loop_thread, 1.5, stalls)
    loop_thread.run(lambda: blocked_in_a_sleep_loop(0.6))
    assert not stalls.event.wait(2.5)


def test_zero_disables_it(loop_thread: LoopThread) -> None:
    stalls = Stalls()
    watchdog = started(loop_thread, 0, stalls)
    loop_thread.run(lambda: blocked_in_a_sleep_loop(1.0))
    assert not stalls.event.wait(1.5)
    assert watchdog._thread is None


def test_a_closed_loop_is_not_a_stall() -> None:
    stalls = Stalls()
    lt = LoopThread()
    started(lt, 0.3, stalls)
    lt.close()
    assert not stalls.event.wait(1.0)


def waiting_helper(release: threading.Event) -> None:
    release.wait()


def test_thread_stacks_names_every_other_thread() -> None:
    release = threading.Event()
    helper = threading.Thread(target=waiting_helper, args=(release,), name="waiting-helper", daemon=True)
    helper.start()
    try:
        report = thread_stacks(helper.ident)
    finally:
        release.set()
    section = next(s for s in report.split("\nThread ") if "waiting-helper" in s)
    assert "(the event loop)" in section and "in waiting_helper" in section
    assert "test_thread_stacks_names_every_other_thread" not in report  # the reporting thread itself is left out


STALLING_PROCESS = """
import asyncio, time
from streams.watchdog import LoopWatchdog

def stuck_in_a_library_lock():
    while True:
        time.sleep(0.1)

async def main():
    LoopWatchdog(0.5).start(asyncio.get_running_loop())
    await asyncio.sleep(0.2)
    stuck_in_a_library_lock()

asyncio.run(main())
"""


def test_the_default_action_writes_the_stacks_to_stderr_and_exits_70(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", STALLING_PROCESS], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={"PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == EXIT_EVENT_LOOP_STALLED, done.stderr
    assert "[CRITICAL] cem.watchdog: the event loop has not turned for" in done.stderr
    loop_section = next(s for s in done.stderr.split("\nThread ") if "(the event loop)" in s)
    assert "stuck_in_a_library_lock" in loop_section
    assert f"exiting with code {EXIT_EVENT_LOOP_STALLED}" in done.stderr

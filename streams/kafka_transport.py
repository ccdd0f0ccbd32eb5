"""Faust's Kafka transport with a cheaper hand-over of each fetched record.

For every record it fetched, Faust's consumer runs the handler that puts the record on its agents' queues inside
`wait_first(handler, flow suspended)`: four tasks (the handler, and waits on a flow suspension, a stop and a crash),
a wait for the first of them, and three cancellations. That is several turns of the event loop per record, most of
the Faust time a record costs here, for a handler that almost never waits: it only waits when an agent's queue is
full or paused.

`EagerConsumer` runs the handler at once, up to its first wait. When it finishes there (the common case) nothing is
scheduled at all. When it does wait, the rest of it becomes a task raced against the flow's suspension exactly as
Faust does, so a rebalance still cancels a handler stuck on a full queue. Records, their order and their offsets are
the same either way.

Two holes around rebalances are closed here too, each of which lost records in the fault suite: a partition with no
committed offset is sought back to its first offset (`EagerConsumer.perform_seek`), and the records Faust skips after
a rebalance stay out of the next commit (`EagerConsumer.ack`). Both are read again, and only the copy read again may
move the committed offset.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, ClassVar

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import ack_lock
from mode.services import WaitResults
from mode.utils.futures import notify


def step(coroutine: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """Runs `coroutine` up to its first wait: (True, its result) when it finished, else (False, what it waits on:
    a future, or None for a bare yield to the loop). Raises what it raised."""
    try:
        waiting_on = coroutine.send(None)
    except StopIteration as finished:
        return True, finished.value
    return False, waiting_on


async def resume(coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """Carries on a `coroutine` that `step` left waiting on `waiting_on`, as a task of its own would have: it is
    woken when that future is done, and a cancellation of this task is passed on to it."""
    task = asyncio.current_task()
    cancellations = task.cancelling() if task is not None else 0
    while True:
        if waiting_on is not None and not asyncio.isfuture(waiting_on):
            coroutine.close()
            raise RuntimeError(f"a coroutine of the consumer's handler yielded {waiting_on!r}")
        try:
            if waiting_on is None:
                await asyncio.sleep(0)
            else:
                await _settled(waiting_on)
        except asyncio.CancelledError as cancelled:
            if task is not None and task.cancelling() > cancellations:  # this task was cancelled: so is the
                cancellations = task.cancelling()                      # coroutine, where it waits
                try:
                    waiting_on = coroutine.throw(cancelled)
                except StopIteration as finished:
                    return finished.value
                continue
            # Only the future it waited on was cancelled: the coroutine finds out when it reads the future's result.
        except Exception:  # noqa: S110  # the future failed: the coroutine reads that from it, as it would have
            pass
        done, value = step(coroutine)
        if done:
            return value
        waiting_on = value


@types.coroutine
def _settled(future: asyncio.Future[Any]) -> Generator[Any, None, None]:
    """Waits until `future` is done without reading its result (the coroutine that waits on it reads it)."""
    if not future.done():
        future._asyncio_future_blocking = True  # what `await future` sets before it hands the future to the task
        yield future
    return None


class EagerConsumer(faust_aiokafka.Consumer):  # type: ignore[misc]  # faust's classes are untyped
    """Faust's aiokafka consumer, handing each fetched record over without a task when the handler does not wait."""

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        if len(coros) != 2 or timeout is not None or not asyncio.iscoroutine(coros[0]) or self._flow_held():
            return await super().wait_first(*coros, timeout=timeout)
        handler, suspended = coros
        try:
            done, value = step(handler)
        except BaseException:
            _discard(suspended)
            raise
        if done:
            _discard(suspended)
            return WaitResults([handler], [value], False)
        # It waits (a full or paused queue): from here on as Faust does it, so a suspension of the flow ends it.
        return await super().wait_first(resume(handler, value), suspended)

    def _flow_held(self) -> bool:
        return bool(self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set())

    async def perform_seek(self) -> None:
        """Seeks every assigned partition to its committed offset, and one with none to its first offset.

        The Kafka client seeks only partitions whose committed offset is above 0. Any other keeps the position its
        fetcher had reached, and after a rebalance that kept the partition here that is past records fetched in
        the earlier generation, which Faust skips: they would never be read. From the first offset, as the
        consumer's offset reset says, every record is read at least once."""
        await super().perform_seek()
        unsought = [tp for tp in self.assignment() if not self._committed_offset.get(tp)]
        if unsought:
            for tp, first in (await self.earliest_offsets(*unsought)).items():
                await self.seek(tp, first)

    def ack(self, message: Any) -> bool:
        """Records an acknowledged offset for the next commit, unless the record was read before a rebalance.

        Faust's stream acknowledges the records it skips after a rebalance (read in an earlier generation, or
        while the flow is suspended) without handing them on. Their partitions are sought to the committed offset
        at the end of every rebalance and read again, so the copy read again is the one that counts. But Faust
        commits the first run of acknowledged offsets, and with no committed offset yet it does not check where
        that run starts: a skipped record acknowledged while the copy read again is still being processed would
        let the commit pass it, and a crash or the next rebalance would then lose it."""
        if message.generation_id != self.app.consumer_generation_id or not self.app.flow_control.is_active():
            with ack_lock:
                message.acked = True
                self._unacked_messages.discard(message)  # nothing waits for it before a rebalance
            notify(self._waiting_for_ack)
            return False
        return bool(super().ack(message))


def _discard(waitable: Any) -> None:
    if asyncio.iscoroutine(waitable):
        waitable.close()  # never started: closing it keeps Python from warning that it was never awaited


class Transport(faust_aiokafka.Transport):  # type: ignore[misc]
    Consumer: ClassVar[type[Any]] = EagerConsumer


class EagerApp(faust.App):  # type: ignore[misc]
    """A Faust app whose consumer is `EagerConsumer` (the broker URL must be Kafka's)."""

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)

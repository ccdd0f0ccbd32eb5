"""The consumer hands each fetched record to its handler at once: a handler that does not wait runs to the end
without a task; one that waits goes on as a task would, and a suspension of the flow still ends it."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from faust.types import TP, Message

from streams.kafka_transport import EagerApp, EagerConsumer, resume, step


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def consumer() -> EagerConsumer:
    app = EagerApp("eager-test", broker="kafka://127.0.0.1:1")  # never connects: no service is started
    assert isinstance(app.consumer, EagerConsumer)
    return app.consumer


async def put_and_report(queue: asyncio.Queue[int], item: int, log: list[str]) -> str:
    try:
        await queue.put(item)
    except asyncio.CancelledError:
        log.append("cancelled")
        raise
    log.append(f"put {item}")
    return f"put {item}"


def putting_into_a_full_queue() -> tuple[asyncio.Queue[int], list[str], Any]:
    """A coroutine about to put 2 on a queue that holds 1 and has room for one: it will wait."""
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(1)
    log: list[str] = []
    return queue, log, put_and_report(queue, 2, log)


def test_a_coroutine_that_never_waits_is_run_to_its_end_in_one_step() -> None:
    async def scenario() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        log: list[str] = []
        assert step(put_and_report(queue, 7, log)) == (True, "put 7")
        assert queue.get_nowait() == 7 and log == ["put 7"]
    run(scenario())


def test_a_waiting_coroutine_carried_on_by_resume_finishes_once_the_queue_has_room() -> None:
    async def scenario() -> None:
        queue, log, coroutine = putting_into_a_full_queue()
        done, waiting_on = step(coroutine)
        assert not done
        task = asyncio.ensure_future(resume(coroutine, waiting_on))
        await asyncio.sleep(0)
        assert log == []  # still waiting for room
        assert queue.get_nowait() == 1
        assert await task == "put 2"
        assert queue.get_nowait() == 2 and log == ["put 2"]
    run(scenario())


def test_cancelling_the_task_that_carries_a_coroutine_on_cancels_the_coroutine_where_it_waits() -> None:
    async def scenario() -> None:
        queue, log, coroutine = putting_into_a_full_queue()
        task = asyncio.ensure_future(resume(coroutine, step(coroutine)[1]))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert log == ["cancelled"]
        assert queue.get_nowait() == 1
        queue.put_nowait(3)  # the cancelled put left no waiter behind: the next put is the next item
        assert queue.get_nowait() == 3 and queue.empty()
    run(scenario())


def test_a_coroutine_reads_the_failure_or_cancellation_of_the_future_it_waited_on() -> None:
    async def read(future: asyncio.Future[int]) -> str:
        try:
            return str(await future)
        except asyncio.CancelledError:
            return "its future was cancelled"
        except ValueError as exc:
            return f"failed: {exc}"

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        outcomes = []
        for settle in (lambda f: f.set_result(4), lambda f: f.set_exception(ValueError("bad")), lambda f: f.cancel()):
            future: asyncio.Future[int] = loop.create_future()
            coroutine = read(future)
            task = asyncio.ensure_future(resume(coroutine, step(coroutine)[1]))
            await asyncio.sleep(0)
            settle(future)
            outcomes.append(await task)
        assert outcomes == ["4", "failed: bad", "its future was cancelled"]
    run(scenario())


def test_a_coroutine_that_yields_to_the_loop_is_carried_on_to_its_end() -> None:
    async def turns(n: int) -> int:
        for _ in range(n):
            await asyncio.sleep(0)
        return n

    async def scenario() -> None:
        coroutine = turns(3)
        done, waiting_on = step(coroutine)
        assert (done, waiting_on) == (False, None)
        assert await resume(coroutine, waiting_on) == 3
    run(scenario())


def test_the_consumer_runs_a_handler_that_does_not_wait_before_anything_else_gets_the_loop() -> None:
    async def scenario() -> None:
        eager = consumer()
        log: list[str] = []
        other = asyncio.ensure_future(asyncio.sleep(0, result="other"))
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=2)
        handler = put_and_report(queue, 5, log)
        result = await eager.wait_first(handler, eager.suspend_flow.wait())
        assert (result.done, result.results, result.stopped) == ([handler], ["put 5"], False)
        assert not other.done()  # the handler never gave the loop up
        await other
    run(scenario())


async def handing_over_to_a_full_queue(eager: EagerConsumer) -> tuple[asyncio.Future[Any], asyncio.Queue[int],
                                                                           list[str]]:
    """The consumer handing the record 2 to a queue already holding 1, with room for one: it waits."""
    queue, log, handler = putting_into_a_full_queue()
    waiting = asyncio.ensure_future(eager.wait_first(handler, eager.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    return waiting, queue, log


def test_a_handler_waiting_on_a_full_queue_is_cancelled_when_the_flow_is_suspended() -> None:
    async def scenario() -> None:
        eager = consumer()
        waiting, queue, log = await handing_over_to_a_full_queue(eager)
        eager.suspend_flow.set()  # what a rebalance does
        result = await waiting
        assert result.done and result.done[0] is not None and result.stopped is False
        await asyncio.sleep(0)
        assert log == ["cancelled"]
        assert queue.get_nowait() == 1 and queue.empty()
    run(scenario())


def test_a_handler_waiting_on_a_full_queue_finishes_once_the_stream_takes_a_record() -> None:
    async def scenario() -> None:
        waiting, queue, log = await handing_over_to_a_full_queue(consumer())
        assert queue.get_nowait() == 1
        result = await waiting
        assert result.results == ["put 2"] and log == ["put 2"] and queue.get_nowait() == 2
    run(scenario())


def test_while_the_flow_is_suspended_the_consumer_waits_as_faust_does() -> None:
    async def scenario() -> None:
        eager = consumer()
        eager.suspend_flow.set()
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        log: list[str] = []
        result = await eager.wait_first(put_and_report(queue, 9, log), eager.suspend_flow.wait())
        # Faust's own wait: the handler and the suspension both run, and the suspension is among those that ended.
        assert True in result.results
        await asyncio.sleep(0)
    run(scenario())


def test_a_handler_that_raises_at_once_raises_out_of_the_wait() -> None:
    async def broken() -> None:
        raise ValueError("no channel")

    async def scenario() -> None:
        eager = consumer()
        with pytest.raises(ValueError, match="no channel"):
            await eager.wait_first(broken(), eager.suspend_flow.wait())
    run(scenario())


def test_a_coroutine_that_swallows_its_cancellation_carries_on_to_its_next_wait() -> None:
    async def stubborn(first: asyncio.Future[int], second: asyncio.Future[int], log: list[str]) -> str:
        try:
            await first
        except asyncio.CancelledError:
            log.append("told to stop, carried on")
        try:
            await second
        except asyncio.CancelledError:
            return "its second future was cancelled"
        return "second done"

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        log: list[str] = []
        coroutine = stubborn(first, second, log)
        task = asyncio.ensure_future(resume(coroutine, step(coroutine)[1]))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        assert log == ["told to stop, carried on"] and not task.done()
        second.cancel()  # someone else cancels the future it waits on next
        assert await task == "its second future was cancelled"
    run(scenario())


def test_a_coroutine_yielding_what_no_task_could_wait_on_is_closed_with_an_error() -> None:
    class Odd:
        def __await__(self) -> Any:
            yield "not a future"

    async def odd() -> None:
        await Odd()

    async def scenario() -> None:
        coroutine = odd()
        done, waiting_on = step(coroutine)
        assert (done, waiting_on) == (False, "not a future")
        with pytest.raises(RuntimeError, match="not a future"):
            await resume(coroutine, waiting_on)
        assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED
    run(scenario())


def acking_consumer(generation: int) -> EagerConsumer:
    """A consumer whose app is in consumer generation `generation`, its flow running, acknowledging topic t."""
    eager = consumer()
    eager.app.consumer_generation_id = generation
    eager.app.flow_control.resume()
    eager.app.topics._acking_topics.add("t")  # as a stream that acknowledges t registers it
    return eager


def record(offset: int, generation: int) -> Message:
    return Message("t", 0, offset, 0.0, 0, None, None, b"v", None, tp=TP("t", 0), generation_id=generation)


def test_a_record_of_this_generation_is_committed_once_acknowledged() -> None:
    eager = acking_consumer(generation=2)
    assert eager.ack(record(0, generation=2)) is True
    assert eager._filter_committable_offsets([TP("t", 0)]) == {TP("t", 0): 1}


def test_a_record_read_before_the_rebalance_acknowledged_after_it_lets_no_commit_pass_its_copy_read_again() -> None:
    """Offset 0 read in generation 1 is skipped and acknowledged by the stream in generation 2, while its copy
    read again is still processed: nothing may be committed until that copy is acknowledged."""
    eager = acking_consumer(generation=2)
    stale, again = record(0, generation=1), record(0, generation=2)
    eager._unacked_messages.add(stale)
    assert eager.ack(stale) is False
    assert stale.acked and stale not in eager._unacked_messages
    assert eager._filter_committable_offsets([TP("t", 0)]) == {}
    assert eager.ack(again) is True
    assert eager._filter_committable_offsets([TP("t", 0)]) == {TP("t", 0): 1}


def test_a_record_acknowledged_while_the_flow_is_suspended_is_read_again_not_committed() -> None:
    eager = acking_consumer(generation=2)
    eager.app.flow_control.suspend()  # a rebalance began: every partition is sought to its committed offset after
    assert eager.ack(record(0, generation=2)) is False
    assert eager._filter_committable_offsets([TP("t", 0)]) == {}


def test_partitions_without_a_committed_offset_are_sought_to_their_first_offset() -> None:
    """The Kafka client seeks only partitions committed above 0; the others keep their fetch position, which
    after a rebalance may be past records that were never handed on. They go back to their first offset."""
    eager = consumer()
    committed_at_5, never_committed, committed_at_0 = TP("t", 0), TP("t", 1), TP("t", 2)
    sought: dict[TP, int] = {}

    async def seek_to_committed() -> dict[TP, int | None]:
        return {committed_at_5: 5, never_committed: None, committed_at_0: 0}

    async def earliest_offsets(*partitions: TP) -> dict[TP, int]:
        return {tp: {never_committed: 0, committed_at_0: 3}[tp] for tp in partitions}

    async def client_seek(tp: TP, offset: int) -> None:
        sought[tp] = offset

    eager.seek_to_committed = seek_to_committed  # the Kafka client's side of the consumer, faked
    eager.earliest_offsets = earliest_offsets
    eager._seek = client_seek
    eager.assignment = lambda: {committed_at_5, never_committed, committed_at_0}
    run(eager.perform_seek())
    assert sought == {never_committed: 0, committed_at_0: 3}
    assert eager._read_offset[never_committed] is None and eager._read_offset[committed_at_0] == 3
    assert eager._read_offset[committed_at_5] == 5

"""The agents alone, with Faust's own test context (no broker): each hands its batches to its stage, and a
failing batch is retried until it is done instead of being acknowledged."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import faust
import faust.app  # noqa: F401  # imported now: croniter, under it, runs `file` at import, refused in a test
import pytest

from cem.settings import Settings
from streams import agents
from streams.batches import BatchRunner


class RecordingStage:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.batches: list[list[bytes]] = []

    async def handle(self, events: list[Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker away")
        self.batches.append([event.value for event in events])


def app_with(stage: RecordingStage) -> faust.App:
    app = faust.App("agents-test", store="memory://")  # the test context needs no broker
    ready = asyncio.Event()
    ready.set()
    app.stages = SimpleNamespace(  # type: ignore[attr-defined]
        settings=Settings(ingest_batch_max=10, ingest_batch_seconds=0.05, sink_flush_seconds=0.05),
        ingest=stage, resolve=stage, control=stage, schema_feed=SimpleNamespace(ready=ready),
        runner=lambda name: BatchRunner(name, threading.Event(), 1.0, 0.01))
    return app


@pytest.mark.parametrize("agent", [agents.ingest, agents.resolve, agents.control])
def test_an_agent_hands_every_message_to_its_stage_and_retries_a_failing_batch(agent: Any) -> None:
    stage = RecordingStage(failures=2)
    app = app_with(stage)
    registered = app.agent(app.topic("in", value_serializer="raw"), name=agent.__name__)(agent)

    async def scenario() -> None:
        async with registered.test_context() as tested:
            for value in (b"a", b"b", b"c"):
                await tested.put(value)
            for _ in range(100):
                if sum(len(batch) for batch in stage.batches) == 3:
                    break
                await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert [value for batch in stage.batches for value in batch] == [b"a", b"b", b"c"]
    assert stage.failures == 0

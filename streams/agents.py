"""The worker's three Faust agents: thin loops that hand each batch to its stage through a BatchRunner, which
retries it until it is done and never lets it be acknowledged unfinished. Registered on their topics by
streams.app.create_app; testable alone with `app.agent(topic)(ingest).test_context()`."""

from __future__ import annotations

from typing import Any

from streams.stages import stages_of

CONTROL_BATCH_MAX = 100
CONTROL_BATCH_SECONDS = 0.5


async def ingest(stream: Any) -> None:
    """Raw channel records -> signed resolver batches and dead letters."""
    stages = stages_of(stream)
    await stages.schema_feed.ready.wait()  # writer schemas registered before a record are known when decoded
    run = stages.runner("ingest").run
    settings = stages.settings
    async for events in stream.take_events(settings.ingest_batch_max, within=settings.ingest_batch_seconds):
        await run(stages.ingest.handle, events)


async def resolve(stream: Any) -> None:
    """Resolver batches and erasure requests, in order -> the resolver and ClickHouse."""
    stages = stages_of(stream)
    run = stages.runner("resolve").run
    settings = stages.settings
    flush_messages = max(1, settings.sink_batch_max // max(1, settings.ingest_batch_max))
    async for events in stream.take_events(flush_messages, within=settings.sink_flush_seconds):
        await run(stages.resolve.handle, events)


async def control(stream: Any) -> None:
    """Signed erasure requests -> the resolver topic, behind the batches already there."""
    stages = stages_of(stream)
    run = stages.runner("control").run
    async for events in stream.take_events(CONTROL_BATCH_MAX, within=CONTROL_BATCH_SECONDS):
        await run(stages.control.handle, events)


async def alert_actions(stream: Any) -> None:
    """Operators' ack/resolve of alerts -> alert_actions in ClickHouse (idempotent by action id)."""
    stages = stages_of(stream)
    run = stages.runner("alert_actions").run
    async for events in stream.take_events(CONTROL_BATCH_MAX, within=CONTROL_BATCH_SECONDS):
        await run(stages.alert_actions.handle, events)


async def front(stream: Any) -> None:
    """Partitioned resolver: <prefix>.resolve by event id -> customer partitions, and requests to the owner. Its
    messages are acknowledged by the stage, once every event of them is routed (streams.split_front)."""
    stages = stages_of(stream)
    stage = stages.split_stages().front
    stage.stream = stream
    run = stages.runner("front").run
    settings = stages.settings
    flush_messages = max(1, settings.sink_batch_max // max(1, settings.ingest_batch_max))
    async for events in stream.noack_take(flush_messages, within=settings.sink_flush_seconds):
        await run(stage.handle, events)


async def owner(stream: Any) -> None:
    """Partitioned resolver: the identity graph's owner, alone on <prefix>.identity."""
    stages = stages_of(stream)
    run = stages.runner("owner").run
    async for events in stream.take_events(stages.settings.sink_batch_max, within=stages.settings.sink_flush_seconds):
        await run(stages.split_stages().owner.handle, events)


async def customers(stream: Any) -> None:
    """Partitioned resolver: routed events and hand-offs -> sessions, journeys and interaction rows."""
    stages = stages_of(stream)
    run = stages.runner("customers").run
    settings = stages.settings
    async for events in stream.take_events(settings.sink_batch_max, within=settings.sink_flush_seconds):
        await run(stages.split_stages().customers.handle, events)

"""The customer stage's Kafka glue across a rebalance, with fakes of its topics and the warehouse fake: a batch
taken before a revocation and stepped after it folds only what is still this worker's."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from cem.domain.customer_stage import customer_partition
from cem.domain.front import Routed
from cem.service.split_service import SplitWarehouse
from cem.settings import Settings
from schemas.internal import signature_headers
from schemas.split_wire import decode_routed, encode_routed
from sinks.fake import FakeWarehouseServer
from streams.split import KIND, ROUTED, CustomerStage
from tests.unit.test_split_front import NOW_MS, SETTINGS, FakeTopic, _events

PARTITIONS = SETTINGS.split_partitions


def _routed_message(routed: Routed, partition: int) -> Any:
    value = encode_routed([routed])
    headers = [*signature_headers(SETTINGS.signing_key, value), (KIND, ROUTED)]
    return SimpleNamespace(message=SimpleNamespace(value=value, headers=headers, partition=partition,
                                                   topic=SETTINGS.customers_topic, offset=0))


def _one_per_partition() -> list[Any]:
    """One routed event for each customer partition, addressed to a customer of that partition."""
    messages: dict[int, Any] = {}
    for event in _events(40):
        customer_id = f"c_{event.event_id}"
        messages.setdefault(customer_partition(customer_id, PARTITIONS),
                            _routed_message(Routed(event, customer_id), customer_partition(customer_id, PARTITIONS)))
    return [messages[index] for index in range(PARTITIONS)]


@pytest.mark.parametrize("assigned_again", [False, True])
def test_a_batch_stepped_after_a_revocation_folds_only_the_partitions_still_held(assigned_again: bool) -> None:
    """The batch waits for the stage's lock (a tick restoring) while partition 1 is revoked: it waits for the
    rebalance to end, then leaves partition 1's message to its next holder, unless it came back."""
    async def scenario() -> None:
        server = FakeWarehouseServer()
        warehouse = SplitWarehouse(Settings(split_partitions=PARTITIONS, sink_retry_max_seconds=0.001,
                                            state_store="memory"), "customers", clock=lambda: NOW_MS / 1000,
                                   open_warehouse=server.connect)
        topics = {"customers": FakeTopic(), "deadletter": FakeTopic()}
        stage = CustomerStage(SETTINGS, warehouse, topics, SimpleNamespace(written=0),  # type: ignore[arg-type]
                              clock=lambda: NOW_MS / 1000)
        messages = _one_per_partition()
        await stage.serial.acquire()
        handling = asyncio.ensure_future(stage.handle(messages))
        await asyncio.sleep(0)
        stage.invalidate({0, 1})
        stage.moved({0, 1}, revoked=True)
        stage.serial.release()
        await asyncio.sleep(0.01)
        assert not handling.done() and server.rows("interaction_log") == []  # the rebalance has not ended
        stage.moved({0, 1} if assigned_again else {0}, revoked=False)
        await handling
        written = sorted(row["event_id"] for row in server.rows("interaction_log"))
        held = messages if assigned_again else messages[:1]
        assert written == sorted(_event_id(message) for message in held)

    asyncio.run(scenario())


def _event_id(message: Any) -> str:
    [routed] = decode_routed(message.message.value)
    return routed.event.event_id

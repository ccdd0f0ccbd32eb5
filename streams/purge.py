"""After an erasure: delete the records the pipeline has consumed from its own topics.

Kafka cannot delete one message, but it can move a partition's start past the records before an offset
(DeleteRecords, as Kafka Streams does for its internal topics). The person's events travel in the raw topics
as producers sent them and in `<prefix>.resolve` as normalised batches, so once an erasure is applied, the
records already consumed and committed by the worker group are deleted from both. Nothing the pipeline still
needs is lost: committed means processed, and the warehouse is the state. The dead-letter topic is not purged
(no group consumes it): keep its retention short (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from cem.settings import Settings

log = logging.getLogger("cem.erasure")


def purge_plan(ends: dict[Any, int], committed: dict[Any, int], starts: dict[Any, int]) -> dict[Any, int]:
    """Partition -> the offset to delete before: what the group committed, when that is past the start."""
    return {tp: committed[tp] for tp in ends if committed.get(tp, 0) > starts.get(tp, 0)}


def caught_up(ends: dict[Any, int], committed: dict[Any, int]) -> bool:
    return all(committed.get(tp, 0) >= end for tp, end in ends.items())


async def purge_consumed(settings: Settings, topics: Sequence[str], wait_seconds: float = 60.0) -> int:
    """Wait (at most wait_seconds) until the worker group has committed every record present now in `topics`,
    then delete the committed records. Returns the number of partitions purged. Never raises: a broker without
    DeleteRecords (the demo's) logs a warning, and the records then go with the topics' retention."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

    from cem.kafka import kafka_client_options

    options = kafka_client_options(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000, **options)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                                request_timeout_ms=10_000, **options)
    try:
        await admin.start()
        await consumer.start()
        described = await admin.describe_topics(list(topics))
        partitions = [TopicPartition(d["topic"], p["partition"]) for d in described if not d["error_code"]
                      for p in d["partitions"]]
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + wait_seconds
        while True:
            offsets = await admin.list_consumer_group_offsets(settings.app_id, partitions=partitions)
            committed = {tp: o.offset for tp, o in offsets.items() if o is not None and o.offset >= 0}
            if caught_up(ends, committed) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        if not caught_up(ends, committed):
            log.warning("erasure: the worker group has not consumed every record yet; records not consumed stay "
                        "in the topics until the next erasure or their retention")
        starts = await consumer.beginning_offsets(partitions)
        plan = purge_plan(ends, committed, starts)
        if plan:
            await admin.delete_records({tp: RecordsToDelete(offset) for tp, offset in plan.items()})
        return len(plan)
    except Exception as exc:
        log.warning("erasure: consumed records could not be deleted from the topics (%s); they go with the "
                    "topics' retention", type(exc).__name__)
        return 0
    finally:
        await consumer.stop()
        await admin.close()

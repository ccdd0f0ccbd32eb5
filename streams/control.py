"""The control stage: erasure requests from `<prefix>.control` -> the resolver topic, in order with the batches.

Only holders of `CEM_SECRET_KEY` (the `cem forget` command of a data-protection officer) can write a request the
stage accepts: each is verified (signature, then schema `schemas/control.v1.avsc`) and relayed, signed again,
to the resolver's own ordered stream. Anything else becomes a dead letter with a reason. A request names the
identifier by a keyed hash, so no Kafka topic ever holds the value being erased.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from cem import metrics
from cem.domain.reasons import Reason
from schemas.internal import InternalMessageError, parse_control, signature_headers, verify
from streams.deadletters import dead_letter
from streams.ingest import source_of
from streams.status import WorkerStatus


def read_control(key: bytes, value: bytes | None, headers: Any) -> bytes:
    """The canonical relayed form of a control request, or InternalMessageError."""
    verify(key, value or b"", headers)
    try:
        message = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise InternalMessageError(Reason.INVALID_CONTROL, f"not JSON: {str(exc)[:120]}") from None
    return orjson.dumps(parse_control(message).as_dict())


class ControlStage:
    def __init__(self, settings: Any, resolve_topic: Any, deadletter_topic: Any, status: WorkerStatus | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.resolve_topic = resolve_topic
        self.deadletter_topic = deadletter_topic
        self.clock = clock
        self.key = settings.signing_key
        self.status = status or WorkerStatus()

    async def handle(self, events: list[Any]) -> None:
        deliveries = []
        reasons: list[str] = []
        for event in events:
            message = event.message
            try:
                relayed = read_control(self.key, message.value, message.headers)
            except InternalMessageError as err:
                reasons.append(err.reason)
                letter = dead_letter(source_of(message), message.value, err.reason, err.detail,
                                     int(self.clock() * 1000), self.settings.message_max_bytes)
                deliveries.append(await self.deadletter_topic.send(key=letter.key, value=letter.value,
                                                                   headers=letter.headers))
                continue
            deliveries.append(await self.resolve_topic.send(key=b"control", value=relayed,
                                                            headers=signature_headers(self.key, relayed)))
        await asyncio.gather(*deliveries)
        for reason in reasons:
            metrics.DEADLETTERED.labels(reason).inc()
        self.status.control_rejected += len(reasons)
        self.status.control_relayed += len(events) - len(reasons)

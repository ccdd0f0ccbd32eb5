"""The resolve stage: signed batches (and erasure requests) from `<prefix>.resolve` -> the resolver and ClickHouse.

Each message is verified (signature, then shape) before anything else: one that cem did not write, or that is
malformed, becomes a dead letter and the stage carries on. Events are written through the ResolverService in a
worker thread, since ClickHouse calls block; control requests are applied in stream order between batches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from cem import metrics
from cem.domain.erasure import APPLIED
from cem.domain.model import Interaction
from cem.domain.reasons import Reason
from schemas.internal import ControlRequest, InternalMessageError, decode_resolve_message, verify
from streams.deadletters import DeadLetter, dead_letter, event_dead_letter
from streams.ingest import source_of
from streams.status import WorkerStatus

# A copy of an event_id already processed whose content differs from the first copy: the first copy wins.
CONFLICT_DETAIL = "this event_id was first processed with other content, which was kept"


class ResolveStage:
    def __init__(self, settings: Any, sink: Any, deadletter_topic: Any, status: WorkerStatus | None = None,
                 clock: Callable[[], float] = time.time, after_erasure: Callable[[], None] = lambda: None,
                 outbox: Any = None, identity_out: Any = None) -> None:
        self.settings = settings
        self.sink = sink
        self.outbox = outbox  # streams.alerts.AlertOutbox: the batch's alerts to cem.alerts before its ack
        # streams.identity_feed.IdentityPublisher: the batch's identity changes to the replicas before its ack
        self.identity_out = identity_out
        self.serial = asyncio.Lock()  # batches and alert ticks write and publish one at a time, in version order
        self.after_erasure = after_erasure
        self.deadletter_topic = deadletter_topic
        self.status = status or WorkerStatus()
        self.clock = clock
        self.key = settings.signing_key

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def read(self, message: Any) -> list[Interaction] | ControlRequest | DeadLetter:
        """A message of the resolver topic, verified: events, a control request, or its dead letter."""
        try:
            verify(self.key, message.value or b"", message.headers)
            return decode_resolve_message(message.value)
        except InternalMessageError as err:
            return dead_letter(source_of(message), message.value, err.reason, err.detail, self._now_ms(),
                               self.settings.message_max_bytes)

    async def handle(self, events: list[Any]) -> None:
        """Apply one batch of resolver messages in order; raises on a failure so the whole batch is retried."""
        async with self.serial:
            try:
                await self._handle(events)
            except BaseException:
                if self.outbox is not None:
                    self.outbox.invalidate()  # the retry finds this batch's alerts written: the outbox sends them
                raise

    async def tick(self) -> None:
        """Alerts due with no event arriving (SLA deadlines as the watermark moves on): an empty batch."""
        async with self.serial:
            if not self.sink.alerts_due():
                return
            try:
                result = await asyncio.get_running_loop().run_in_executor(None, self.sink.process_and_write, [])
                if self.outbox is not None:
                    await self.outbox.publish(result.alerts)
            except BaseException:
                if self.outbox is not None:
                    self.outbox.invalidate()
                raise

    async def _handle(self, events: list[Any]) -> None:
        loop = asyncio.get_running_loop()
        pending: list[Interaction] = []
        rejected: list[DeadLetter] = []
        counts = WorkerStatus()
        for event in events:
            item = self.read(event.message)
            if isinstance(item, DeadLetter):
                rejected.append(item)
            elif isinstance(item, ControlRequest):
                await self._write(loop, pending, counts)
                pending = []
                outcome = await loop.run_in_executor(None, self.sink.apply_control, item.as_dict())
                if outcome is not None and outcome.status == APPLIED:
                    if self.identity_out is not None:
                        await self.identity_out.publish(outcome.identity)
                    self.after_erasure()
            else:
                pending.extend(item)
        await self._write(loop, pending, counts)
        await asyncio.gather(*[await self._send(letter) for letter in rejected])
        for letter in rejected:
            metrics.DEADLETTERED.labels(dict(letter.headers)["cem.reason"].decode()).inc()
        self.status.internal_rejected += len(rejected)
        self.status.resolved += counts.resolved
        self.status.written += counts.written
        self.status.warehouse_rejected += counts.warehouse_rejected
        self.status.duplicate_conflict += counts.duplicate_conflict

    async def _write(self, loop: asyncio.AbstractEventLoop, events: list[Interaction], counts: WorkerStatus) -> None:
        if not events:
            return
        result = await loop.run_in_executor(None, self.sink.process_and_write, events)
        if self.identity_out is not None:
            await self.identity_out.publish_batch(result.effects)
        if self.outbox is not None:
            await self.outbox.publish(result.alerts)
        if result.rejected:
            # Acknowledged with the batch only once on the broker; a replay refuses and dead-letters them again
            # under the same key (consumers deduplicate by key).
            now_ms = self._now_ms()
            letters = [event_dead_letter(self.settings.resolve_topic, event, Reason.WAREHOUSE_REJECTED, detail, now_ms,
                                         self.settings.message_max_bytes) for event, detail in result.rejected]
            await asyncio.gather(*[await self._send(letter) for letter in letters])
            metrics.DEADLETTERED.labels(Reason.WAREHOUSE_REJECTED).inc(len(result.rejected))
        conflicting = result.effects.conflicting
        if conflicting:
            # The same: a replay finds the first copy in the warehouse and dead-letters them again, same key. The
            # key names the content too (one event_id can collide with several contents).
            now_ms = self._now_ms()
            letters = [event_dead_letter(self.settings.resolve_topic, event, Reason.DUPLICATE_CONFLICT, CONFLICT_DETAIL,
                                         now_ms, self.settings.message_max_bytes, suffix=f"#{event.fingerprint}")
                       for event in conflicting]
            await asyncio.gather(*[await self._send(letter) for letter in letters])
            metrics.DEADLETTERED.labels(Reason.DUPLICATE_CONFLICT).inc(len(conflicting))
        counts.resolved += len(events)
        counts.written += result.written
        counts.warehouse_rejected += len(result.rejected)
        counts.duplicate_conflict += len(conflicting)

    async def _send(self, letter: DeadLetter) -> Any:
        return await self.deadletter_topic.send(key=letter.key, value=letter.value, headers=letter.headers)

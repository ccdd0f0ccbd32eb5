"""The producer of the worker's outboxes (alerts, identity versions): started on first use, acks from every
in-sync replica, idempotent unless the broker cannot do it (CEM_ALERT_IDEMPOTENT_PRODUCER, the demo's Tansu)."""

from __future__ import annotations

from typing import Any

from cem.kafka import kafka_client_options


class OutboxProducer:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._producer: Any = None

    async def get(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all",
                                        enable_idempotence=self.settings.alert_idempotent_producer, linger_ms=0,
                                        max_request_size=self.settings.producer_max_request_bytes,
                                        **kafka_client_options(self.settings))
            await producer.start()
            self._producer = producer
        return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

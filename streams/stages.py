"""The stages a worker runs and what they share: the composition root (streams.app.create_app) builds one
`Stages` and hangs it on the Faust app, where each agent finds it through its stream."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from cem.settings import Settings
from streams.alerts import AlertActionStage
from streams.batches import BatchRunner
from streams.control import ControlStage
from streams.identity_feed import IdentityFeed
from streams.ingest import IngestStage
from streams.resolve import ResolveStage
from streams.schema_feed import SchemaFeed
from streams.status import WorkerStatus


@dataclass
class Stages:
    settings: Settings
    ingest: IngestStage
    resolve: ResolveStage
    control: ControlStage
    schema_feed: SchemaFeed
    stopping: threading.Event
    status: WorkerStatus
    alert_actions: AlertActionStage
    identity_feed: IdentityFeed | None = None  # the worker's identity replica (CEM_IDENTITY_REPLICA)

    def runner(self, stage: str) -> BatchRunner:
        return BatchRunner(stage, self.stopping, self.settings.shutdown_grace_seconds,
                           self.settings.sink_retry_max_seconds)


def stages_of(stream: Any) -> Stages:
    """The stages of the app a stream belongs to (see streams.app.CemApp)."""
    stages: Stages = stream.app.stages
    return stages

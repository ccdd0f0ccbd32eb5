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
from streams.split import CustomerStage, OwnerStage
from streams.split_front import FrontStage
from streams.status import WorkerStatus


@dataclass
class SplitStages:
    """The partitioned resolver's stages (CEM_SPLIT_PARTITIONS), in place of the single resolve stage."""

    front: FrontStage
    owner: OwnerStage
    customers: CustomerStage


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
    split: SplitStages | None = None  # CEM_SPLIT_PARTITIONS

    def split_stages(self) -> SplitStages:
        if self.split is None:
            raise RuntimeError("the partitioned resolver's agents run only with CEM_SPLIT_PARTITIONS > 0")
        return self.split

    def runner(self, stage: str) -> BatchRunner:
        return BatchRunner(stage, self.stopping, self.settings.shutdown_grace_seconds,
                           self.settings.sink_retry_max_seconds)


def stages_of(stream: Any) -> Stages:
    """The stages of the app a stream belongs to (see streams.app.CemApp)."""
    stages: Stages = stream.app.stages
    return stages

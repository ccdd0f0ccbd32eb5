"""What `/status` answers: a worker's running counts since it started, one typed record for every stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class WorkerStatus:
    consumed: int = 0  # raw records whose batch is done (forwarded or dead-lettered)
    deadlettered: int = 0  # raw records dead-lettered by ingest
    resolved: int = 0  # events that reached the resolver, duplicates included
    written: int = 0  # interaction rows written to ClickHouse
    warehouse_rejected: int = 0  # events ClickHouse refused (dead-lettered)
    duplicate_conflict: int = 0  # re-sent event ids with other content (dead-lettered)
    internal_rejected: int = 0  # resolver-topic messages dead-lettered (bad signature or shape)
    control_relayed: int = 0  # erasure requests passed on to the resolver
    control_rejected: int = 0  # control-topic messages dead-lettered

    def as_json(self) -> dict[str, int]:
        return asdict(self)

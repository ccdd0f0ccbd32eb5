"""Apicurio Registry, a Confluent-Schema-Registry-compatible registry (its `/apis/ccompat/v7` API), on a free
loopback port. Its Quarkus distribution comes from Maven Central through ``deploy/registry/fetch.sh``. Karapace,
the other open-source registry with that API, is not on PyPI; Confluent's own is not on Maven Central.

With ``kafka_bootstrap`` the registry keeps its schemas in a Kafka topic (its ``kafkasql`` storage), so they
survive a restart, as a production registry's do; without, in memory."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from devtools.services.base import LOOPBACK, REPO_ROOT, Service, ServiceError, free_port

REGISTRY_FETCH_SCRIPT = REPO_ROOT / "deploy" / "registry" / "fetch.sh"
CONFLUENT_API = "/apis/ccompat/v7"


def fetch_registry(script: Path = REGISTRY_FETCH_SCRIPT) -> Path:
    """Run ``deploy/registry/fetch.sh`` (idempotent, fast when cached) and return the directory of the jar."""
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False, timeout=1800)
    if result.returncode != 0:
        raise ServiceError(f"{script} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


class SchemaRegistryServer(Service):
    name = "schema-registry"

    def __init__(self, workdir: Path, *, kafka_bootstrap: str | None = None, port: int | None = None,
                 start_timeout: float = 180.0, stop_timeout: float = 20.0) -> None:
        super().__init__(workdir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self._ports_chosen_by_us = port is None
        self.port = port if port is not None else free_port()
        self.kafka_bootstrap = kafka_bootstrap
        self.journal_topic = f"registry-journal-{uuid.uuid4().hex[:8]}"

    @property
    def url(self) -> str:
        """The base URL of the Confluent API: what CEM_SCHEMA_REGISTRY_URL is set to."""
        return f"http://{LOOPBACK}:{self.port}{CONFLUENT_API}"

    def _choose_ports(self) -> None:
        self.port = free_port()

    def _command(self) -> list[str]:
        app = fetch_registry()
        jar = next(app.glob("apicurio-registry-app-*-runner.jar"))
        options = [f"-Dquarkus.http.port={self.port}", f"-Dquarkus.http.host={LOOPBACK}",
                   "-Dquarkus.log.level=WARN", "-Dquarkus.log.category.\"io.apicurio\".level=WARN"]
        if self.kafka_bootstrap:
            options += ["-Dapicurio.storage.kind=kafkasql",
                        f"-Dapicurio.kafkasql.bootstrap.servers={self.kafka_bootstrap}",
                        f"-Dapicurio.kafkasql.topic={self.journal_topic}",
                        f"-Dapicurio.kafkasql.snapshots.topic={self.journal_topic}-snapshots",
                        f"-Dapicurio.kafkasql.events.topic={self.journal_topic}-events"]
        return ["java", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", *options, "-jar", str(jar)]

    def _wait_ready(self, deadline: float) -> None:
        last: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError as exc:
                last = exc
            time.sleep(0.25)
        raise TimeoutError(f"{self.url}/subjects did not answer 200: {last}")

    # ---- the Confluent API, for tests --------------------------------------------------------------

    def register(self, subject: str, schema: Any) -> int:
        """Register an Avro schema (a document) under `subject`; its schema id."""
        body = json.dumps({"schema": json.dumps(schema)}).encode()
        request = urllib.request.Request(f"{self.url}/subjects/{subject}/versions", data=body, method="POST",
                                         headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(json.loads(response.read())["id"])

    def schema(self, schema_id: int) -> Any:
        try:
            with urllib.request.urlopen(f"{self.url}/schemas/ids/{schema_id}", timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return {"status": exc.code, **json.loads(exc.read() or b"{}")}

"""Debian's ``prometheus`` (and its ``promtool``) on a free loopback port, scraping given targets with cem's rules
loaded, and a small client of its HTTP API (``/api/v1``)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from devtools.services.base import LOOPBACK, Service, ServiceError, ServiceStartError, free_port

PROMETHEUS_BINARY = Path("/usr/bin/prometheus")
PROMTOOL_BINARY = Path("/usr/bin/promtool")


def require_prometheus(binary: Path = PROMETHEUS_BINARY) -> Path:
    """The binary, or a ServiceError saying how to install it (`make system-deps`, Debian's prometheus)."""
    if not binary.exists():
        raise ServiceError(f"{binary} is missing: run `make system-deps` (it installs Debian's prometheus package)")
    return binary


def promtool(*args: str, stdin: bytes | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``promtool ARGS`` (output captured, never raises on its exit code)."""
    require_prometheus(PROMTOOL_BINARY)
    return subprocess.run([str(PROMTOOL_BINARY), *args], input=stdin.decode() if stdin is not None else None,
                          capture_output=True, text=True, timeout=timeout, check=False)


class PrometheusError(RuntimeError):
    """The HTTP API answered with an error (a bad query, an unknown endpoint)."""


class PrometheusServer(Service):
    """A private Prometheus scraping ``targets`` (``host:port``, job ``cem``) every ``scrape_interval`` and evaluating
    ``rule_files`` every ``evaluation_interval``; its TSDB lives in the workdir."""

    name = "prometheus"

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        *,
        rule_files: Sequence[Path] = (),
        job: str = "cem",
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        external_labels: dict[str, str] | None = None,
        port: int | None = None,
        binary: Path = PROMETHEUS_BINARY,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        super().__init__(workdir, start_timeout=start_timeout, stop_timeout=stop_timeout)
        self._ports_chosen_by_us = port is None
        self.port = port if port is not None else free_port()
        self.targets = list(targets)
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.job = job
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.external_labels = dict(external_labels or {})
        self.binary = Path(binary)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.workdir / "prometheus.yml"

    def render_config(self) -> str:
        """The configuration, as JSON (which is YAML)."""
        config = {
            "global": {"scrape_interval": self.scrape_interval, "scrape_timeout": self.scrape_interval,
                       "evaluation_interval": self.evaluation_interval, "external_labels": self.external_labels},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [{"job_name": self.job, "metrics_path": "/metrics",
                                "static_configs": [{"targets": self.targets}]}],
        }
        return json.dumps(config, indent=2)

    def _choose_ports(self) -> None:
        self.port = free_port()

    def _prepare(self) -> None:
        if not self.binary.exists():
            raise ServiceStartError(f"{self.binary} not found; run `make system-deps`")
        self.config_file.write_text(self.render_config())

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]

    def _wait_ready(self, deadline: float) -> None:
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError as exc:
                last_error = exc
            time.sleep(0.1)
        raise TimeoutError(f"/-/ready did not answer 200: {last_error}")

    # ---- HTTP API -------------------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>?params: its `data`, or PrometheusError with the API's error."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query: the result's samples, each {"metric": {...}, "value": [time, "value"]}."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", **params)
        result = data["result"]
        return result if data["resultType"] == "vector" else [{"metric": {}, "value": result}]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The value of an expression that yields one sample, None when it yields none."""
        samples = self.query(expr)
        if not samples:
            return None
        if len(samples) > 1:
            raise PrometheusError(f"{expr} gives {len(samples)} samples")
        return float(samples[0]["value"][1])

    def wait_for(self, expr: str, condition: Callable[[float | None], bool], timeout: float) -> float | None:
        """Poll `expr` until `condition(value)` holds; TimeoutError with the last value otherwise."""
        deadline = time.monotonic() + timeout
        value: float | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            value = self.value(expr)
            if condition(value):
                return value
            time.sleep(0.5)
        raise TimeoutError(f"{expr} = {value} after {timeout} s")

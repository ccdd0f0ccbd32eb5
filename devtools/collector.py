"""Drive a real `cem collect` process from tests and benchmarks: a WorkerProcess whose web port is the
collector's own port (it serves /status there), and plain HTTP posts for the requests no SDK makes."""

from __future__ import annotations

import gzip
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from cem.settings import Settings
from devtools.harness import WorkerProcess


class CollectorProcess(WorkerProcess):
    def __init__(self, settings: Settings, log_path: Path, name: str = "collector") -> None:
        super().__init__(settings, log_path, name=name, command=[sys.executable, "-m", "cem.cli", "collect"])
        self.settings = replace(self.settings, collect_port=self.settings.web_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.collect_port}"


def post(url: str, body: Any, headers: dict[str, str] | None = None, compress: bool = False,
         timeout: float = 30.0) -> tuple[int, dict[str, str], Any]:
    """POST a JSON body (or raw bytes): (status, headers, decoded JSON answer)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if compress:
        data = gzip.compress(data)
        all_headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(url, data=data, headers=all_headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, dict(answer.headers), orjson.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), orjson.loads(error.read() or b"null")

"""`cem worker`: the stream worker process, its logging and the Faust worker that runs the app."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from cem.kafka import ensure_topics
from cem.settings import Settings
from cem.topic_limits import LimitsDisagree
from sinks.clickhouse import parse_url

LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
# The resolver keeps hundreds of thousands of long-lived objects; CPython's default thresholds (700, 10, 10)
# re-scan them over and over while a batch allocates (docs/performance.md: -29% worker CPU).
GC_THRESHOLDS = (50_000, 50, 100)


def tune_garbage_collector() -> None:
    """The worker's collector thresholds; the benchmarks' in-process phases set them too, to measure what a worker
    pays."""
    gc.set_threshold(*GC_THRESHOLDS)


def run_worker(settings: Settings) -> int:
    # Faust and the pipeline load here, not when the module is imported: `cem sql` and the other short commands
    # do not pay for them.
    from streams.app import create_app
    from streams.batches import STOP_DEADLINE_MARGIN_SECONDS, request_stop

    configure_logging(settings.log_level)
    tune_garbage_collector()
    try:
        asyncio.run(ensure_topics(settings, check_limits=True))
    except LimitsDisagree as exc:
        print(f"cem worker: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG
    # One line saying it runs and where: at the default log level the worker is otherwise silent while it waits.
    print(f"cem worker: consuming {settings.topic_prefix}.raw.* from {settings.kafka_bootstrap}, writing to "
          f"{parse_url(settings.clickhouse_url).redacted()}; metrics on "
          f"http://{settings.web_host}:{settings.web_port}/metrics; SIGTERM or Ctrl-C stops it", file=sys.stderr,
          flush=True)
    stopping = threading.Event()
    app = create_app(settings, stopping)
    deadline = settings.shutdown_grace_seconds + STOP_DEADLINE_MARGIN_SECONDS
    faust_worker(app, settings.log_level,
                 on_stop=lambda: stopping.is_set() or request_stop(stopping, deadline)).execute_from_commandline()
    return 0


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Plain text lines on stderr, no colour codes: the log is read in files, test reports and log collectors."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=stream or sys.stderr, force=True)


def faust_worker(app: Any, log_level: str, stdout: TextIO | None = None,
                 on_stop: Callable[[], object] | None = None) -> Any:
    """The Faust worker that runs `app`, with the logging configure_logging() set up. mode would replace it with
    colorlog's handler, and Faust's progress spinner writes cursor escape codes to stdout and lowers the root
    logger to DEBUG (every library's debug call then builds a record): both are turned off. `on_stop` runs
    when a stop is asked for (SIGTERM, SIGINT), before Faust starts shutting down: its consumer waits for every
    batch in flight to be acknowledged, and a batch retrying a failing warehouse must be told to give up."""
    from faust.worker import Worker

    class CemWorker(Worker):  # type: ignore[misc]
        def _schedule_shutdown(self, signal: Any) -> None:
            if on_stop is not None:
                on_stop()
            super()._schedule_shutdown(signal)

    worker = CemWorker(app, loglevel=log_level.lower(), quiet=True, redirect_stdouts=False, override_logging=False,
                       stdout=stdout or sys.stdout)
    worker.spinner = None
    return worker

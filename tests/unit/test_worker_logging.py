"""The worker's log: plain text lines (no colour or cursor codes from Faust's spinner or mode's colorlog), at the
level asked for (the spinner used to lower the root logger to DEBUG)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from cem.settings import Settings
from cem.worker import configure_logging, faust_worker
from streams.app import faust_app


@pytest.fixture
def root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("level", ["WARNING", "INFO"])
def test_the_worker_logs_plain_lines_at_its_level(root_logger: None, level: str) -> None:
    log, stdout = io.StringIO(), io.StringIO()
    configure_logging(level, stream=log)
    worker = faust_worker(faust_app(Settings(), web=False), level, stdout=stdout)
    # What mode's Worker does when it starts (default_on_first_start, then on_startup_finished).
    if worker.override_logging:
        worker._setup_logging()
    worker.on_setup_root_logger(logging.getLogger(), logging.getLevelName(level))
    worker._on_startup_end_spinner()
    logging.getLogger("faust.worker").warning("[^Worker]: rebalancing %s", "now")
    logging.getLogger("aiokafka").debug("a debug line")

    assert logging.getLogger().level == logging.getLevelName(level)
    text = log.getvalue()
    assert "[WARNING] faust.worker: [^Worker]: rebalancing now" in text
    assert "a debug line" not in text
    assert "\x1b" not in text + stdout.getvalue() and "\x08" not in stdout.getvalue()
    assert ("[INFO] faust.worker: [^CemWorker]: Ready" in text) is (level == "INFO")

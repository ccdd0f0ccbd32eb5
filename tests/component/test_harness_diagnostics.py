"""What devtools.harness reports when a wait times out: each worker's state, /status, key metrics and a plain log tail.
The worker is a small fake process serving the worker's /status and /metrics interface on CEM_WEB_PORT."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cem.settings import Settings
from devtools.harness import WorkerProcess, wait_until
from devtools.scrape import metrics_summary, plain_text

FAKE_WORKER = r"""
import http.server, json, os, sys, time
print("\x1b[?25l\x08\x1b[?25h[INFO] \x1b[37mstarting\x1b[0m", flush=True)
if os.path.exists("exit-now"):
    print("\x1b[31mfatal: cannot start\x1b[0m", flush=True)
    sys.exit(3)
METRICS = '''# HELP cem_consumer_lag_messages lag
cem_consumer_lag_messages{partition="0",topic="t.raw.web"} 5.0
cem_consumer_lag_messages{partition="1",topic="t.raw.web"} 2.0
cem_consumer_lag_messages{partition="0",topic="t.resolve"} 0.0
cem_events_in_total{channel="web"} 40.0
cem_events_resolved_total 31.0
cem_sink_up 0.0
cem_sink_failures_total 4.0
'''

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if os.path.exists("stuck"):
            time.sleep(8)
        body = json.dumps({"consumed": 40, "resolved": 31}).encode() if self.path == "/status" else METRICS.encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

print("\x1b[33mWARNING\x1b[0m ClickHouse write failed, retrying", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["CEM_WEB_PORT"])), Handler).serve_forever()
"""


def fake_worker(tmp_path: Path) -> WorkerProcess:
    return WorkerProcess(Settings(), tmp_path / "fake.log", name="fake", command=[sys.executable, "-c", FAKE_WORKER])


def test_a_timed_out_wait_reports_status_metrics_and_a_plain_log_tail(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    worker = fake_worker(tmp_path).start()
    polls = []
    try:
        with pytest.raises(TimeoutError) as raised:
            wait_until(lambda: polls.append(1), 0.6, lambda: f"not drained after {len(polls)} polls", interval=0.2,
                       workers=[worker])
    finally:
        worker.kill()
    text = str(raised.value)
    assert text.startswith(f"not drained after {len(polls)} polls (waited 0.6 s)")  # the message, built at timeout
    assert f"running, pid {worker.pid}, cpu " in text
    assert 'status: {"consumed":40,"resolved":31}' in text
    assert "events_in_total=40 events_resolved_total=31" in text
    assert "sink_up=0 sink_failures_total=4" in text
    assert "consumer_lag=7 (t.raw.web: 7)" in text
    assert "[INFO] starting" in text and "WARNING ClickHouse write failed, retrying" in text
    assert "\x1b" not in text and "\x08" not in text


def test_a_worker_that_does_not_answer_is_reported_as_stuck_with_its_last_values(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    worker = fake_worker(tmp_path).start()
    try:
        worker.metrics_text()
        (tmp_path / "stuck").touch()
        report = worker.diagnostics()
    finally:
        worker.kill()
    assert "/status did not answer (event loop stuck?): last values" in report
    assert 'status: {"consumed":40,"resolved":31}' in report and "consumer_lag=7" in report


def test_a_worker_that_exits_at_start_reports_its_code_and_a_plain_log(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exit-now").touch()
    with pytest.raises(RuntimeError) as raised:
        fake_worker(tmp_path).start()
    text = str(raised.value)
    assert "fake exited with 3" in text and "exited with code 3; last values" in text
    assert "fatal: cannot start" in text and "\x1b" not in text


@pytest.mark.parametrize("raw,plain", [
    ("\x1b[31mred\x1b[0m", "red"),
    ("\x1b[?25l\x08\x1b[?25h ok", " ok"),
    ("a\r\nb\tc", "a\nb\tc"),
    ("\x1b]0;title\x07text", "text"),
    ("spinner\x08\x08\x08done", "spinnerdone"),
    ("é ✓ [^--Producer]", "é ✓ [^--Producer]"),
])
def test_plain_text_strips_terminal_control_codes(raw: str, plain: str) -> None:
    assert plain_text(raw) == plain


def test_metrics_summary_of_a_worker_never_scraped() -> None:
    assert metrics_summary("") == "none scraped"

"""`python -m tests.faults.inject` in a real process. (The patching itself is tested in
tests/unit/test_fault_inject.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

from cem.settings import Settings
from tests.faults.inject import Fault, launcher, write_plan


def test_the_launcher_runs_the_worker_with_the_plan_installed(tmp_path: Path) -> None:
    """`python -m tests.faults.inject` in a real process: a fault in the worker's first step (the check that the
    broker is there) ends it before it needs a broker."""
    plan = write_plan(tmp_path / "plan.json", [Fault("cem.preflight.check_kafka", "raise", exception="ConnectionError",
                                                     message="injected: no broker")])
    command, env = launcher(plan)
    settings = Settings.from_env({}, kafka_bootstrap="127.0.0.1:9", state_dir=str(tmp_path / "state"))
    done = subprocess.run(command, env={**settings.as_env(), **env, "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    assert "[fault-inject] raise in cem.preflight.check_kafka" in done.stderr
    assert "ConnectionError: injected: no broker" in done.stderr, done.stderr[-2000:]

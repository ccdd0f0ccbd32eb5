"""The README's "Your own events: the dev stack" walk, run as written: the dev stack (`python -m devtools.dev`, on
ports and a directory of this test's choosing), a real `cem worker`, then every `$ cem ...` command of that section
in order, each output compared with the one the README shows. Only what legitimately differs between runs is
normalised: request ids and keyed hashes (random per request), column padding, and the merge history, which depends
on the order the worker received the events in (README, "Merges are history")."""

from __future__ import annotations

import random
import shlex
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cem.settings import Settings
from devtools.harness import WorkerProcess, run_cem, run_module, wait_until
from devtools.services import port_is_open
from devtools.topics import drained
from tests.integration.readme import ROOT, normalised, readme_steps

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

# Shell lines of the walk that the fixture does itself (on its own ports and directory).
DONE_BY_THE_FIXTURE = ("make system-deps", "make dev-up", 'eval "$(make -s dev-env)"',
                       'export PATH="$PWD/.venv/bin:$PATH"', "cem worker &")


def test_normalised_keeps_what_does_not_depend_on_the_run() -> None:
    shown = "Merges (2):\n  a -> b\n  c -> d\n\nShared identifiers (0): x\nRefused merges (0):\n\nEvents: 5"
    other = ("Merges (3):\n  a -> e\n  e -> b\n  c -> d\n\nShared identifiers (0): x\nRefused merges (1):\n  f x b\n\n"
             "Events: 5")
    assert normalised(shown) == normalised(other)
    assert normalised(shown) != normalised(other.replace("Events: 5", "Events: 6"))
    assert normalised(shown) != normalised(other.replace("Shared identifiers (0)", "Shared identifiers (1)"))
    assert normalised("   12       1       2               0") == normalised("   12  1  3  1")
    assert normalised("   12       1       2               0") != normalised("   13  1  2  0")


def test_normalised_ignores_which_customer_an_identifier_was_first_linked_to_but_not_the_identifier() -> None:
    shown = "  anonymous_id   a-81f2     linked 2026-11-20 09:00:00.000Z by event w-1 [first_seen]"
    other = ("  anonymous_id   a-81f2     linked 2026-11-20 09:02:10.000Z by event w-2 [shared_identifier]"
             " (linked to c_8abcc47f54c8115a, merged since)")
    assert normalised(shown) == normalised(other)
    assert normalised(shown) != normalised(other.replace("a-81f2", "a-81f3"))


def test_the_section_holds_the_walk() -> None:
    commands = [step.command for step in readme_steps((ROOT / "README.md").read_text())]
    assert commands[:len(DONE_BY_THE_FIXTURE)] == list(DONE_BY_THE_FIXTURE)
    assert "cem publish docs/examples/jane.jsonl" in commands
    assert 'cem identity explain email "JANE.DOE@example.com"' in commands
    assert "cem forget email jane.doe@example.com" in commands
    assert "cem report" in commands


def free_port_pair() -> int:
    """A port that, with its successor (the stack's second listener), can be bound now: picked below the kernel's
    ephemeral range, where the tests' own services and every client connection take theirs."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, 30_000)
        try:
            for candidate in (port, port + 1):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports")


@dataclass
class DevStack:
    args: list[str]
    env: dict[str, str]


def dev(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("devtools.dev", *args, timeout=300)


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[DevStack]:
    for _attempt in range(3):  # another process may take a probed port before the service binds it
        args = ["--dir", str(tmp_path / "dev"), "--kafka-port", str(free_port_pair()),
                "--clickhouse-port", str(free_port_pair())]
        started = dev("up", *args)
        if "Address already in use" not in started.stdout + started.stderr:
            break
        dev("down", *args)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        env = dict(line.removeprefix("export ").split("=", 1)
                   for line in dev("env", *args).stdout.splitlines())
        yield DevStack(args, env)
    finally:
        stopped = dev("down", *args)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_dev_stack_up_is_idempotent_status_and_down(dev_stack: DevStack) -> None:
    kafka = dev_stack.env["CEM_KAFKA_BOOTSTRAP"]
    clickhouse = dev_stack.env["CEM_CLICKHOUSE_URL"].split("@", 1)[1].split("/", 1)[0]
    again = dev("up", *dev_stack.args)
    assert again.returncode == 0
    assert f"clickhouse: already running at {clickhouse} (pid " in again.stdout
    assert f"kafka: already running at {kafka} (pid " in again.stdout
    status = dev("status", *dev_stack.args)
    assert status.returncode == 0
    assert [line.split()[:3] for line in status.stdout.splitlines()] == [["clickhouse", "up", clickhouse],
                                                                         ["kafka", "up", kafka]]
    assert set(dev_stack.env) == {"CEM_KAFKA_BOOTSTRAP", "CEM_CLICKHOUSE_URL", "CEM_STATE_DIR", "CEM_SECRET_KEY"}
    assert len(dev_stack.env["CEM_SECRET_KEY"]) == 64
    migrated = run_cem("migrate", env=dev_stack.env, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    applied = len(migrated.stdout.split(":", 1)[1].split(","))
    down = dev("down", *dev_stack.args)
    assert down.returncode == 0 and "kafka: stopped (pid" in down.stdout
    stopped = dev("status", *dev_stack.args)
    assert stopped.returncode == 3
    assert [line.split()[:2] for line in stopped.stdout.splitlines()] == [["clickhouse", "down"], ["kafka", "down"]]
    host, port = kafka.split(":")
    assert not port_is_open(host, int(port))
    # The data stays: up again serves the same warehouse, with the migrations applied before the stop.
    assert dev("up", *dev_stack.args).returncode == 0
    done = run_cem("sql", "SELECT count() FROM cem.schema_migrations", "--format", "tsv", env=dev_stack.env,
                   timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == str(applied) and applied == len(list((ROOT / "sinks" / "migrations").glob(
        "*.sql")))


def test_the_readme_walk(dev_stack: DevStack, tmp_path: Path) -> None:
    steps = readme_steps((ROOT / "README.md").read_text())
    assert [s.command for s in steps[:len(DONE_BY_THE_FIXTURE)]] == list(DONE_BY_THE_FIXTURE)
    settings = Settings.from_env(dev_stack.env)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start(wait=120)
    try:
        for step in steps[len(DONE_BY_THE_FIXTURE):]:
            args = shlex.split(step.command)
            assert args[0] == "cem", step.command
            done = run_cem(*args[1:], env=dev_stack.env, timeout=180)
            output = done.stdout + done.stderr
            expected_code = 3 if "\nrefused: " in "\n" + step.expected else 0
            assert done.returncode == expected_code, f"$ {step.command}\n{output}"
            assert normalised(output) == normalised(step.expected), (
                f"$ {step.command}: the README shows\n{step.expected}\n--- but it printed\n{output}")
            if args[1] == "publish":
                wait_until(lambda: drained(settings), 120, "the worker did not drain the README's events",
                           workers=[worker], settings=settings)
    finally:
        worker.stop()

"""devtools.dev without starting anything: ports, the recorded ports, the exports, and the pid check that never
takes a reused pid for a service."""

from __future__ import annotations

import json
import os
from pathlib import Path

from devtools.dev import Ports, Stack, env_lines


def test_ports_around_take_the_next_port_for_the_second_listener() -> None:
    assert Ports.around(19092, 19000) == Ports(19092, 19093, 19000, 19001) == Ports()
    assert Ports.around(20000, 21000) == Ports(20000, 20001, 21000, 21001)


def test_the_recorded_ports_win_except_for_a_start_of_a_stopped_stack(tmp_path: Path) -> None:
    asked = Ports.around(20000, 21000)
    assert Stack.open(tmp_path, asked, starting=True).ports == asked  # nothing recorded
    (tmp_path / "stack.json").write_text(json.dumps({"kafka": 1, "kafka_controller": 2, "clickhouse": 3,
                                                     "clickhouse_http": 4}))
    assert Stack.open(tmp_path, asked, starting=False).ports == Ports(1, 2, 3, 4)
    assert Stack.open(tmp_path, asked, starting=True).ports == asked  # recorded, but nothing runs


def test_exports_point_at_the_stack_with_its_secret(tmp_path: Path) -> None:
    stack = Stack(tmp_path, Ports.around(20000, 21000))
    assert stack.env() == {"CEM_KAFKA_BOOTSTRAP": "127.0.0.1:20000",
                           "CEM_CLICKHOUSE_URL": "clickhouse://default:@127.0.0.1:21000/cem",
                           "CEM_STATE_DIR": f"{tmp_path}/state"}
    stack.secret_file.write_text("ab" * 32 + "\n")
    assert stack.env()["CEM_SECRET_KEY"] == "ab" * 32
    assert env_lines(stack).splitlines()[0] == "export CEM_KAFKA_BOOTSTRAP=127.0.0.1:20000"


def test_a_pid_file_counts_only_for_the_stacks_own_process(tmp_path: Path) -> None:
    stack = Stack(tmp_path, Ports())
    assert stack.running_pid("kafka") is None  # no pid file
    stack.pid_file("kafka").write_text("not a pid\n")
    assert stack.running_pid("kafka") is None
    # A live process that is not this stack's broker (its command line does not name the broker's directory):
    # a pid the kernel handed to another program after the broker died.
    stack.pid_file("kafka").write_text(f"{os.getpid()}\n")
    assert stack.running_pid("kafka") is None

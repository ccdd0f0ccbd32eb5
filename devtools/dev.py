"""`make dev-up | dev-down | dev-status | dev-env`: a persistent local stack, no Docker: Apache Kafka (the jars and
launch code the tests use) and the ClickHouse server (Debian's clickhouse-server), on fixed ports, with their data
in one directory, running in the background until `dev-down`.

    python -m devtools.dev up|down|status|env [--dir DIR] [--kafka-port N] [--clickhouse-port N]

Defaults: DIR is `.cem/dev` in the checkout; Kafka listens on 127.0.0.1:19092 (its controller on 19093),
ClickHouse on 127.0.0.1:19000 (native protocol, what cem uses) and 19001 (HTTP). The tests' services take random
ports from the kernel's ephemeral range (32768 and up), so they never clash with these. `up` records the ports in
DIR/stack.json; `down`, `status` and `env` read them there. Each service leads its own process group; its pid is in
DIR/<service>.pid and `down` stops that group (SIGTERM, then SIGKILL after 30 s).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from devtools.services import REPO_ROOT, ClickHouseServer, KafkaBroker, ServiceError, fetch_kafka_libs, port_is_open
from devtools.services.base import CLICKHOUSE_SERVER, LOOPBACK

DEFAULT_DIR = REPO_ROOT / ".cem" / "dev"
DEFAULT_KAFKA_PORT = 19092
DEFAULT_CLICKHOUSE_PORT = 19000
STOP_SECONDS = 30.0
EXIT_DOWN = 3  # `status` when a service is not running (as `systemctl status` does)
SYSTEM_DEPS_HINT = "run `make system-deps` (it installs clickhouse-server, Java and Maven with apt-get)"


@dataclass(frozen=True)
class Ports:
    kafka: int = DEFAULT_KAFKA_PORT
    kafka_controller: int = DEFAULT_KAFKA_PORT + 1
    clickhouse: int = DEFAULT_CLICKHOUSE_PORT
    clickhouse_http: int = DEFAULT_CLICKHOUSE_PORT + 1

    @classmethod
    def around(cls, kafka: int, clickhouse: int) -> Ports:
        return cls(kafka, kafka + 1, clickhouse, clickhouse + 1)


class Stack:
    """The dev stack in `root`: where each service keeps its data, pid and log, and the ports it listens on."""

    def __init__(self, root: Path, ports: Ports) -> None:
        self.root = root.absolute()
        self.ports = ports

    @classmethod
    def open(cls, root: Path, ports: Ports, starting: bool) -> Stack:
        """The stack with the ports `up` recorded, when it is running (or for any action but a start), else with
        `ports`."""
        recorded = root / "stack.json"
        if not recorded.exists():
            return cls(root, ports)
        stack = cls(root, Ports(**json.loads(recorded.read_text())))
        running = any(stack.running_pid(name) is not None for name in stack.services())
        return stack if running or not starting else cls(root, ports)

    @property
    def kafka_bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.ports.kafka}"

    @property
    def clickhouse_url(self) -> str:
        return f"clickhouse://default:@{LOOPBACK}:{self.ports.clickhouse}/cem"

    def env(self) -> dict[str, str]:
        """The settings that point cem at this stack, with the stack's own secret key (workers and `cem forget`
        must share one; the public development key would make every command warn)."""
        env = {"CEM_KAFKA_BOOTSTRAP": self.kafka_bootstrap, "CEM_CLICKHOUSE_URL": self.clickhouse_url,
               "CEM_STATE_DIR": str(self.root / "state")}
        if self.secret_file.exists():
            env["CEM_SECRET_KEY"] = self.secret_file.read_text().strip()
        return env

    @property
    def secret_file(self) -> Path:
        return self.root / "secret.key"

    def services(self) -> dict[str, tuple[str, Path]]:
        """name -> (address, work directory)."""
        return {"clickhouse": (f"{LOOPBACK}:{self.ports.clickhouse}", self.root / "clickhouse"),
                "kafka": (self.kafka_bootstrap, self.root / "kafka")}

    def pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def running_pid(self, name: str) -> int | None:
        """The pid in the service's pid file when that process is alive and is this stack's service (its command
        line names the service's work directory), so a reused pid is never taken for it."""
        try:
            pid = int(self.pid_file(name).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            return None
        return pid if str(self.services()[name][1]) in cmdline else None

    def build(self, name: str) -> KafkaBroker | ClickHouseServer:
        workdir = self.services()[name][1]
        if name == "kafka":
            print("kafka: resolving its jars (deploy/kafka/fetch.sh: Maven, a few minutes the first time, then "
                  "cached in ~/.cache/cem)", flush=True)
            return KafkaBroker(workdir, fetch_kafka_libs(), port=self.ports.kafka,
                               controller_port=self.ports.kafka_controller, start_timeout=180.0)
        return ClickHouseServer(workdir, tcp_port=self.ports.clickhouse, http_port=self.ports.clickhouse_http,
                                start_timeout=90.0)


def missing_system_packages() -> list[str]:
    missing = []
    if not CLICKHOUSE_SERVER.exists():
        missing.append(f"{CLICKHOUSE_SERVER}")
    if not any((Path(d) / "java").exists() for d in os.get_exec_path()):
        missing.append("java")
    return missing


def up(stack: Stack) -> int:
    missing = missing_system_packages()
    if missing:
        print(f"dev stack: {', '.join(missing)} not found: {SYSTEM_DEPS_HINT}", file=sys.stderr)
        return 1
    stack.root.mkdir(parents=True, exist_ok=True)
    (stack.root / "stack.json").write_text(json.dumps(asdict(stack.ports)) + "\n")
    if not stack.secret_file.exists():
        stack.secret_file.write_text(secrets.token_hex(32) + "\n")
        stack.secret_file.chmod(0o600)
    for name, (address, workdir) in stack.services().items():
        pid = stack.running_pid(name)
        if pid is not None:
            print(f"{name}: already running at {address} (pid {pid})")
            continue
        host, port = address.rsplit(":", 1)
        if port_is_open(host, int(port)):
            print(f"{name}: {address} is taken by another process: stop it, or choose other ports (make dev-up "
                  "DEV_KAFKA_PORT=... DEV_CLICKHOUSE_PORT=... DEV_DIR=another-dir)", file=sys.stderr)
            return 1
        print(f"{name}: starting at {address} (data and logs in {workdir}) ...", flush=True)
        began = time.monotonic()
        try:
            pid = stack.build(name).start_detached()
        except ServiceError as exc:
            print(f"{name}: did not start: {exc}", file=sys.stderr)
            if "mvn" in str(exc) or "not found" in str(exc):
                print(f"dev stack: {SYSTEM_DEPS_HINT}", file=sys.stderr)
            return 1
        stack.pid_file(name).write_text(f"{pid}\n")
        print(f"{name}: up at {address} (pid {pid}, {time.monotonic() - began:.0f} s)")
    print("\nPoint cem at it (or run `eval \"$(make -s dev-env)\"`):")
    print(env_lines(stack))
    return 0


def down(stack: Stack) -> int:
    for name in reversed(list(stack.services())):
        pid = stack.running_pid(name)
        if pid is None:
            print(f"{name}: not running")
        else:
            stop_group(pid)
            print(f"{name}: stopped (pid {pid}); its data stays in {stack.services()[name][1]}")
        stack.pid_file(name).unlink(missing_ok=True)
    return 0


def stop_group(pid: int) -> None:
    """SIGTERM to the process group the service leads, SIGKILL if it is still there after STOP_SECONDS."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def status(stack: Stack) -> int:
    all_up = True
    for name, (address, workdir) in stack.services().items():
        pid = stack.running_pid(name)
        host, port = address.rsplit(":", 1)
        if pid is not None and port_is_open(host, int(port)):
            print(f"{name:<11} up    {address:<16} pid {pid}, data in {workdir}")
        elif pid is not None:
            print(f"{name:<11} down  {address:<16} pid {pid} runs but does not accept connections (starting, or "
                  f"stuck: see {workdir})")
            all_up = False
        else:
            print(f"{name:<11} down  {address:<16} start it with `make dev-up`")
            all_up = False
    return 0 if all_up else EXIT_DOWN


def env_lines(stack: Stack) -> str:
    return "\n".join(f"export {key}={value}" for key, value in stack.env().items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.dev", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("up", "down", "status", "env"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the services keep data, pids and logs")
    parser.add_argument("--kafka-port", type=int, default=DEFAULT_KAFKA_PORT, help="its controller uses the next one")
    parser.add_argument("--clickhouse-port", type=int, default=DEFAULT_CLICKHOUSE_PORT,
                        help="native protocol; HTTP uses the next one")
    args = parser.parse_args(argv)
    stack = Stack.open(args.dir, Ports.around(args.kafka_port, args.clickhouse_port), starting=args.action == "up")
    if args.action == "up":
        return up(stack)
    if args.action == "down":
        return down(stack)
    if args.action == "status":
        return status(stack)
    print(env_lines(stack))
    return 0


if __name__ == "__main__":
    sys.exit(main())

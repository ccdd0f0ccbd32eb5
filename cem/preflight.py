"""What a command checks before it starts: that the Kafka broker and the warehouse it needs answer, so that a
missing service is one line saying what was tried, what failed and what to do, within seconds, rather than a
client library's retries and traceback. A check opens a TCP connection (or, for the embedded warehouse, looks at
its directory and lock); the command's own clients then do the real work."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from cem.settings import Settings
from sinks.clickhouse import WarehouseError, parse_url
from sinks.embedded_lock import holder_pid

EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: a service the command needs is down, busy or missing
CONNECT_TIMEOUT_SECONDS = 2.0
DEV_STACK_HINT = "`make dev-up` (then `eval \"$(make -s dev-env)\"`)"

Connector = Callable[[tuple[str, int], float], None]


class Unavailable(Exception):
    """A service a command needs cannot be used: the message is the one line the command prints."""

    exit_code = EXIT_UNAVAILABLE


def tcp_connect(address: tuple[str, int], timeout: float) -> None:
    """Open and close a TCP connection; raises OSError when nothing accepts it."""
    with socket.create_connection(address, timeout=timeout):
        pass


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """`host:port,host:port` (a bracketed IPv6 host allowed; port 9092 when absent) as (host, port) pairs."""
    addresses = []
    for item in (part.strip() for part in bootstrap.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or "]" in port or not port.isdigit():
            host, port = item, "9092"
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def failure_text(exc: BaseException) -> str:
    """A socket error in a few words: `connection refused`, `timed out`, `name not known`."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def check_kafka(settings: Settings, connect: Connector = tcp_connect,
                timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Some bootstrap server accepts a connection, or Unavailable names them all and why."""
    addresses = bootstrap_addresses(settings.kafka_bootstrap)
    if not addresses:
        raise Unavailable("CEM_KAFKA_BOOTSTRAP is empty: set it to the broker's host:port")
    failures = []
    for address in addresses:
        try:
            connect(address, timeout)
            return
        except OSError as exc:
            failures.append(failure_text(exc))
    reasons = ", ".join(sorted(set(failures)))
    raise Unavailable(f"no Kafka broker at {settings.kafka_bootstrap} ({reasons}): start one with {DEV_STACK_HINT} "
                      "or set CEM_KAFKA_BOOTSTRAP")


def check_warehouse(settings: Settings, must_exist: bool, connect: Connector = tcp_connect,
                    timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """The warehouse of CEM_CLICKHOUSE_URL can be used: a server accepts a connection; an embedded directory is not
    held by another process and, when `must_exist` (a command that only reads), holds the database."""
    try:
        target = parse_url(settings.clickhouse_url)
    except WarehouseError as exc:
        raise Unavailable(str(exc)) from exc
    if target.scheme != "chdb":
        try:
            connect((target.host, target.port), timeout)
        except OSError as exc:
            raise Unavailable(f"no ClickHouse server at {target.host}:{target.port} ({failure_text(exc)}): start one "
                              f"with {DEV_STACK_HINT} or set CEM_CLICKHOUSE_URL") from exc
        return
    path = Path(target.path).absolute()
    if must_exist and not embedded_database_exists(path, target.database):
        raise Unavailable(f"the embedded warehouse at {path} has no database {target.database}: run `make demo` to "
                          "fill it, or set CEM_CLICKHOUSE_URL (or CEM_STATE_DIR) to the warehouse you mean")
    holder = holder_pid(path / "status")
    if holder is not None:
        raise Unavailable(
            f"the embedded warehouse at {path} is in use by process {holder} (a `cem worker` or the demo; the "
            "embedded engine allows one process per directory): stop it, or run the worker on a ClickHouse server "
            f"({DEV_STACK_HINT}) so that other commands can query alongside it")


def embedded_database_exists(path: Path, database: str) -> bool:
    """The engine keeps one metadata entry per database: `metadata/<db>.sql` and/or `metadata/<db>/`."""
    metadata = path / "metadata"
    return (metadata / f"{database}.sql").exists() or (metadata / database).is_dir()

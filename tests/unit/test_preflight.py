"""cem.preflight: what a command checks before it starts, with a fake connector (no socket) and real files for the
embedded warehouse's lock (an flock held by another open file description conflicts in one process too)."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from cem.preflight import (
    EXIT_UNAVAILABLE,
    Unavailable,
    bootstrap_addresses,
    check_kafka,
    check_warehouse,
    failure_text,
)
from cem.settings import Settings


class FakeConnector:
    """Accepts the addresses in `open_addresses`, refuses the others the way a closed port does."""

    def __init__(self, *open_addresses: tuple[str, int], error: OSError | None = None) -> None:
        self.open = set(open_addresses)
        self.error = error or ConnectionRefusedError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))
        self.tried: list[tuple[str, int]] = []

    def __call__(self, address: tuple[str, int], timeout: float) -> None:
        self.tried.append(address)
        if address not in self.open:
            raise self.error


@pytest.mark.parametrize(("bootstrap", "expected"), [
    ("127.0.0.1:9092", [("127.0.0.1", 9092)]),
    ("kafka-1:9093, kafka-2:9094", [("kafka-1", 9093), ("kafka-2", 9094)]),
    ("broker", [("broker", 9092)]),
    ("[::1]:19092", [("::1", 19092)]),
    ("[::1]", [("::1", 9092)]),
    ("a:1,,", [("a", 1)]),
])
def test_bootstrap_addresses(bootstrap: str, expected: list[tuple[str, int]]) -> None:
    assert bootstrap_addresses(bootstrap) == expected


def test_no_broker_is_one_line_naming_the_address_the_reason_and_what_to_do() -> None:
    connector = FakeConnector()
    with pytest.raises(Unavailable) as caught:
        check_kafka(Settings(kafka_bootstrap="127.0.0.1:19092"), connect=connector)
    message = str(caught.value)
    assert message.startswith("no Kafka broker at 127.0.0.1:19092 (connection refused): start one with `make dev-up`")
    assert "CEM_KAFKA_BOOTSTRAP" in message and "\n" not in message
    assert caught.value.exit_code == EXIT_UNAVAILABLE == 69
    assert connector.tried == [("127.0.0.1", 19092)]


def test_one_answering_bootstrap_server_is_enough() -> None:
    connector = FakeConnector(("b", 2))
    check_kafka(Settings(kafka_bootstrap="a:1,b:2,c:3"), connect=connector)
    assert connector.tried == [("a", 1), ("b", 2)]


def test_every_failing_bootstrap_server_reason_is_named_once() -> None:
    with pytest.raises(Unavailable, match=r"no Kafka broker at a:1,b:2 \(timed out\)"):
        check_kafka(Settings(kafka_bootstrap="a:1,b:2"), connect=FakeConnector(error=TimeoutError()))


def test_empty_bootstrap_is_refused() -> None:
    with pytest.raises(Unavailable, match="CEM_KAFKA_BOOTSTRAP is empty"):
        check_kafka(Settings(kafka_bootstrap=" , "), connect=FakeConnector())


@pytest.mark.parametrize(("error", "text"), [
    (ConnectionRefusedError(errno.ECONNREFUSED, "x"), "connection refused"),
    (TimeoutError(), "timed out"),
    (OSError(errno.EHOSTUNREACH, "x"), "no route to host"),
])
def test_failure_text(error: OSError, text: str) -> None:
    assert failure_text(error) == text


def test_no_clickhouse_server_names_its_address_not_its_password() -> None:
    settings = Settings(clickhouse_url="clickhouse://cem:s3cret@db.example:19000/cem")
    with pytest.raises(Unavailable) as caught:
        check_warehouse(settings, must_exist=True, connect=FakeConnector())
    message = str(caught.value)
    assert message.startswith("no ClickHouse server at db.example:19000 (connection refused): start one with")
    assert "CEM_CLICKHOUSE_URL" in message and "s3cret" not in message


def test_an_answering_server_passes() -> None:
    connector = FakeConnector(("db", 9000))
    check_warehouse(Settings(clickhouse_url="clickhouse://db/cem"), must_exist=True, connect=connector)
    assert connector.tried == [("db", 9000)]


def test_a_wrong_scheme_is_one_line() -> None:
    with pytest.raises(Unavailable, match="must start with clickhouse:// or chdb://"):
        check_warehouse(Settings(clickhouse_url="http://db:8123"), must_exist=False)


def _embedded(path: Path, database: str = "cem") -> Settings:
    return Settings(clickhouse_url=f"chdb://{path}?database={database}")


def test_an_empty_embedded_warehouse_is_explained_to_a_reader(tmp_path: Path) -> None:
    with pytest.raises(Unavailable) as caught:
        check_warehouse(_embedded(tmp_path / "warehouse"), must_exist=True)
    assert str(caught.value).startswith(f"the embedded warehouse at {tmp_path / 'warehouse'} has no database cem: "
                                        "run `make demo`")
    check_warehouse(_embedded(tmp_path / "warehouse"), must_exist=False)  # a writer creates it


@pytest.mark.parametrize("layout", ["cem.sql", "cem/"])
def test_an_embedded_database_is_found_by_its_metadata(tmp_path: Path, layout: str) -> None:
    metadata = tmp_path / "metadata"
    metadata.mkdir()
    if layout.endswith("/"):
        (metadata / layout).mkdir()
    else:
        (metadata / layout).write_text("ATTACH DATABASE cem")
    check_warehouse(_embedded(tmp_path), must_exist=True)
    with pytest.raises(Unavailable, match="has no database other"):
        check_warehouse(_embedded(tmp_path, "other"), must_exist=True)


def test_a_locked_embedded_warehouse_names_its_holder(tmp_path: Path) -> None:
    (tmp_path / "metadata" / "cem").mkdir(parents=True)
    status = tmp_path / "status"
    status.write_text("PID: 1\nStarted at: 2026-12-03 04:42:00\nRevision: 54500\n")  # a live process, not us
    check_warehouse(_embedded(tmp_path), must_exist=True)
    with status.open() as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for must_exist in (True, False):
            with pytest.raises(Unavailable) as caught:
                check_warehouse(_embedded(tmp_path), must_exist=must_exist)
            message = str(caught.value)
            assert message.startswith(f"the embedded warehouse at {tmp_path} is in use by process 1")
            assert "stop it, or run the worker on a ClickHouse server (`make dev-up`" in message
            assert "\n" not in message
    check_warehouse(_embedded(tmp_path), must_exist=True)  # released: usable again


def test_the_default_warehouse_does_not_depend_on_the_current_directory(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    before = Settings.from_env({}).clickhouse_url
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({}).clickhouse_url == before
    assert before.startswith("chdb:///") and before.endswith("/.local/share/cem/warehouse")
    moved = Settings.from_env({"CEM_STATE_DIR": str(tmp_path / "state")})
    assert moved.clickhouse_url == f"chdb://{tmp_path}/state/warehouse"
    assert Settings.from_env({"CEM_CLICKHOUSE_URL": "clickhouse://db/cem"}).clickhouse_url == "clickhouse://db/cem"

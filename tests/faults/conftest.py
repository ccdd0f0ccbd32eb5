"""Fixtures of the fault-injection suite. Services: the shared Apache Kafka and ClickHouse of tests/conftest.py,
or private ones (KafkaBroker / ClickHouseServer in tmp_workdir(...)) where a scenario stops or kills them.

Every scenario appends its figures to `fault_report`; at the end of the session they are printed and written to
`<pytest base temp>/faults-results.json`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.faults.scenario import Scenario


@pytest.fixture(scope="session")
def fault_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    results: list[dict[str, Any]] = []
    yield results
    if not results:
        return
    path = tmp_path_factory.getbasetemp() / "faults-results.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print(f"\n[faults] results of {len(results)} scenarios written to {path}")
    for figures in results:
        print(f"[faults] {figures['scenario']}: " +
              ", ".join(f"{k}={v}" for k, v in figures.items() if k != "scenario"))


@pytest.fixture
def scenario(tmp_path: Path, fault_report: list[dict[str, Any]]) -> Iterator[Callable[..., Scenario]]:
    """Factory: scenario("name", kafka_bootstrap, clickhouse_url, customers=..., **settings overrides)."""
    made: list[Scenario] = []

    def make(name: str, kafka_bootstrap: str, clickhouse_url: str, **kwargs: Any) -> Scenario:
        made.append(Scenario(name, kafka_bootstrap, clickhouse_url, tmp_path, fault_report, **kwargs))
        return made[-1]

    yield make
    for item in made:
        item.close()

"""The consumer-lag gauge lists exactly the partitions the worker holds now: a partition that moved away stops
being reported here, so Prometheus never sums two workers' figures for it nor keeps a backlog that drained
elsewhere (the rules' CemConsumerLagGrowing and CemNoProgress read it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest

from cem import metrics
from devtools.scrape import metric_value


def lag_lines() -> dict[tuple[str, str], float]:
    text = generate_latest(metrics.REGISTRY).decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("cem_consumer_lag_messages{"):
            topic = line.split('topic="', 1)[1].split('"', 1)[0]
            partition = line.split('partition="', 1)[1].split('"', 1)[0]
            found[(topic, partition)] = metric_value(text, "cem_consumer_lag_messages",
                                                     {"topic": topic, "partition": partition})
    return found


@pytest.fixture(autouse=True)
def no_lag_exported() -> Iterator[None]:
    metrics.export_consumer_lag({})
    yield
    metrics.export_consumer_lag({})


def test_partitions_no_longer_held_disappear() -> None:
    metrics.export_consumer_lag({("cem.raw.web", 0): 40, ("cem.raw.web", 1): 3, ("cem.resolve", 0): 7})
    assert lag_lines() == {("cem.raw.web", "0"): 40, ("cem.raw.web", "1"): 3, ("cem.resolve", "0"): 7}
    # A rebalance: the resolver partition and web/0 moved to another worker, web/2 came here.
    metrics.export_consumer_lag({("cem.raw.web", 1): 0, ("cem.raw.web", 2): 12})
    assert lag_lines() == {("cem.raw.web", "1"): 0, ("cem.raw.web", "2"): 12}
    metrics.export_consumer_lag({})
    assert lag_lines() == {}


def test_a_negative_lag_reads_zero_and_a_partition_coming_back_is_reported_again() -> None:
    metrics.export_consumer_lag({("cem.resolve", 0): -2})
    assert lag_lines() == {("cem.resolve", "0"): 0}
    metrics.export_consumer_lag({})
    metrics.export_consumer_lag({("cem.resolve", 0): 9})
    assert lag_lines() == {("cem.resolve", "0"): 9}

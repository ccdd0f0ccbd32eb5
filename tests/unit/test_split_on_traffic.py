"""The partitioned stages (fronts, the graph's owner, customer partitions with hand-offs) on the benchmark's
simulated traffic, replicas behind the owner: every unique event lands once, with the single resolver's grouping,
duplicate count, sessions and journeys, in every delivery order the benchmark uses (bench/split_inproc.py)."""

from __future__ import annotations

import pytest

from bench.split_inproc import run


@pytest.mark.parametrize("order", ["time", "shuffled", "channels"])
def test_the_split_equals_the_single_resolver_on_simulated_traffic(order: str) -> None:
    result = run(events=4_000, fronts=4, partitions=5, lag=2, order=order, batch=100)
    assert result["check"] == {"every unique event folded once": True,
                               "the single resolver's duplicate count": True,
                               "the single resolver's grouping": True}
    assert result["sessions_and_journeys_equal_the_single_resolvers"] is True
    assert result["handoffs"] > 0  # merges crossed partitions: the hand-off path ran

"""A customer partition's memory is bounded by the dedup window: the events it folded and the hops it took are
forgotten by the minute they were added in once the window is past, and what it knew as written before its
restore once a whole window has passed since (a copy that old is new to the fronts too)."""

from __future__ import annotations

import pytest

from cem.domain.customer_stage import CustomerPartition, PartitionStep, customer_partition
from cem.domain.front import Routed
from cem.domain.resolver import ResolverConfig
from tests.unit.factories import MINUTE_MS, NOW_MS, event

PARTITIONS = 2
WINDOW_MS = 30 * MINUTE_MS


def on(partition: int, prefix: str) -> str:
    return next(f"{prefix}{i}" for i in range(1000) if customer_partition(f"{prefix}{i}", PARTITIONS) == partition)


def partition_with_a_merged_customer(window_ms: int) -> tuple[CustomerPartition, str, str]:
    """Partition 0 with a customer of its own and one merged into a customer of partition 1."""
    part = CustomerPartition(0, PARTITIONS, ResolverConfig().session_gap_ms, window_ms=window_ms)
    own, merged = on(0, "own"), on(0, "merged")
    part.handed[merged] = on(1, "survivor")
    return part, own, merged


def step(part: CustomerPartition, now_ms: int, *routed: Routed) -> PartitionStep:
    effects, step = part.start_batch(now_ms), PartitionStep()
    for item in routed:
        part.fold(item, effects, step)
    return step


@pytest.mark.parametrize("later_ms", [WINDOW_MS - MINUTE_MS, WINDOW_MS + 2 * MINUTE_MS])
def test_an_event_folded_and_a_hop_taken_are_remembered_within_the_window_and_forgotten_after_it(
        later_ms: int) -> None:
    part, own, merged = partition_with_a_merged_customer(WINDOW_MS)
    folded, forwarded = event("e-own", NOW_MS, [("email", "own@x.io")]), event("e-m", NOW_MS, [("email", "m@x.io")])
    step(part, NOW_MS, Routed(folded, own), Routed(forwarded, merged))
    part.handed.pop(merged)  # the merged customer comes back to life: only the hop still sends its copies on

    again = step(part, NOW_MS + later_ms, Routed(folded, own, replay=True), Routed(forwarded, merged, replay=True))

    if later_ms < WINDOW_MS:
        assert (again.replays, [r.customer_id for _, r in again.forwarded]) == (1, [on(1, "survivor")])
        assert set(part.folded) == {"e-own"} and set(part.forwards) == {("e-m", merged)}
    else:  # both forgotten: copies that old are new to the fronts, and folded here as new
        assert (again.replays, again.forwarded) == (0, [])
        assert set(part.folded) == {"e-own", "e-m"} and part.forwards == {}


def test_what_was_written_before_the_restore_is_forgotten_once_a_whole_window_has_passed_since() -> None:
    part, own, _ = partition_with_a_merged_customer(WINDOW_MS)
    part.written_before = frozenset({"w"})
    written = event("w", NOW_MS - MINUTE_MS, [("email", "own@x.io")])

    assert step(part, NOW_MS, Routed(written, own, replay=True)).replays == 1
    assert step(part, NOW_MS + WINDOW_MS - MINUTE_MS, Routed(written, own, replay=True)).replays == 1
    assert part.written_before == {"w"}

    late = step(part, NOW_MS + WINDOW_MS + 2 * MINUTE_MS, Routed(written, own, replay=True))

    assert (part.written_before, late.replays, set(part.folded)) == (frozenset(), 0, {"w"})


def test_a_partition_with_no_window_remembers_everything() -> None:
    part, own, merged = partition_with_a_merged_customer(0)
    step(part, NOW_MS, Routed(event("e-own", NOW_MS, [("email", "own@x.io")]), own),
         Routed(event("e-m", NOW_MS, [("email", "m@x.io")]), merged))

    step(part, NOW_MS + 365 * 24 * 60 * MINUTE_MS)

    assert set(part.folded) == {"e-own"} and set(part.forwards) == {("e-m", merged)}

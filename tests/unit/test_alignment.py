"""Which raw partitions a worker pauses to read a backlog in event time (streams/alignment.py)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.alignment import EventTimeAlignment

SLACK = 60_000
MINUTE = 60_000


def aligned(**heads: int) -> EventTimeAlignment:
    """Partitions named by keyword, each with one record delivered at offset 0 and event time `head`."""
    alignment = EventTimeAlignment(slack_ms=SLACK, max_pause_seconds=5.0)
    for partition, head in heads.items():
        alignment.delivered(partition, 0, head)
    return alignment


def test_a_partition_further_ahead_than_the_slack_is_paused() -> None:
    alignment = aligned(busy=0, quiet=SLACK + 1, near=SLACK)
    decision = alignment.decide({"busy": 100, "quiet": 100, "near": 100}, now=0.0)
    assert decision.pause == {"quiet"}
    assert decision.resume == set()
    assert decision.spread_ms == SLACK + 1
    assert alignment.paused() == {"quiet"}


def test_it_is_resumed_once_the_slowest_is_within_half_the_slack() -> None:
    alignment = aligned(busy=0, quiet=10 * MINUTE)
    alignment.decide({"busy": 100, "quiet": 100}, now=0.0)
    alignment.delivered("busy", 1, 10 * MINUTE - SLACK // 2 - 1)
    assert alignment.decide({"busy": 100, "quiet": 100}, now=1.0).resume == set()
    alignment.delivered("busy", 2, 10 * MINUTE - SLACK // 2)
    decision = alignment.decide({"busy": 100, "quiet": 100}, now=2.0)
    assert decision.resume == {"quiet"}
    assert alignment.paused() == set()


def test_live_traffic_read_to_its_end_pauses_nothing() -> None:
    alignment = aligned(busy=0, quiet=10 * MINUTE)
    alignment.decide({"busy": 100, "quiet": 100}, now=0.0)
    # Both read up to their end offsets: nothing left to align, and the paused one is let go.
    decision = alignment.decide({"busy": 1, "quiet": 1}, now=1.0)
    assert decision.pause == set()
    assert decision.resume == {"quiet"}


def test_a_partition_read_to_its_end_holds_nobody_back() -> None:
    alignment = aligned(done=0, busy=10 * MINUTE, quiet=12 * MINUTE)
    decision = alignment.decide({"done": 1, "busy": 100, "quiet": 100}, now=0.0)
    assert decision.pause == {"quiet"}  # ahead of busy, the slowest still to read; `done` does not count


def test_an_unknown_event_time_still_to_read_holds_nothing_back() -> None:
    alignment = aligned(busy=0, quiet=10 * MINUTE)
    alignment.decide({"busy": 100, "quiet": 100}, now=0.0)
    # A partition assigned since, with records and nothing delivered yet: it may be the oldest of all.
    decision = alignment.decide({"busy": 100, "quiet": 100, "new": 50}, now=1.0)
    assert decision.pause == set()
    assert decision.resume == {"quiet"}


def test_nothing_delivered_but_read_up_to_its_committed_position_is_not_still_to_read() -> None:
    alignment = aligned(busy=0, quiet=10 * MINUTE)
    decision = alignment.decide({"busy": 100, "quiet": 100, "caught_up": 50}, now=0.0, read_from={"caught_up": 50})
    assert decision.pause == {"quiet"}


def test_a_pause_lasts_at_most_its_limit_then_reads_freely_as_long() -> None:
    alignment = aligned(stuck=0, quiet=10 * MINUTE)
    ends = {"stuck": 100, "quiet": 100}
    assert alignment.decide(ends, now=0.0).pause == {"quiet"}
    assert alignment.decide(ends, now=4.9).resume == set()
    assert alignment.decide(ends, now=5.0).resume == {"quiet"}
    assert alignment.decide(ends, now=9.9).pause == set()  # free until 10.0
    assert alignment.decide(ends, now=10.0).pause == {"quiet"}


def test_a_partition_no_longer_assigned_is_let_go_and_forgotten() -> None:
    alignment = aligned(busy=0, quiet=10 * MINUTE)
    alignment.decide({"busy": 100, "quiet": 100}, now=0.0)
    assert alignment.decide({"busy": 100}, now=1.0).resume == {"quiet"}
    alignment.forget(["quiet", "busy"])
    assert alignment.positions == {}


def test_records_without_an_event_time_move_the_offset_not_the_head() -> None:
    alignment = aligned(busy=5 * MINUTE)
    alignment.delivered("busy", 7, None)
    alignment.delivered("busy", 3, 1)  # older offsets and event times never move it back
    position = alignment.positions["busy"]
    assert (position.head_ms, position.next_offset) == (5 * MINUTE, 8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 30 * MINUTE), st.booleans()), max_size=60),
       st.lists(st.integers(0, 3), min_size=4, max_size=4))
def test_the_slowest_partition_still_to_read_is_never_paused(steps: list[tuple[str, int, bool]],
                                                             remaining: list[int]) -> None:
    """Whatever was delivered, in whatever order: after each decision the oldest partition still to read is
    reading, every paused partition is ahead of it by more than half the slack, and none is paused twice."""
    alignment = EventTimeAlignment(slack_ms=SLACK, max_pause_seconds=5.0)
    offsets = dict.fromkeys("abcd", 0)
    for now, (partition, occurred_ms, decide) in enumerate(steps):
        alignment.delivered(partition, offsets[partition], occurred_ms)
        offsets[partition] += 1
        if not decide:
            continue
        before = alignment.paused()
        ends = {p: offsets[p] + remaining[i] for i, p in enumerate("abcd") if offsets[p]}
        decision = alignment.decide(ends, now=float(now))
        assert not decision.pause & before
        assert decision.resume <= before
        to_read = [p for p in ends if ends[p] > offsets[p]]
        heads = {p: alignment.positions[p].head_ms for p in to_read}
        paused = alignment.paused()
        assert paused <= set(to_read)
        if to_read:
            floor = min(heads.values())
            assert any(heads[p] == floor and p not in paused for p in to_read)
            assert all(heads[p] - floor > SLACK // 2 for p in paused)

"""cem.domain.customer_stage: a merged customer's sessions and journeys move to the survivor's partition and end
as the single resolver's; what still arrives for it is forwarded; a survivor that merged on passes a hand-off on;
versions are applied once and in order; a hand-off is received above the version it was sent at."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cem.domain.customer_stage import CustomerPartition, HandOff, PartitionStep, customer_partition
from cem.domain.front import Routed
from cem.domain.identity_owner import IdentityOwner, IdentityRequest
from cem.domain.identity_replica import IdentityChanges, identity_changes
from cem.domain.journeys import Session
from cem.domain.resolver import Resolver, ResolverConfig
from schemas.split_wire import decode_handoff, encode_handoff
from tests.unit.factories import MINUTE_MS, NOW_MS, cid, event

GAP = 30 * MINUTE_MS


def spread(count: int, partitions: int, prefix: str, customer_of: Callable[[str], str] = cid) -> list[str]:
    """Names whose customers land on `count` different partitions (by default the customer an event founds)."""
    found: dict[int, str] = {}
    for name in (f"{prefix}{i}" for i in range(1000)):
        found.setdefault(customer_partition(customer_of(name), partitions), name)
        if len(found) == count:
            return list(found.values())
    raise AssertionError("no such names")


def test_a_merge_across_partitions_gives_the_single_resolvers_session_and_journey() -> None:
    a, b = spread(2, 2, "ev")
    events = [event(a, NOW_MS, [("email", "a@x.io")], issue_ref="7"),
              event(b, NOW_MS + 10 * MINUTE_MS, [("phone", "+15550100")], issue_ref="7"),
              event("glue", NOW_MS + 50 * MINUTE_MS, [("email", "a@x.io"), ("phone", "+15550100")])]
    reference = Resolver(ResolverConfig())
    reference.process(events, NOW_MS)

    owner = IdentityOwner(ResolverConfig())
    parts = [CustomerPartition(i, 2, GAP) for i in range(2)]
    versions = [identity_changes(owner.process([IdentityRequest.of(e)], NOW_MS + i)) for i, e in enumerate(events)]
    for e in events[:2]:
        part = parts[customer_partition(cid(e.event_id), 2)]
        part.fold(Routed(e, cid(e.event_id)), part.start_batch(NOW_MS), PartitionStep())
    survivor = owner.graph.customer_of_set(events[2].identifiers)
    assert survivor in (cid(a), cid(b))
    loser = cid(b) if survivor == cid(a) else cid(a)
    sender, receiver = parts[customer_partition(loser, 2)], parts[customer_partition(survivor, 2)]

    step = PartitionStep()
    sent = sender.start_batch(NOW_MS + 10)
    for changes in versions:
        sender.apply(changes, sent, step)
    assert [target for target, _ in step.handoffs] == [receiver.index] and sent.sessions == {}
    [(_, handoff)] = step.handoffs
    got = receiver.start_batch(NOW_MS + 10, after_version=handoff.version)
    receiver.receive(handoff, got, PartitionStep())
    receiver.fold(Routed(events[2], survivor), got, PartitionStep())

    assert sender.sessions.by_customer == {} and sender.journeys.by_customer == {}
    assert receiver.sessions.by_customer == reference.sessions.by_customer
    assert receiver.journeys.by_customer == reference.journeys.by_customer
    assert [(s.from_id, s.into_id) for s in got.session_aliases] == \
        [(reference.sessions.by_customer[survivor][0].members[0], reference.sessions.by_customer[survivor][0]
          .session_id)]
    assert got.version > handoff.version

    late = PartitionStep()  # a front whose replica had not seen the merge routes to the merged customer
    sender.fold(Routed(events[0], loser), sender.start_batch(NOW_MS + 20), late)
    assert late.forwarded == [(receiver.index, Routed(events[0], survivor))]


def test_a_hand_off_for_a_survivor_that_merged_on_is_passed_on() -> None:
    a, b, c = spread(3, 3, "c", str)
    parts = [CustomerPartition(i, 3, GAP) for i in range(3)]
    on = {customer: parts[customer_partition(customer, 3)] for customer in (a, b, c)}
    on[a].fold(Routed(event("x", NOW_MS, [("email", "a@x.io")]), a), on[a].start_batch(NOW_MS), PartitionStep())
    merges = [IdentityChanges(1, aliases={a: b}), IdentityChanges(2, aliases={b: c})]
    on[b].apply(merges[0], on[b].start_batch(NOW_MS), PartitionStep())
    on[b].apply(merges[1], on[b].start_batch(NOW_MS), PartitionStep())  # b merged on into c
    step = PartitionStep()
    on[a].apply(merges[0], on[a].start_batch(NOW_MS), step)
    [(target, handoff)] = step.handoffs
    assert target == on[b].index
    passed = PartitionStep()
    on[b].receive(handoff, on[b].start_batch(NOW_MS, handoff.version), passed)
    [(target, onward)] = passed.handoffs
    assert (target, onward.from_id, onward.into_id) == (on[c].index, a, c)
    effects = on[c].start_batch(NOW_MS, onward.version)
    on[c].receive(onward, effects, PartitionStep())
    assert [(s.customer_id, s.events) for s in on[c].sessions.by_customer[c]] == [(c, 1)]
    assert list(effects.sessions.values()) == on[c].sessions.by_customer[c]


def test_versions_apply_once_and_a_customer_live_again_keeps_its_new_events() -> None:
    a, b = spread(2, 2, "k", str)
    part = CustomerPartition(customer_partition(a, 2), 2, GAP)
    part.fold(Routed(event("x", NOW_MS, [("email", "a@x.io")]), a), part.start_batch(NOW_MS), PartitionStep())
    merge, again = IdentityChanges(5, aliases={a: b}), IdentityChanges(6, aliases={a: a})
    first = PartitionStep()
    part.apply(merge, part.start_batch(NOW_MS), first)
    redelivered = PartitionStep()
    part.apply(merge, part.start_batch(NOW_MS), redelivered)
    assert (len(first.handoffs), redelivered.handoffs, part.applied) == (1, [], 5)
    part.apply(again, part.start_batch(NOW_MS), PartitionStep())  # a recompute re-created it
    step = PartitionStep()
    effects = part.start_batch(NOW_MS)
    part.fold(Routed(event("y", NOW_MS, [("email", "a@x.io")]), a), effects, step)
    assert step.forwarded == [] and [r.customer_id for r in effects.interactions] == [a]


def test_a_merge_within_one_partition_is_folded_in_the_same_batch() -> None:
    part = CustomerPartition(0, 1, GAP)
    effects = part.start_batch(NOW_MS)
    for name, at in (("a", NOW_MS), ("b", NOW_MS + 5 * MINUTE_MS)):
        part.fold(Routed(event(name, at, [("email", f"{name}@x.io")]), name), effects, PartitionStep())
    step = PartitionStep()
    merged = part.start_batch(NOW_MS + 1)
    part.apply(IdentityChanges(1, aliases={"b": "a"}), merged, step)
    assert (step.handoffs, step.forwarded) == ([], [])
    [session] = part.sessions.by_customer["a"]
    assert (session.events, "b" in part.sessions.by_customer) == (2, False)
    assert merged.sessions == {session.session_id: session} and len(merged.session_aliases) == 1


def test_a_hand_off_must_be_received_above_the_version_it_was_sent_at() -> None:
    part = CustomerPartition(0, 1, GAP)
    effects = part.start_batch(NOW_MS)
    with pytest.raises(ValueError, match="later version"):
        part.receive(HandOff("a", "b", [], [], effects.version), effects, PartitionStep())


def test_a_replay_takes_its_first_copys_hops_even_when_the_customer_came_back_to_life() -> None:
    a, b = spread(2, 2, "r", str)
    parts = {c: CustomerPartition(customer_partition(c, 2), 2, GAP) for c in (a, b)}
    x = event("x", NOW_MS, [("email", "a@x.io")])
    parts[a].apply(IdentityChanges(1, aliases={a: b}), parts[a].start_batch(NOW_MS), PartitionStep())
    first = PartitionStep()
    parts[a].fold(Routed(x, a), parts[a].start_batch(NOW_MS), first)
    [(_, hop)] = first.forwarded
    folded = parts[b].start_batch(NOW_MS)
    parts[b].fold(hop, folded, PartitionStep())
    assert [r.customer_id for r in folded.interactions] == [b]
    parts[a].apply(IdentityChanges(2, aliases={a: a}), parts[a].start_batch(NOW_MS), PartitionStep())  # alive again

    replay = PartitionStep()
    here = parts[a].start_batch(NOW_MS)
    parts[a].fold(Routed(x, a, replay=True), here, replay)
    assert here.interactions == [] and replay.forwarded == [(parts[b].index, Routed(x, b, replay=True))]
    there = PartitionStep()
    again = parts[b].start_batch(NOW_MS)
    parts[b].fold(replay.forwarded[0][1], again, there)
    assert (again.interactions, there.replays) == ([], 1)
    fresh = parts[a].start_batch(NOW_MS)  # a new event for the customer come back to life folds here
    parts[a].fold(Routed(event("y", NOW_MS, [("email", "a@x.io")]), a), fresh, PartitionStep())
    assert [r.customer_id for r in fresh.interactions] == [a]


def test_a_redelivered_hand_off_is_applied_once() -> None:
    part = CustomerPartition(0, 1, GAP)
    session = Session("s1", "a", NOW_MS, NOW_MS, 1, {"web"})
    handoff = HandOff("a", "b", [session], [], NOW_MS * 1000)
    for _ in range(2):
        step = PartitionStep()
        part.receive(decode_handoff(encode_handoff(handoff)), part.start_batch(NOW_MS + 1), step)
    assert step.replays == 1
    assert [(s.customer_id, s.events) for s in part.sessions.by_customer["b"]] == [("b", 1)]


@pytest.mark.parametrize("same_partition", [True, False])
def test_a_replay_whose_first_copy_was_never_sent_is_folded_once_at_the_survivor(same_partition: bool) -> None:
    """The front died before Kafka had its first copy: the replay is the only copy. It reaches the merged
    customer's partition, which has no hop for it, so it takes the current merge and is folded at the survivor,
    whether the survivor lives on the same partition or another one."""
    partitions = 3
    names = [f"m{i}" for i in range(200)]
    a = names[0]
    b = next(n for n in names[1:] if (customer_partition(n, partitions) == customer_partition(a, partitions))
             == same_partition)
    parts = [CustomerPartition(i, partitions, GAP) for i in range(partitions)]
    here, there = parts[customer_partition(a, partitions)], parts[customer_partition(b, partitions)]
    here.apply(IdentityChanges(1, aliases={a: b}), here.start_batch(NOW_MS), PartitionStep())
    pending = [Routed(event("x", NOW_MS, [("email", "a@x.io")]), a, replay=True)]
    folded: list[str] = []
    for _ in range(4):  # at most a hop or two; a loop would keep it in flight
        if not pending:
            break
        item = pending.pop()
        part = parts[customer_partition(item.customer_id, partitions)]
        effects, step = part.start_batch(NOW_MS + 1), PartitionStep()
        part.fold(item, effects, step)
        folded += [r.customer_id for r in effects.interactions]
        pending += [routed for _, routed in step.forwarded]
    assert (folded, pending) == ([b], [])
    assert there.folded == {"x": b}


def _two_copies_of_one_session() -> tuple[CustomerPartition, Session, Session]:
    """Partition 0 of 1 folds e1, e2 under A, hands a copy of that session on (to B's side, modelled by a second
    book), then folds e3 into it: the copy B absorbed is older than the session A holds."""
    part = CustomerPartition(0, 1, GAP)
    for i in (1, 2):
        part.fold(Routed(event(f"e{i}", NOW_MS + i * MINUTE_MS, [("email", "a@x.io")]), "A"),
                  part.start_batch(NOW_MS), PartitionStep())
    [session] = part.sessions.by_customer["A"]
    sent = decode_handoff(encode_handoff(HandOff("A", "B", [session], [], 1))).sessions[0]
    part.fold(Routed(event("e3", NOW_MS + 3 * MINUTE_MS, [("email", "a@x.io")]), "A"),
              part.start_batch(NOW_MS), PartitionStep())
    elsewhere = CustomerPartition(0, 1, GAP)
    elsewhere.fold(Routed(event("b1", NOW_MS, [("phone", "+15550100")]), "B"),
                   elsewhere.start_batch(NOW_MS), PartitionStep())
    elsewhere.sessions.by_customer["A"] = [sent]
    elsewhere.sessions.move_customer("A", "B")
    [absorbed] = elsewhere.sessions.by_customer["B"]
    [grown] = part.sessions.by_customer["A"]
    return part, absorbed, grown


def test_a_session_that_absorbed_an_older_copy_of_a_held_one_counts_each_event_once() -> None:
    """The held session grew (e3) after its copy was handed on and absorbed into B's session (b1): B's session
    handed back to A brings e1, e2 again, and only b1 is new."""
    part, absorbed, _ = _two_copies_of_one_session()
    assert absorbed.events == 3
    effects = part.start_batch(NOW_MS + 10 * MINUTE_MS, after_version=part.version)
    part.receive(HandOff("B", "A", [absorbed], [], part.version - 1), effects, PartitionStep())
    [session] = part.sessions.by_customer["A"]
    assert (session.events, session.start_ms, session.end_ms) == (4, NOW_MS, NOW_MS + 3 * MINUTE_MS)
    assert list(effects.sessions.values()) == [session] and session.events == sum(session.lines.values())


def test_a_grown_copy_of_a_session_held_as_absorbed_adds_only_its_new_events() -> None:
    """The other way round: B's session (holding the older copy) is here, and the grown session arrives."""
    _, absorbed, grown = _two_copies_of_one_session()
    part = CustomerPartition(0, 1, GAP)
    part.sessions.by_customer["B"] = [absorbed]
    effects = part.start_batch(NOW_MS + 10 * MINUTE_MS)
    part.receive(HandOff("A", "B", [grown], [], part.version - 1), effects, PartitionStep())
    [session] = part.sessions.by_customer["B"]
    assert (session.events, session.start_ms, session.end_ms) == (4, NOW_MS, NOW_MS + 3 * MINUTE_MS)
    assert list(effects.sessions.values()) == [session]

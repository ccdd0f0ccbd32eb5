"""A customer partition restarted around a merge (cem.domain.customer_stage, "Restarts"): the stages write to the
warehouse fake (the contract-tested stand-in for ClickHouse) through their SplitWarehouse, a restarted partition is
restored from it, and the survivor's sessions and journeys end as the single resolver's, however the hand-off was
lost, redelivered or sent again."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from cem.domain.customer_stage import CustomerPartition, HandOff, PartitionStep, customer_partition
from cem.domain.effects import Effects
from cem.domain.front import Routed
from cem.domain.identity_owner import IdentityOwner, IdentityRequest
from cem.domain.identity_replica import IdentityChanges, identity_changes
from cem.domain.model import Interaction
from cem.domain.resolver import Resolver, ResolverConfig
from cem.service.split_service import SplitWarehouse, partition_from
from cem.settings import Settings
from schemas.split_wire import decode_handoff, encode_handoff
from sinks.fake import FakeWarehouseServer
from sinks.writer import PARTITION_WRITE_ORDER, effect_columns
from tests.unit.factories import MINUTE_MS, NOW_MS, cid, event, sid
from tests.unit.test_customer_stage import spread

PARTITIONS = 2


@dataclass
class Split:
    """The owner and two customer partitions, each writing its rows to one warehouse."""

    server: FakeWarehouseServer = field(default_factory=FakeWarehouseServer)
    owner: IdentityOwner = field(default_factory=lambda: IdentityOwner(ResolverConfig()))
    clock_ms: int = NOW_MS

    def __post_init__(self) -> None:
        self.parts = [CustomerPartition(i, PARTITIONS, ResolverConfig().session_gap_ms) for i in range(PARTITIONS)]

    def warehouse(self, stage: str) -> SplitWarehouse:
        settings = Settings(sink_retry_max_seconds=0.001, state_store="memory")
        return SplitWarehouse(settings, stage, clock=lambda: self.clock_ms / 1000, open_warehouse=self.server.connect)

    def identity(self, event: Interaction) -> IdentityChanges:
        self.clock_ms += 1_000
        effects = self.owner.process([IdentityRequest.of(event)], self.clock_ms)
        self.warehouse("owner").write(effects)
        return identity_changes(effects)

    def step(self, index: int, after_version: int = 0) -> tuple[Effects, PartitionStep]:
        self.clock_ms += 1_000
        return self.parts[index].start_batch(self.clock_ms, after_version), PartitionStep()

    def write(self, effects: Effects) -> None:
        self.warehouse("customers").write(effects)

    def fold(self, event: Interaction, customer_id: str) -> None:
        index = customer_partition(customer_id, PARTITIONS)
        effects, step = self.step(index)
        self.parts[index].fold(Routed(event, customer_id), effects, step)
        assert step.forwarded == []
        self.write(effects)

    def restart(self, index: int) -> list[HandOff]:
        """The partition restored from the warehouse; its first step: the hand-offs it sends (over the wire)."""
        self.parts[index] = partition_from(self.warehouse("customers").restored(), index, PARTITIONS)
        effects, step = self.step(index)
        self.parts[index].hand_on_restored(effects, step)
        self.write(effects)
        return [decode_handoff(encode_handoff(handoff)) for _, handoff in step.handoffs]

    def receive(self, handoff: HandOff, write: bool = True) -> Effects:
        index = customer_partition(handoff.into_id, PARTITIONS)
        effects, step = self.step(index, handoff.version)
        self.parts[index].receive(handoff, effects, step)
        assert step.handoffs == []
        if write:
            self.write(effects)
        return effects


def merged_pair() -> tuple[list[Interaction], Resolver]:
    """Two customers on different partitions, each with a session and a journey of one issue, then an event
    that merges them, 50 minutes later (so the survivor's sessions stay apart and the journeys become one)."""
    a, b = spread(2, PARTITIONS, "r")
    events = [event(a, NOW_MS, [("email", "a@x.io")], issue_ref="9"),
              event(b, NOW_MS + 10 * MINUTE_MS, [("phone", "+15550100")], issue_ref="9"),
              event("glue", NOW_MS + 50 * MINUTE_MS, [("email", "a@x.io"), ("phone", "+15550100")])]
    reference = Resolver(ResolverConfig())
    reference.process(events, NOW_MS)
    return events, reference


def merged_on_the_sender(split: Split, events: list[Interaction]) -> tuple[int, int, list[HandOff]]:
    """Both customers folded and written, the merge applied by the sender: (sender, receiver, its hand-offs)."""
    for e in events[:2]:
        split.fold(e, cid(e.event_id))
    versions = [split.identity(e) for e in events]
    survivor = split.owner.graph.customer_of_set(events[2].identifiers)
    loser = next(cid(e.event_id) for e in events[:2] if cid(e.event_id) != survivor)
    sender, receiver = customer_partition(loser, PARTITIONS), customer_partition(survivor, PARTITIONS)
    effects, step = split.step(sender)
    for changes in versions:
        split.parts[sender].apply(changes, effects, step)
    split.write(effects)
    return sender, receiver, [decode_handoff(encode_handoff(handoff)) for _, handoff in step.handoffs]


def assert_as_the_single_resolver(split: Split, glue: Interaction, reference: Resolver) -> None:
    """The merging event folded at the survivor: its partition holds the single resolver's sessions and journeys,
    and so does every partition restored from the warehouse afterwards, with nothing left to hand on."""
    survivor = split.owner.graph.customer_of_set(glue.identifiers)
    split.fold(glue, survivor)
    receiver = split.parts[customer_partition(survivor, PARTITIONS)]
    assert receiver.sessions.by_customer == reference.sessions.by_customer
    assert receiver.journeys.by_customer == reference.journeys.by_customer
    for index in range(PARTITIONS):
        assert split.restart(index) == []
    restored = {c: s for part in split.parts for c, s in part.sessions.by_customer.items() if s}
    assert {c: [(x.session_id, x.events) for x in s] for c, s in restored.items()} == \
        {c: [(x.session_id, x.events) for x in s] for c, s in reference.sessions.by_customer.items()}
    assert {c: {j.journey_id: sorted(j.events) for j in js.values()}
            for part in split.parts for c, js in part.journeys.by_customer.items() if js} == \
        {c: {j.journey_id: sorted(j.events) for j in js.values()} for c, js in reference.journeys.by_customer.items()}


def test_a_hand_off_lost_with_its_sender_is_sent_again_by_the_restored_sender() -> None:
    events, reference = merged_pair()
    split = Split()
    sender, receiver, lost = merged_on_the_sender(split, events)
    assert len(lost) == 1  # never reached the broker: the sender died
    again = split.restart(sender)
    assert [(h.from_id, h.into_id) for h in again] == [(lost[0].from_id, lost[0].into_id)]
    split.receive(again[0])
    assert split.restart(sender) == []  # the survivor's partition wrote it: nothing is held any more
    assert_as_the_single_resolver(split, events[2], reference)


@pytest.mark.parametrize("clock_behind_ms", [0, 60_000, 3_600_000])
def test_a_receiver_restored_on_a_slower_clock_versions_its_rows_above_the_hand_off_it_wrote(
        clock_behind_ms: int) -> None:
    """A received hand-off writes session and journey rows and no interaction row. The receiver restarts on a
    worker whose clock is behind: versioned from its interaction rows and that clock, its next rows could sort
    before (or tie with) the hand-off's, and argMax has no tie-break, so the views and the next restore would
    read the hand-off's older rows. Every version it writes now is above them."""
    events, reference = merged_pair()
    split = Split()
    sender, receiver, [handoff] = merged_on_the_sender(split, events)
    received = split.receive(handoff).version
    assert not any(row["version"] == received for row in split.server.rows("interaction_log"))
    split.clock_ms -= clock_behind_ms + 2_000  # the restart's step and the next fold each add 1 s
    assert split.restart(receiver) == []
    assert split.parts[receiver].version > received
    assert_as_the_single_resolver(split, events[2], reference)


@pytest.mark.parametrize("receiver_restarts", [False, True], ids=["receiver-running", "receiver-restarted"])
def test_a_hand_off_received_before_the_sender_restarted_is_folded_in_once(receiver_restarts: bool) -> None:
    """The receiver took the first hand-off but had not written it when the sender was restored from the
    warehouse: the sender sends it again. A restarted receiver gets the first one again too (never committed)."""
    events, reference = merged_pair()
    split = Split()
    sender, receiver, [first] = merged_on_the_sender(split, events)
    unwritten = split.receive(first, write=False)
    [second] = split.restart(sender)
    assert second.version > first.version
    if receiver_restarts:
        assert split.restart(receiver) == []
        split.receive(first)
    else:
        split.write(unwritten)
    effects = split.receive(second)
    assert (effects.sessions, effects.journeys, effects.session_aliases) == ({}, {}, [])
    assert_as_the_single_resolver(split, events[2], reference)


def test_a_copy_read_again_after_every_partition_restarted_is_dropped_where_its_first_copy_was_folded() -> None:
    """A replayed routed copy of an event folded before a merge, addressed to the merged customer: the restored
    partitions know that customer as merged and the event as folded, so the copy is forwarded at most and never
    folded twice."""
    events, _ = merged_pair()
    split = Split()
    sender, receiver, [handoff] = merged_on_the_sender(split, events)
    split.receive(handoff)
    loser = handoff.from_id
    for index in range(PARTITIONS):
        split.restart(index)
    first = next(e for e in events if cid(e.event_id) == loser)
    pending, folded = [Routed(first, loser, replay=True)], []
    while pending:
        routed = pending.pop()
        effects, step = split.step(customer_partition(routed.customer_id, PARTITIONS))
        split.parts[customer_partition(routed.customer_id, PARTITIONS)].fold(routed, effects, step)
        folded += [r.interaction.event_id for r in effects.interactions]
        pending += [item for _, item in step.forwarded]
    assert folded == []


@pytest.mark.parametrize("restarted", ["every", "sender", "receiver"])
def test_a_copy_read_again_after_a_restart_is_dropped_though_the_customer_it_was_addressed_to_came_back(
        restarted: str) -> None:
    """A front with a stale replica addressed an event to a customer that had merged away: its partition forwarded
    it to the survivor, which folded and wrote it. Partitions restart (a restored one has no hops), and the
    addressee comes back to life (a recompute) before the copy read again arrives. A restored partition knows
    every recent event with an interaction row as written, so the copy is dropped wherever its hops take it
    instead of being folded a second time under the customer come back."""
    events, _ = merged_pair()
    split = Split()
    sender, receiver, [handoff] = merged_on_the_sender(split, events)
    split.receive(handoff)
    loser, survivor = handoff.from_id, handoff.into_id
    late = event("late", NOW_MS + 60 * MINUTE_MS, [("email", "a@x.io")] if cid(events[0].event_id) == loser
                 else [("phone", "+15550100")])
    effects, step = split.step(sender)
    split.parts[sender].fold(Routed(late, loser), effects, step)
    [(to, forwarded)] = step.forwarded
    assert (to, forwarded.customer_id) == (receiver, survivor)
    effects, step = split.step(receiver)
    split.parts[receiver].fold(forwarded, effects, step)
    split.write(effects)
    assert [r.interaction.event_id for r in effects.interactions] == ["late"]
    for index in {"every": range(PARTITIONS), "sender": [sender], "receiver": [receiver]}[restarted]:
        split.restart(index)
    effects, step = split.step(sender)
    split.parts[sender].apply(IdentityChanges(split.parts[sender].applied + 1, aliases={loser: loser}), effects,
                              step)
    assert loser not in split.parts[sender].handed  # come back to life: what it receives now is folded here

    pending, folded, dropped = [Routed(late, loser, replay=True)], [], 0
    while pending:
        routed = pending.pop()
        index = customer_partition(routed.customer_id, PARTITIONS)
        effects, step = split.step(index)
        split.parts[index].fold(routed, effects, step)
        folded += [r.interaction.event_id for r in effects.interactions]
        dropped += step.replays
        pending += [item for _, item in step.forwarded]

    assert (folded, dropped) == ([], 1)


def test_a_bridge_cut_short_after_its_interaction_row_is_written_again_by_the_restored_partition() -> None:
    """An event bridges a customer's two sessions; its batch dies after its first insert (the interaction row,
    written with the session it joined) and before the alias and the sessions' rows. The partition restored next
    holds the two sessions apart, as their rows say: it joins them again and writes the session, the alias and
    its override, so the warehouse has one session of three events, as folding the three gives."""
    split = Split()
    ids = [("email", "b@x.io")]
    first, last, bridge = (event("b1", NOW_MS, ids), event("b2", NOW_MS + 50 * MINUTE_MS, ids),
                           event("b3", NOW_MS + 25 * MINUTE_MS, ids))
    customer = cid("b1")
    split.fold(first, customer)
    split.fold(last, customer)
    index = customer_partition(customer, PARTITIONS)
    effects, step = split.step(index)
    split.parts[index].fold(Routed(bridge, customer), effects, step)
    assert [(a.from_id, a.into_id) for a in effects.session_aliases] == [(sid("b2"), sid("b1"))]
    tables = effect_columns(effects, split.clock_ms, ResolverConfig().fcr_window_ms)
    assert PARTITION_WRITE_ORDER[0] == "interaction_log"
    split.server.insert("interaction_log", tables["interaction_log"])  # killed after its first insert

    assert split.restart(index) == []
    [held] = split.parts[index].sessions.by_customer[customer]
    assert (held.session_id, held.events, held.members) == (sid("b1"), 3, [sid("b2")])
    latest = {}
    for row in sorted(split.server.rows("session_log"), key=lambda row: row["version"]):
        latest[row["session_id"]] = (row["events"], row["merged_into"])
    assert latest == {sid("b1"): (3, ""), sid("b2"): (0, sid("b1"))}
    overrides = {row["id"]: row["current_id"] for row in split.server.rows("overrides") if row["kind"] == "session"}
    assert overrides == {sid("b2"): sid("b1")}
    # Restored again, it finds the batch still unmarked and writes the same again: nothing changes.
    split.restart(index)
    [again] = split.parts[index].sessions.by_customer[customer]
    assert (again.session_id, again.events) == (sid("b1"), 3)

"""The split of docs/scaling.md, modelled in one process (tests/unit/partition_model.py): K fronts with their own
identity replicas, one graph owner and M customer partitions, every step interleaved at random. Without guards a
customer never splits, so sessions and service journeys depend only on the final grouping: the model must give
exactly the single resolver's sessions, journeys, grouping and duplicate count."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.split_inproc import grouping as split_grouping
from bench.split_inproc import session_state, state_of
from cem.domain.model import Interaction
from cem.domain.resolver import Resolver, ResolverConfig
from tests.unit.factories import HOUR_MS, NOW_MS, event
from tests.unit.partition_model import Deployment
from tests.unit.strategies import POOL

NO_GUARDS = ResolverConfig(type_limits={})
CHANNELS = [("web", "page_view"), ("mobile", "app_open"), ("chat", "chat_message"), ("support", "ticket_resolved")]
IDENTIFIERS = [(t, v) for t in ("email", "phone", "anonymous_id", "device_id") for v in POOL[t]]

# An event's identifiers are de-duplicated, as ingest leaves them (the graph takes a set).
_identifiers = st.lists(st.sampled_from(IDENTIFIERS), min_size=1, max_size=3, unique=True)
_raw = st.lists(st.tuples(st.integers(0, 48), _identifiers, st.sampled_from(range(len(CHANNELS))),
                          st.sampled_from(["1", "2", None])), min_size=1, max_size=30)


def build(raw: list[tuple[int, list[Any], int, str | None]], rng: random.Random) -> list[Interaction]:
    """Events half an hour apart at most, so sessions bridge; some re-sent (the same copy twice)."""
    events = [event(f"e{i:02d}", NOW_MS - 3 * 24 * HOUR_MS + half_hours * 30 * 60_000 // 2, ids,
                    channel=CHANNELS[k][0], type=CHANNELS[k][1], issue_ref=issue)
              for i, (half_hours, ids, k, issue) in enumerate(raw)]
    copies = [e for e in events if rng.random() < 0.1]
    arrival = events + copies
    rng.shuffle(arrival)
    return arrival


def state(graph: Any, sessions: Any, journeys: Any) -> tuple[Counter[Any], Counter[Any]]:
    return session_state(graph.find, sessions, journeys)


def single_resolver(arrival: list[Interaction], rng: random.Random,
                    config: ResolverConfig = NO_GUARDS) -> tuple[Resolver, int]:
    resolver = Resolver(config)
    duplicates = 0
    start = 0
    while start < len(arrival):
        size = rng.randint(1, 5)
        duplicates += resolver.process(arrival[start:start + size], NOW_MS + start).duplicates
        start += size
    return resolver, duplicates


def hourly(events: list[Interaction], group_of: Any) -> Counter[Any]:
    """The hourly aggregate the warehouse keeps (events per customer, hour, channel and type), unique events only."""
    return Counter((group_of(e), e.occurred_ms // HOUR_MS, e.channel, e.type)
                   for e in {e.event_id: e for e in events}.values())


@pytest.mark.parametrize(("fronts", "partitions"), [(1, 1), (2, 3), (4, 4), (8, 5)])
@settings(max_examples=80, deadline=None)
@given(raw=_raw, seed=st.integers(0, 2**32))
def test_the_split_gives_the_single_resolvers_sessions_journeys_and_grouping(fronts: int, partitions: int,
                                                                           raw: list[Any], seed: int) -> None:
    rng = random.Random(seed)  # the scheduler draws often: a seeded generator keeps hypothesis's input small
    arrival = build(raw, rng)
    reference, reference_duplicates = single_resolver(arrival, rng)
    split = Deployment(NO_GUARDS, fronts, partitions, rng)
    split.run(arrival)

    graph = split.owner.graph
    assert split.duplicates == reference_duplicates
    for e in {e.event_id: e for e in arrival}.values():
        assert graph.find(split.folded[e.event_id]) == graph.customer_of_set(e.identifiers) \
            == reference.graph.customer_of_set(e.identifiers)
    sessions = [p for p in split.parts if p.sessions.by_customer]
    assert state(graph, state_of(split.parts, "sessions"), state_of(split.parts, "journeys")) == \
        state(reference.graph, reference.sessions.by_customer, reference.journeys.by_customer)
    assert sessions or not any(e.channel in ("web", "mobile") for e in arrival)
    assert hourly(arrival, lambda e: graph.find(split.folded[e.event_id])) == \
        hourly(arrival, lambda e: reference.graph.customer_of_set(e.identifiers))


GUARDED = ResolverConfig(type_limits={"email": 2, "phone": 1, "anonymous_id": 2, "device_id": 1},
                         shared_weak_threshold=2)


def grouping(graph: Any, events: list[Interaction]) -> set[frozenset[str]]:
    return split_grouping(lambda e: graph.customer_of_set(e.identifiers), events)


@pytest.mark.parametrize(("fronts", "partitions"), [(2, 3), (8, 5)])
@settings(max_examples=60, deadline=None)
@given(raw=_raw, seed=st.integers(0, 2**32))
def test_with_guards_the_split_gives_the_single_resolvers_grouping(fronts: int, partitions: int, raw: list[Any],
                                                                   seed: int) -> None:
    """With guards a recompute can split a customer, and a session stays with the customer it was written with:
    sessions then depend on the order of the log for the single resolver too. The grouping does not."""
    rng = random.Random(seed)
    arrival = build(raw, rng)
    reference, reference_duplicates = single_resolver(arrival, rng, GUARDED)
    split = Deployment(GUARDED, fronts, partitions, rng)
    split.run(arrival)
    assert split.duplicates == reference_duplicates
    assert grouping(split.owner.graph, arrival) == grouping(reference.graph, arrival)
    assert set(split.folded) == {e.event_id for e in arrival}
    # Customer ids may differ with the order of the fold: the aggregates are compared per group of events.
    groups = {event_id: group for group in grouping(reference.graph, arrival) for event_id in group}
    folded_groups = {event_id: group for group in grouping(split.owner.graph, arrival) for event_id in group}
    assert hourly(arrival, lambda e: folded_groups[e.event_id]) == hourly(arrival, lambda e: groups[e.event_id])


def assert_folded_once_as_the_single_resolver(split: Deployment, arrival: list[Interaction],
                                              reference: Resolver) -> None:
    graph = split.owner.graph
    assert set(split.fold_counts) == {e.event_id for e in arrival} and set(split.fold_counts.values()) == {1}
    assert state(graph, state_of(split.parts, "sessions"), state_of(split.parts, "journeys")) == \
        state(reference.graph, reference.sessions.by_customer, reference.journeys.by_customer)
    assert grouping(graph, arrival) == grouping(reference.graph, arrival)


def folded_once_as_the_single_resolver(raw: list[Any], seed: int, fronts: int, partitions: int,
                                       **faults: float) -> tuple[Deployment, list[Interaction], Resolver]:
    """The split run with `faults` (Deployment's rates) on the arrival `raw` and `seed` give; every event folded
    once, as the single resolver folds them. Returns the deployment, the arrival and the single resolver."""
    rng = random.Random(seed)
    arrival = build(raw, rng)
    reference, _ = single_resolver(arrival, rng)
    split = Deployment(NO_GUARDS, fronts, partitions, rng, **faults)
    split.run(arrival)
    assert_folded_once_as_the_single_resolver(split, arrival, reference)
    return split, arrival, reference


@pytest.mark.parametrize(("fronts", "partitions"), [(1, 2), (3, 3), (4, 5)])
@settings(max_examples=80, deadline=None)
@given(raw=_raw, seed=st.integers(0, 2**32))
def test_fronts_that_restart_fold_every_event_once_with_the_single_resolvers_result(
        fronts: int, partitions: int, raw: list[Any], seed: int) -> None:
    """Fronts restart at random: they lose what they held and their replica, and read again from their committed
    offset. Replays are routed as first decided and dropped where their first copy was folded."""
    folded_once_as_the_single_resolver(raw, seed, fronts, partitions, restart_rate=0.08)


@pytest.mark.parametrize(("fronts", "partitions"), [(1, 2), (2, 4), (3, 8)])
@settings(max_examples=60, deadline=None)
@given(raw=_raw, seed=st.integers(0, 2**32))
def test_customer_partitions_that_restart_fold_every_event_once_with_the_single_resolvers_result(
        fronts: int, partitions: int, raw: list[Any], seed: int) -> None:
    """Customer partitions (and fronts) restart at random, a partition also after writing a step's rows and
    before its sends: it is restored from the warehouse, hands on again what it restored of merged customers and
    reads its message again; receivers fold in only what they do not hold yet."""
    split, _, reference = folded_once_as_the_single_resolver(raw, seed, fronts, partitions, restart_rate=0.05,
                                                             partition_restart_rate=0.08)
    assert_views_as_the_single_resolver(split, reference)


@pytest.mark.parametrize(("fronts", "partitions"), [(1, 2), (2, 4), (3, 8)])
@settings(max_examples=60, deadline=None)
@given(raw=_raw, seed=st.integers(0, 2**32))
def test_customer_partitions_killed_between_two_inserts_leave_the_single_resolvers_sessions_in_the_views(
        fronts: int, partitions: int, raw: list[Any], seed: int) -> None:
    """A customer partition dies after a random run of its batch's tables landed (never its mark), with fronts
    and partitions restarting too: the partition restored next reads its message again, and the warehouse's
    sessions and journeys (as the `journeys` view reads them) end as the single resolver's, with no row of the cut
    batch left live."""
    split, _, reference = folded_once_as_the_single_resolver(raw, seed, fronts, partitions, restart_rate=0.05,
                                                             partition_restart_rate=0.05, partition_cut_rate=0.15)
    assert_views_as_the_single_resolver(split, reference)


def assert_views_as_the_single_resolver(split: Deployment, reference: Resolver) -> None:
    sessions, _ = state(reference.graph, reference.sessions.by_customer, reference.journeys.by_customer)
    assert view_sessions(split) == sessions
    fcr_window_ms = reference.config.fcr_window_ms
    assert view_journeys(split) == Counter(
        (reference.graph.find(customer), issue_ref, *_journey_figures(journey.metrics(fcr_window_ms)))
        for customer, by_issue in reference.journeys.by_customer.items() for issue_ref, journey in by_issue.items())


def _journey_figures(m: Any) -> tuple[Any, ...]:
    return m.started_ms, m.ended_ms, m.contacts, tuple(m.channels), bool(m.resolved), m.resolved_ms or 0, bool(m.fcr)


def _live(split: Deployment, table: str, key: str) -> list[dict[str, Any]]:
    """The latest row of each id (argMax by version, which has no tie-break: a tie must not differ), if live."""
    assert split.server is not None
    latest: dict[str, list[dict[str, Any]]] = {}
    for row in split.server.rows(table):
        held = latest.setdefault(row[key], [row])
        if row["version"] > held[0]["version"]:
            latest[row[key]] = [row]
        elif row["version"] == held[0]["version"] and row is not held[0]:
            held.append(row)
    for rows in latest.values():
        assert all(r == rows[0] for r in rows), f"rows of {rows[0][key]} tie at one version: {rows}"
    return [rows[0] for rows in latest.values() if rows[0]["merged_into"] == ""]


def view_sessions(split: Deployment) -> Counter[Any]:
    """Sessions as the `journeys` view reads them, under each customer's survivor."""
    find = split.owner.graph.find
    return Counter((find(r["customer_id"]), r["started_ms"], r["ended_ms"], r["events"], frozenset(r["channels"]))
                   for r in _live(split, "session_log", "session_id"))


def view_journeys(split: Deployment) -> Counter[Any]:
    find = split.owner.graph.find
    return Counter((find(r["customer_id"]), r["issue_ref"], r["started_ms"], r["ended_ms"], r["contacts"],
                    tuple(r["channels"]), bool(r["resolved"]), r["resolved_ms"], bool(r["fcr"]))
                   for r in _live(split, "journey_log", "journey_id") if r["kind"] == "service")


def test_a_session_handed_on_twice_by_a_restarted_sender_counts_its_events_once() -> None:
    """Found by Hypothesis: a partition hands a session on, restarts before the receiver wrote it, and hands the
    restored copy on again to the survivor known now. The first copy is folded into another session on the way,
    which later reaches the survivor too: the two copies meet there and must count each event once."""
    raw = [(0, [("email", "e1")], 0, "1"), (0, [("email", "e0")], 0, "1"),
           (0, [("email", "e0"), ("email", "e1")], 0, "1"), (0, [("email", "e2")], 0, "1"),
           (0, [("email", "e0")], 0, "1"), (1, [("email", "e0")], 0, "1"), (0, [("email", "e1")], 0, "1"),
           (0, [("email", "e0")], 0, "1"), (0, [("email", "e1")], 0, "1"), (1, [("email", "e0")], 0, "1"),
           (0, [("email", "e0")], 0, "1"), (0, [("email", "e0")], 0, "1")]
    rng = random.Random(0)
    arrival = build(raw, rng)
    reference, _ = single_resolver(arrival, rng)
    split = Deployment(NO_GUARDS, 2, 4, rng, restart_rate=0.05, partition_restart_rate=0.08)
    split.run(arrival)
    assert split.partition_restarts > 0
    assert_folded_once_as_the_single_resolver(split, arrival, reference)


def test_a_hand_off_read_again_after_its_receiver_was_cut_short_keeps_the_session_it_absorbed() -> None:
    """Found by Hypothesis: a partition receives a hand-off whose session absorbs one it holds, and dies after the
    alias landed but before the session rows. Restored, the absorbed session's events followed the alias into
    the sender's session, filed under the sender's customer in another partition, and were lost from the count
    (5 events where the single resolver has 7). A partition's session aliases now land after its session rows."""
    raw = [(1, [("email", "e3")], 0, "1"), (0, [("email", "e0")], 0, "1"), (0, [("email", "e0")], 0, "1"),
           (0, [("email", "e0")], 0, "1"), (1, [("email", "e1")], 0, "1"), (0, [("email", "e1")], 0, "1"),
           (0, [("email", "e0")], 0, "1"), (0, [("email", "e3")], 0, "1"),
           (0, [("email", "e0"), ("email", "e3")], 0, "1")]
    split, _, reference = folded_once_as_the_single_resolver(raw, 0, 2, 4, restart_rate=0.05,
                                                             partition_restart_rate=0.05, partition_cut_rate=0.15)
    assert split.partition_cuts > 0
    assert_views_as_the_single_resolver(split, reference)


def test_a_restored_sender_leaves_a_merged_customers_journey_rows_to_the_survivor() -> None:
    """Found by Hypothesis: a partition cut short left a journey's rows unmarked, handed the journey on when
    restored, and was restored again after the survivor had absorbed it. Rewriting what the unmarked rows named,
    it wrote the merged customer's journey live above the survivor's alias: the next restore of the survivor
    lost an event of its journey. A restored partition now rewrites only the customers that did not merge away."""
    raw = [(1, [("email", "e0")], 0, "1"), (0, [("email", "e0")], 0, "1"), (1, [("email", "e0")], 0, "1")]
    split, _, reference = folded_once_as_the_single_resolver(raw, 0, 1, 2, restart_rate=0.05,
                                                             partition_restart_rate=0.05, partition_cut_rate=0.15)
    assert split.partition_cuts > 0
    assert_views_as_the_single_resolver(split, reference)


def test_a_session_that_reached_the_survivor_by_two_ways_is_not_left_live() -> None:
    """Found by Hypothesis: a restored sender handed a session straight to the survivor while its first copy was
    absorbed on the way into another session, which reached the survivor later. Joining them, the survivor wrote
    no alias for the session it held (the other listed it already), so it stayed live in the `journeys` view
    next to the one that absorbed it. A session or journey that goes is now always aliased."""
    raw = [(0, [("email", "e0")], 0, "1"), (0, [("email", "e0")], 0, "1"), (0, [("email", "e0")], 0, "1"),
           (3, [("email", "e1")], 0, "1"), (3, [("email", "e1")], 0, "1"), (0, [("email", "e1")], 0, "1")]
    split, _, reference = folded_once_as_the_single_resolver(raw, 40, 3, 8, restart_rate=0.05,
                                                             partition_restart_rate=0.08)
    assert split.partition_restarts > 0
    assert_views_as_the_single_resolver(split, reference)


@pytest.mark.parametrize(("fronts", "partitions"), [(1, 2), (2, 4), (3, 8)])
@settings(max_examples=60, deadline=None)
@given(raw=_raw, seed=st.integers(0, 2**32))
def test_an_owner_killed_between_two_inserts_of_its_batch_leaves_the_single_resolvers_result(
        fronts: int, partitions: int, raw: list[Any], seed: int) -> None:
    """The owner dies after a random run of its batch's tables landed (never its mark), with fronts and
    partitions restarting too: the owner restored next does the batch again, and every stage ends as the single
    resolver does, the warehouse's `interactions` view included (its customer is the override of the event's
    identifier set, which only the owner writes)."""
    split, arrival, reference = folded_once_as_the_single_resolver(
        raw, seed, fronts, partitions, restart_rate=0.05, partition_restart_rate=0.05, owner_cut_rate=0.25)
    assert view_grouping(split) == grouping(reference.graph, arrival)


def view_grouping(split: Deployment) -> set[frozenset[str]]:
    """The events grouped by their customer in the `interactions` view: the latest override of their identifier
    set, or the customer their row was written with."""
    assert split.server is not None
    overrides = {row["id"]: row["current_id"] for row in sorted(split.server.rows("overrides"),
                                                                 key=lambda row: row["version"])
                 if row["kind"] == "customer"}
    customers = {row["event_id"]: overrides.get(row["identity_key"], row["origin_customer_id"])
                 for row in split.server.rows("interaction_log")}
    groups: dict[str, set[str]] = {}
    for event_id, customer_id in customers.items():
        groups.setdefault(customer_id, set()).add(event_id)
    return {frozenset(group) for group in groups.values()}


def test_restarts_and_replays_happen_in_the_model() -> None:
    """The restart test above would pass if fronts never restarted or never replayed: show that they do."""
    rng = random.Random(3)
    raw = [(i % 48, [IDENTIFIERS[i % len(IDENTIFIERS)], IDENTIFIERS[(i * 7) % len(IDENTIFIERS)]], i % 4, None)
           for i in range(120)]
    split = Deployment(NO_GUARDS, 3, 3, rng, restart_rate=0.08, partition_restart_rate=0.08, owner_cut_rate=0.25)
    split.run(build(raw, rng))
    assert split.restarts > 0 and split.replays > 0 and split.partition_restarts > 0 and split.owner_cuts > 0

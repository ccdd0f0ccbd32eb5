"""cem.domain.resolver.Resolver: dedup (natural and conflicting duplicates, window expiry), merges and aliases,
journeys per customer and issue_ref, and restore() from the rows the warehouse would hold."""

from __future__ import annotations

import random
from typing import Any

import pytest

from cem.domain.identity import DEFAULT_TYPE_LIMITS
from cem.domain.model import Interaction
from cem.domain.resolver import Effects, Resolver, ResolverConfig
from cem.settings import Settings
from devtools.simulate import BASE_TIME_MS, Simulator
from streams.app import Ingestor
from tests.unit.factories import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    NOW_MS,
    cid,
    event,
    jid,
    mixed_batch,
    resolver_state,
    sid,
    snapshot_of,
)

EMAIL = ("email", "a@example.com")
PHONE = ("phone", "+14155550123")
ANON = ("anonymous_id", "anon-1")
DEVICE = ("device_id", "dev-1")
WINDOW = 7 * DAY_MS
T0 = NOW_MS - DAY_MS


def test_version_is_monotonic_and_derived_from_now() -> None:
    resolver = Resolver(ResolverConfig())
    assert resolver.process([], NOW_MS).version == NOW_MS * 1000
    assert resolver.process([], NOW_MS).version == NOW_MS * 1000 + 1
    assert resolver.process([], NOW_MS - 5).version == NOW_MS * 1000 + 2  # a clock going back never lowers it
    assert resolver.process([], NOW_MS + 1).version == (NOW_MS + 1) * 1000


def test_duplicates_dropped_and_counted() -> None:
    resolver = Resolver(ResolverConfig())
    e1 = event("e1", T0, [EMAIL])
    e2 = event("e2", T0 + 1, [EMAIL])
    first = resolver.process([e1, e1, e2], NOW_MS)
    assert [r.interaction.event_id for r in first.interactions] == ["e1", "e2"]
    assert (first.duplicates, first.conflicts) == (1, 0)
    second = resolver.process([e2, e1], NOW_MS + 1)
    assert second.interactions == [] and (second.duplicates, second.conflicts) == (2, 0)
    assert second.customers == [] and second.links == [] and second.sessions == {}


def test_conflicting_duplicate_first_copy_wins() -> None:
    resolver = Resolver(ResolverConfig())
    original = event("e1", T0, [EMAIL], fingerprint="aaaa")
    collision = event("e1", T0 + 5, [PHONE], channel="chat", fingerprint="bbbb")
    effects = resolver.process([original, collision], NOW_MS)
    assert [r.interaction for r in effects.interactions] == [original]
    assert (effects.duplicates, effects.conflicts, effects.conflicting) == (1, 1, [collision])
    later = resolver.process([collision, original], NOW_MS + 1)
    assert (later.duplicates, later.conflicts, later.interactions) == (2, 1, [])
    assert later.conflicting == [collision]  # returned again on every re-send: the dead letter's key is the same
    assert resolver.graph.customer_of(PHONE) is None  # the collision's content never reached the graph


@pytest.mark.parametrize("position", [0, 1, 2])
def test_same_event_id_on_two_channels_returns_the_later_copy_as_conflicting(position: int) -> None:
    resolver = Resolver(ResolverConfig())
    first = event("e1", T0, [EMAIL], channel="chat", type="chat_message", fingerprint="chat-copy")
    other = event("e1", T0, [EMAIL], channel="email", type="email_reply", fingerprint="email-copy")
    retry = event("e1", T0, [EMAIL], channel="chat", type="chat_message", fingerprint="chat-copy")
    batch = [event("x", T0, [PHONE]), event("y", T0, [ANON])]
    batch.insert(position, other)
    effects = resolver.process([first, *batch, retry], NOW_MS)
    assert [r.interaction.event_id for r in effects.interactions] == ["e1", "x", "y"]
    assert (effects.duplicates, effects.conflicting) == (2, [other])  # the natural retry is only counted


def test_dedup_window_uses_now_ms() -> None:
    resolver = Resolver(ResolverConfig(dedup_window_ms=WINDOW))
    e1 = event("e1", T0, [EMAIL])
    resolver.process([e1], NOW_MS)
    at_edge = resolver.process([e1], NOW_MS + WINDOW)
    assert (len(at_edge.interactions), at_edge.duplicates) == (0, 1)
    after = resolver.process([e1], NOW_MS + WINDOW + 1)
    assert (len(after.interactions), after.duplicates) == (1, 0)
    assert after.interactions[0].customer_id == cid("e1")  # accepted again, same customer
    again = resolver.process([e1], NOW_MS + WINDOW + 2)
    assert again.duplicates == 1  # and remembered from its new first-seen time


def test_seen_ids_are_released_with_the_minute_they_were_first_seen_in() -> None:
    minute = 60_000
    resolver = Resolver(ResolverConfig(dedup_window_ms=minute))
    resolver.process([event("old", T0, [EMAIL])], 10 * minute + 1_000)
    resolver.process([event("new", T0, [EMAIL]), event("newer", T0, [EMAIL])], 11 * minute + 5_000)
    assert sorted(resolver.seen) == ["new", "newer", "old"]
    # Horizon 11 min + 2 s: minute 10 has passed wholly; minute 11 has not (its ids stay, though "new" itself
    # would be accepted again only once its own first-seen time is out of the window).
    resolver.process([], 12 * minute + 2_000)
    assert sorted(resolver.seen) == ["new", "newer"]
    assert [chunk.split("/")[0] for chunk in resolver.seen_expiry] == [f"{11:012d}"]
    resolver.process([], 13 * minute)
    assert (list(resolver.seen), list(resolver.seen_expiry)) == ([], [])


def test_an_id_seen_again_after_it_expired_is_kept_with_its_new_minute() -> None:
    minute = 60_000
    resolver = Resolver(ResolverConfig(dedup_window_ms=minute))
    resolver.process([event("e1", T0, [EMAIL])], 10 * minute)
    again = resolver.process([event("e1", T0, [EMAIL])], 11 * minute + 1)  # out of the window: new again
    assert len(again.interactions) == 1
    resolver.process([], 12 * minute)  # minute 10 is released; the id's first sight is in minute 11 now
    assert list(resolver.seen) == ["e1"]
    assert resolver.process([event("e1", T0, [EMAIL])], 12 * minute).duplicates == 1


def test_merge_produces_customer_aliases_for_all_moved_ids() -> None:
    resolver = Resolver(ResolverConfig())
    effects = resolver.process(
        [
            event("e1", T0 + 300, [EMAIL]),
            event("e2", T0 + 200, [PHONE]),
            event("e3", T0 + 400, [EMAIL, PHONE]),  # e1's customer -> e2's
            event("e4", T0 + 100, [ANON]),
            event("e5", T0 + 500, [PHONE, ANON]),  # e2's customer (with e1's) -> e4's
        ],
        NOW_MS,
    )
    assert [(m.from_id, m.into_id) for m in effects.merges] == [(cid("e1"), cid("e2")), (cid("e2"), cid("e4"))]
    # Every historical id resolves to the survivor (the latest alias of an id wins).
    assert dict(effects.customer_aliases) == {cid("e1"): cid("e4"), cid("e2"): cid("e4")}
    assert [r.customer_id for r in effects.interactions] == [cid("e1"), cid("e2"), cid("e2"), cid("e4"), cid("e4")]
    assert {resolver.graph.find(r.customer_id) for r in effects.interactions} == {cid("e4")}
    # All five web events lie within one session gap: one session, owned by the survivor.
    assert [(s.customer_id, s.events) for s in effects.sessions.values()] == [(cid("e4"), 5)]


def test_refused_merge_is_reported() -> None:
    resolver = Resolver(ResolverConfig())
    effects = resolver.process(
        [
            event("e1", T0, [("customer_ref", "CRM-1"), EMAIL]),
            event("e1b", T0, [("anonymous_id", "anon-1"), EMAIL]),
            event("e2", T0, [("customer_ref", "CRM-2"), PHONE]),
            event("e3", T0, [("customer_ref", "CRM-2"), ("anonymous_id", "anon-1")]),
        ],
        NOW_MS,
    )
    assert [(r.customer_id, r.other_customer_id, r.reason) for r in effects.refused_merges] == [
        (cid("e2"), cid("e1"), "conflicting_customer_ref")
    ]
    assert effects.merges == [] and effects.interactions[-1].customer_id == cid("e2")


def test_sessions_only_for_digital_channels_and_journeys_by_issue_ref() -> None:
    resolver = Resolver(ResolverConfig())
    effects = resolver.process(
        [
            event("w", T0, [EMAIL], channel="web"),
            event("m", T0 + MINUTE_MS, [EMAIL], channel="mobile"),
            event("c", T0 + 2 * MINUTE_MS, [EMAIL], channel="call_center", type="call_ended", issue_ref="CASE-1"),
            event("r", T0 + HOUR_MS, [EMAIL], channel="support", type="ticket_resolved", issue_ref="CASE-1"),
        ],
        NOW_MS,
    )
    rows = {r.interaction.event_id: (r.session_id, r.journey_id) for r in effects.interactions}
    journey_id = jid("CASE-1", "c")
    assert rows == {"w": (sid("w"), ""), "m": (sid("w"), ""), "c": ("", journey_id), "r": ("", journey_id)}
    (session,) = effects.sessions.values()
    assert (session.events, session.channels) == (2, {"web", "mobile"})
    metrics = effects.journeys[journey_id].metrics(WINDOW)
    assert (metrics.contacts, metrics.resolved, metrics.fcr, metrics.time_to_resolution_s) == (1, True, True, 3480.0)


def test_journey_follows_customer_merge() -> None:
    resolver = Resolver(ResolverConfig())
    resolver.process([event("c1", T0 + 100, [PHONE], channel="call_center", type="call_ended",
                            issue_ref="CASE-1")], NOW_MS)
    resolver.process([event("e0", T0, [EMAIL])], NOW_MS)
    effects = resolver.process([event("link", T0 + 200, [EMAIL, PHONE], channel="commerce", type="purchase")],
                               NOW_MS + 1)
    assert [(m.from_id, m.into_id) for m in effects.merges] == [(cid("c1"), cid("e0"))]
    assert effects.journeys[jid("CASE-1", "c1")].customer_id == cid("e0")
    assert {c: {ref: j.journey_id for ref, j in refs.items()} for c, refs in resolver.journeys.by_customer.items()} \
        == {cid("e0"): {"CASE-1": jid("CASE-1", "c1")}}
    assert effects.journey_aliases == []  # e0's customer had no journey of its own: nothing merged


def test_one_issue_ref_across_unrelated_customers_and_identities_that_merge_later() -> None:
    resolver = Resolver(ResolverConfig())
    chat = {"channel": "chat", "type": "chat_message", "issue_ref": "1"}
    first = resolver.process([
        event("u1", T0, [("email", "u1@example.com")], **chat),
        event("u2", T0 + 1, [("email", "u2@example.com")], **chat),
        event("u3", T0 + 2, [("email", "u3@example.com")], **chat),
        event("x0", T0, [EMAIL], channel="email", type="email_open"),  # the person's first event
        event("x", T0 + HOUR_MS, [EMAIL], **chat),  # one person, two identities not yet known to be one
        event("y", T0 + 30 * MINUTE_MS, [PHONE], channel="call_center", type="call_ended", issue_ref="1"),
        event("r", T0 + 2 * HOUR_MS, [PHONE], channel="support", type="ticket_resolved", issue_ref="1"),
    ], NOW_MS)
    rows = {r.interaction.event_id: r.journey_id for r in first.interactions}
    assert rows == {"u1": jid("1", "u1"), "u2": jid("1", "u2"), "u3": jid("1", "u3"), "x0": "", "x": jid("1", "x"),
                    "y": jid("1", "y"), "r": jid("1", "y")}
    assert {j.customer_id for j in first.journeys.values()} == {cid(e) for e in ("u1", "u2", "u3", "x0", "y")}
    assert first.journey_aliases == []

    merged = resolver.process([event("link", T0 + 3 * HOUR_MS, [EMAIL, PHONE], channel="commerce",
                                     type="purchase")], NOW_MS + 1)
    # x's customer (first seen, at x0) survives; y's journey started first (30 min before x's), so its id does.
    assert [(m.from_id, m.into_id) for m in merged.merges] == [(cid("y"), cid("x0"))]
    assert [(a.from_id, a.into_id, a.issue_ref) for a in merged.journey_aliases] == [
        (jid("1", "x"), jid("1", "y"), "1")]
    (journey,) = merged.journeys.values()
    assert (journey.journey_id, journey.customer_id, set(journey.events)) == (jid("1", "y"), cid("x0"), {"x", "y", "r"})
    m = journey.metrics(WINDOW)
    assert (m.contacts, m.channels, m.resolved, m.fcr, m.time_to_resolution_s) == (
        2, ("call_center", "chat"), True, False, 5400.0)
    later = resolver.process([event("x2", T0 + 4 * HOUR_MS, [EMAIL], **chat)], NOW_MS + 2)
    assert later.interactions[0].journey_id == jid("1", "y")
    assert len([j for refs in resolver.journeys.by_customer.values() for j in refs.values()]) == 4


def test_session_alias_emitted_when_merge_joins_sessions() -> None:
    resolver = Resolver(ResolverConfig())
    effects = resolver.process(
        [
            event("a", T0, [ANON]),
            event("b", T0 + 10 * MINUTE_MS, [DEVICE], channel="mobile"),
            event("c", T0 + 20 * MINUTE_MS, [ANON, DEVICE]),
        ],
        NOW_MS,
    )
    assert [(m.from_id, m.into_id) for m in effects.merges] == [(cid("b"), cid("a"))]
    assert [(a.from_id, a.into_id) for a in effects.session_aliases] == [(sid("b"), sid("a"))]
    assert list(effects.sessions) == [sid("a")]
    assert (effects.sessions[sid("a")].events, effects.sessions[sid("a")].customer_id) == (3, cid("a"))


# ---- restore -----------------------------------------------------------------------------------------
def test_restore_replays_are_duplicates_and_new_events_join_the_same_customers() -> None:
    original = Resolver(ResolverConfig())
    batch = [
        event("e1", T0 + 300, [EMAIL]),
        event("e2", T0 + 200, [PHONE]),
        event("e3", T0 + 400, [EMAIL, PHONE]),
        event("e4", T0, [DEVICE], channel="mobile"),
        event("e5", T0 + MINUTE_MS, [("customer_ref", "CRM-1")], channel="chat", type="chat_message",
              issue_ref="CASE-1"),
    ]
    effects = original.process(batch, NOW_MS)
    restored = Resolver(ResolverConfig())
    restored.restore(snapshot_of([(effects, NOW_MS)]))
    assert restored.version == effects.version

    replay = restored.process(batch, NOW_MS + 1)
    assert (replay.duplicates, replay.conflicts, replay.interactions) == (5, 0, [])
    collision = event("e1", T0 + 300, [EMAIL], fingerprint="other")
    changed = restored.process([collision], NOW_MS + 2)
    assert (changed.duplicates, changed.conflicts, changed.conflicting) == (1, 1, [collision])

    fresh = restored.process(
        [
            event("n1", T0 + 500, [PHONE]),
            event("n2", T0 + 2 * MINUTE_MS, [DEVICE], channel="mobile"),
            event("n3", T0 + HOUR_MS, [("customer_ref", "CRM-1")], channel="support", type="ticket_resolved",
                  issue_ref="CASE-1"),
        ],
        NOW_MS + 3,
    )
    customers = [r.customer_id for r in fresh.interactions]
    assert customers == [cid("e2"), cid("e4"), cid("e5")]
    assert fresh.customers == [] and fresh.links == [] and fresh.merges == []
    assert fresh.interactions[1].session_id == sid("e4")  # continues the restored session
    assert fresh.sessions[sid("e4")].events == 2
    journey = fresh.journeys[jid("CASE-1", "e5")]
    assert set(journey.events) == {"e5", "n3"}
    assert journey.metrics(WINDOW).fcr is True


def _simulated_interactions() -> list[Interaction]:
    traffic = Simulator(customers=30, seed=1).run()
    ingestor = Ingestor(Settings())
    now_ms = BASE_TIME_MS + 30 * DAY_MS
    parsed = [ingestor.parse(r.value, r.topic.rsplit(".", 1)[1], now_ms) for r in traffic.records]
    return [p for p in parsed if isinstance(p, Interaction)]


def _summary(resolver: Resolver, effects: Effects) -> tuple[Any, ...]:
    return (
        [(r.interaction.event_id, resolver.graph.find(r.customer_id), r.session_id, r.journey_id)
         for r in effects.interactions],
        effects.duplicates,
        effects.conflicts,
        [(m.from_id, m.into_id, m.event_id) for m in effects.merges],
        sorted((ids, resolver.graph.find(owner), first) for ids, (owner, first) in effects.identity_sets.items()),
        sorted((a.from_id, a.into_id) for a in effects.session_aliases),
        [(a.from_id, a.into_id) for a in effects.journey_aliases],
        sorted((s.session_id, s.customer_id, s.start_ms, s.end_ms, s.events, tuple(sorted(s.channels)))
               for s in effects.sessions.values()),
        sorted((j.journey_id, j.customer_id, j.metrics(WINDOW), sorted(j.members)) for j in effects.journeys.values()),
        [r.interaction for r in effects.conflicting],
    )


@pytest.mark.parametrize("seed", range(8))
def test_restored_resolver_behaves_like_the_original(seed: int) -> None:
    """Process some batches, rebuild a second resolver from the rows, then feed both the rest: same effects."""
    events = _simulated_interactions()
    rng = random.Random(seed)
    rng.shuffle(events)
    cuts = sorted(rng.sample(range(1, len(events)), 3))
    parts = [events[: cuts[0]], events[cuts[0]: cuts[1]], events[cuts[1]: cuts[2]], events[cuts[2]:]]
    now_ms = BASE_TIME_MS + 30 * DAY_MS
    original = Resolver(ResolverConfig())
    written = [(original.process(part, now_ms + i), now_ms + i) for i, part in enumerate(parts[:3])]
    restored = Resolver(ResolverConfig())
    restored.restore(snapshot_of(written))
    tail = parts[3] + rng.sample(events, 10)  # new events plus replays
    assert _summary(restored, restored.process(tail, now_ms + 10)) == _summary(
        original, original.process(tail, now_ms + 10))


def _journey_state(resolver: Resolver) -> list[tuple[Any, ...]]:
    return sorted((customer, ref, j.journey_id, j.customer_id, sorted(j.events.items()), sorted(j.members))
                  for customer, refs in resolver.journeys.by_customer.items() for ref, j in refs.items())


def test_restore_follows_journey_aliases_and_keeps_the_absorbed_ids() -> None:
    """A journey absorbed before the restart is an alias after it: the next merge re-aims every absorbed id."""
    chat = {"channel": "chat", "type": "chat_message", "issue_ref": "1"}
    batches = [
        [event("a", T0 + 2 * HOUR_MS, [EMAIL], **chat), event("b", T0 + HOUR_MS, [PHONE], **chat),
         event("c", T0, [ANON], **chat)],
        [event("ab", T0 + 3 * HOUR_MS, [EMAIL, PHONE], channel="commerce", type="purchase")],
    ]
    original = Resolver(ResolverConfig())
    written = [(original.process(batch, NOW_MS + i), NOW_MS + i) for i, batch in enumerate(batches)]
    assert [(a.from_id, a.into_id) for a in written[1][0].journey_aliases] == [(jid("1", "a"), jid("1", "b"))]
    restored = Resolver(ResolverConfig())
    restored.restore(snapshot_of(written))
    assert _journey_state(restored) == _journey_state(original)
    tail = [event("bc", T0 + 4 * HOUR_MS, [PHONE, ANON], channel="commerce", type="purchase"), *batches[0]]
    effects = restored.process(tail, NOW_MS + 5)
    assert _summary(restored, effects) == _summary(original, original.process(tail, NOW_MS + 5))
    assert sorted((a.from_id, a.into_id) for a in effects.journey_aliases) == [
        (jid("1", "a"), jid("1", "c")), (jid("1", "b"), jid("1", "c"))]
    assert [(j.journey_id, set(j.events)) for j in effects.journeys.values()] == [(jid("1", "c"), {"a", "b", "c"})]


def test_a_customer_split_by_a_recompute_keeps_its_journeys_whole_and_restore_agrees() -> None:
    """The documented limit: a late event splits a customer (a per-type limit refuses a merge); the journey built
    under the glued customer stays whole under it, and the split-off customer's next event with the issue_ref
    starts another. The guard is the phone limit: two CRM ids on the phone would make it shared instead, and a
    phone-only event would then be a customer of its own."""
    config = ResolverConfig(type_limits={**DEFAULT_TYPE_LIMITS, "phone": 2})
    phone = [PHONE]
    batches = [
        [event("e2", T0 + 2, [PHONE, ("phone", "+14155550177"), ("customer_ref", "CRM-A")], channel="commerce",
               type="purchase"),
         event("e3", T0 + 3, phone, channel="chat", type="chat_message", issue_ref="9")],
        # Earlier, with another phone: first seen, it takes PHONE, and CRM-A's customer would hold three phones.
        [event("e1", T0 + 1, [PHONE, ("phone", "+14155550188")], channel="commerce", type="purchase")],
        [event("e4", T0 + 4, phone, channel="call_center", type="call_ended", issue_ref="9")],
    ]
    original = Resolver(config)
    written = [(original.process(batch, NOW_MS + i), NOW_MS + i) for i, batch in enumerate(batches)]
    assert written[1][0].recomputes == 1 and not original.graph.shared.marked
    assert [r.customer_id for r in written[2][0].interactions] == [cid("e1")]  # e3's set moved to e1's customer
    assert [(c, ref, jid_, owner, [e for e, _ in events]) for c, ref, jid_, owner, events, _ in
            _journey_state(original)] == sorted([
                (cid("e2"), "9", jid("9", "e3"), cid("e2"), ["e3"]),
                (cid("e1"), "9", jid("9", "e4"), cid("e1"), ["e4"])])
    restored = Resolver(config)
    restored.restore(snapshot_of(written))
    assert _journey_state(restored) == _journey_state(original)


def test_a_restore_after_a_shared_identifier_split_customers_keeps_their_sessions() -> None:
    original = Resolver(ResolverConfig())
    effects = original.process(mixed_batch(phone_rotation=9), NOW_MS)
    assert [(s.id_type, s.reason) for s in effects.shared] == [("phone", "limit:email")]
    restored = Resolver(ResolverConfig())
    restored.restore(snapshot_of([(effects, NOW_MS)]))
    assert resolver_state(restored) == resolver_state(original)

"""cem.domain.resolver.Resolver: dedup (natural and conflicting duplicates, window expiry), merges and aliases,
and restore() from the rows the warehouse would hold."""

from __future__ import annotations

import random
from typing import Any

import pytest

from cem.domain.model import Interaction, identity_key, stable_id
from cem.domain.resolver import Effects, RecentRow, Resolver, ResolverConfig, Snapshot
from cem.settings import Settings
from cem.simulate import BASE_TIME_MS, Simulator
from streams.app import Ingestor
from tests.unit.factories import DAY_MS, HOUR_MS, MINUTE_MS, NOW_MS, event

EMAIL = ("email", "a@example.com")
PHONE = ("phone", "+14155550123")
ANON = ("anonymous_id", "anon-1")
DEVICE = ("device_id", "dev-1")
WINDOW = 7 * DAY_MS
T0 = NOW_MS - DAY_MS


def cid(event_id: str) -> str:
    return stable_id("c", event_id)


def sid(event_id: str) -> str:
    return stable_id("s", event_id)


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
    assert (effects.duplicates, effects.conflicts) == (1, 1)
    later = resolver.process([collision, original], NOW_MS + 1)
    assert (later.duplicates, later.conflicts, later.interactions) == (2, 1, [])
    assert resolver.graph.customer_of(PHONE) is None  # the collision's content never reached the graph


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


def test_dedup_expiry_is_by_first_seen_order() -> None:
    resolver = Resolver(ResolverConfig(dedup_window_ms=10))
    resolver.process([event("old", T0, [EMAIL])], 1_000)
    resolver.process([event("new", T0, [EMAIL])], 1_008)
    resolver.process([], 1_015)
    assert list(resolver.seen) == ["new"]


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
    assert [(r.customer_id, r.other_customer_id, r.reason) for r in effects.refused] == [
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
    journey_id = stable_id("j", "CASE-1")
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
    assert effects.journeys[stable_id("j", "CASE-1")].customer_id == cid("e0")
    assert resolver.journeys_of == {cid("e0"): {"CASE-1"}}


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
def snapshot_of(batches: list[tuple[Effects, int]]) -> Snapshot:
    """The rows the warehouse would hold after these batches, as sinks.clickhouse.load_snapshot reads them back."""
    snapshot = Snapshot()
    session_alias: dict[str, str] = {}
    for effects, now_ms in batches:
        for identifiers, (_customer, first) in effects.identity_sets.items():
            key = identity_key(identifiers)  # GROUP BY identity_key, min(first_ms), argMin(first_event_id)
            known = snapshot.identity_sets.get(key)
            snapshot.identity_sets[key] = (identifiers, first if known is None else min(first, known[1]))
        for alias in effects.session_aliases:
            session_alias[alias.from_id] = alias.into_id  # argMax(current_id, version)
        snapshot.recent += [
            RecentRow(r.interaction.event_id, r.interaction.fingerprint, now_ms, effects.version,
                      r.interaction.occurred_ms, r.interaction.channel, r.interaction.type, r.customer_id,
                      r.session_id, r.interaction.issue_ref or "", identity_key(r.interaction.identifiers))
            for r in effects.interactions
        ]
    snapshot.session_aliases = list(session_alias.items())
    return snapshot


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
    changed = restored.process([event("e1", T0 + 300, [EMAIL], fingerprint="other")], NOW_MS + 2)
    assert (changed.duplicates, changed.conflicts) == (1, 1)

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
    journey = fresh.journeys[stable_id("j", "CASE-1")]
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
        sorted((s.session_id, s.customer_id, s.start_ms, s.end_ms, s.events, tuple(sorted(s.channels)))
               for s in effects.sessions.values()),
        sorted((j.journey_id, j.customer_id, j.metrics(WINDOW)) for j in effects.journeys.values()),
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

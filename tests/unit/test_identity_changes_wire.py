"""The identity changes topic's messages: parts under the limit, signed, reassembled whole; the replica's feed
applies whole versions only; the resolver counts each event's identity outcome."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cem import metrics
from cem.domain.identity_replica import IdentityChanges, IdentityReplica, identity_changes
from cem.domain.reasons import Reason
from cem.domain.resolver import AliasCycle, Resolver, ResolverConfig, follow_aliases
from cem.settings import Settings
from schemas.identity_changes import (
    PART_HEADER,
    VERSION_HEADER,
    Assembler,
    complete_version,
    decode_part,
    encode_changes,
    version_of,
)
from schemas.internal import InternalMessageError
from streams.identity_feed import IdentityFeed
from tests.unit.factories import NOW_MS, event

KEY = b"k" * 32


def changes(version: int, n: int, removed: int = 0) -> IdentityChanges:
    sets = {(("email", f"user{i}@example.org"), ("phone", f"+1415555{i:04d}")): (f"c{i % 7}", (1000 + i, f"ev{i}"))
            for i in range(n)}
    aliases = {f"c{i}": "c0" for i in range(1, min(n, 5))}
    links = {("email", f"user{i}@example.org"): f"c{i % 7}" for i in range(n // 2)}
    gone = frozenset((("email", f"gone{i}@example.org"),) for i in range(removed))
    return IdentityChanges(version, sets, aliases, links, gone)


def whole(messages: list[tuple[bytes, list[tuple[str, bytes]]]]) -> list[IdentityChanges]:
    assembler, out = Assembler(), []
    for value, headers in messages:
        done = assembler.add(decode_part(KEY, value, headers))
        if done is not None:
            out.append(done)
    return out


@given(st.integers(0, 300), st.integers(0, 5), st.sampled_from([400, 2_000, 1_000_000]))
def test_a_version_survives_the_wire_whole_in_parts_under_the_limit(n: int, removed: int, limit: int) -> None:
    original = changes(1_700_000_000_000_000 + n, n, removed)
    messages = encode_changes(KEY, original, limit)
    assert all(len(value) <= limit for value, _ in messages)
    assert whole(messages) == [original]
    if len(encode_changes(KEY, original, 10**9)[0][0]) > limit:
        assert len(messages) > 1


def test_parts_name_their_version_and_place_and_only_a_last_part_proves_a_version_complete() -> None:
    messages = encode_changes(KEY, changes(50, 200), 2_000)
    assert len(messages) > 2
    versions = {version_of(headers) for _, headers in messages}
    assert versions == {50}
    assert [complete_version(headers) for _, headers in messages] == [49] * (len(messages) - 1) + [50]
    assert dict(messages[0][1])[PART_HEADER] == f"0/{len(messages)}".encode()


def test_an_abandoned_publication_is_dropped_and_its_republication_applies_whole() -> None:
    first = encode_changes(KEY, changes(7, 200), 2_000)
    again = encode_changes(KEY, changes(7, 150), 1_000)  # a catch-up republishing version 7, cut differently
    later = encode_changes(KEY, changes(8, 3), 1_000_000)
    assert whole(first[:2] + again + later) == [changes(7, 150), changes(8, 3)]
    # A part whose publication's start was never read (the topic read from the middle) is not applied.
    assert whole(first[1:]) == []


@pytest.mark.parametrize("tamper", ["unsigned", "altered", "not json", "bad entry", "bad part"])
def test_a_message_cem_did_not_write_or_a_malformed_one_is_refused_with_a_reason(tamper: str) -> None:
    value, headers = encode_changes(KEY, changes(3, 2), 1_000_000)[0]
    if tamper == "unsigned":
        headers = [h for h in headers if h[0] != "cem.signature"]
    elif tamper == "altered":
        value = value.replace(b"user0", b"user9")
    else:
        value = {"not json": b"{", "bad entry": b'{"version":3,"part":0,"parts":1,"entries":[["what",[]]]}',
                 "bad part": b'{"version":3,"part":1,"parts":1,"entries":[]}'}[tamper]
        headers = encode_changes(KEY, changes(3, 0), 1_000_000)[0][1]
        from schemas.internal import signature_headers
        headers = [*signature_headers(KEY, value), *(h for h in headers if h[0] != "cem.signature")]
    with pytest.raises(InternalMessageError) as refused:
        decode_part(KEY, value, headers)
    expected = Reason.BAD_SIGNATURE if tamper in ("unsigned", "altered") else Reason.INVALID_INTERNAL_MESSAGE
    assert refused.value.reason == expected


def test_the_feed_applies_whole_versions_in_order_skips_old_ones_and_counts_refusals() -> None:
    feed = IdentityFeed(Settings.from_env({}, secret_key="k" * 32), load_start=None)  # type: ignore[arg-type]
    replica, assembler = IdentityReplica(), Assembler()
    replica.apply(IdentityChanges(10))  # the warehouse start: version 10
    old = encode_changes(feed.settings.signing_key, changes(9, 4), 1_000_000)
    parts = encode_changes(feed.settings.signing_key, changes(11, 120), 1_500)
    assert len(parts) > 1
    for offset, (value, headers) in enumerate(old + parts[:-1]):
        feed.apply(replica, assembler, value, headers, offset)
        assert replica.version == 10 and not replica.sets  # nothing until the version is whole
    feed.apply(replica, assembler, b"forged", [(VERSION_HEADER, b"12")], 99)
    feed.apply(replica, assembler, *parts[-1], 100)
    assert replica.version == 11
    assert replica.sets == dict(changes(11, 120).sets)


def test_an_erasure_removes_its_sets_from_the_replica() -> None:
    resolver = Resolver(ResolverConfig())
    replica = IdentityReplica()
    batch = [event("a1", NOW_MS - 9_000, [("email", "a@example.org")]),
             event("a2", NOW_MS - 8_000, [("email", "a@example.org"), ("phone", "+14155550100")]),
             event("b1", NOW_MS - 7_000, [("email", "b@example.org")])]
    replica.apply(identity_changes(resolver.process(batch, NOW_MS)))
    customer = replica.resolve_locally((("email", "a@example.org"),), (NOW_MS, "z"))
    assert customer is not None
    erasure = resolver.forget([customer], [("email", "a@example.org")], NOW_MS + 1)
    assert erasure.removed_sets
    replica.apply(identity_changes(erasure.effects, erasure.removed_sets))
    assert all(s not in replica.sets for s in erasure.removed_sets)
    assert replica.resolve_locally((("email", "b@example.org"),), (NOW_MS, "z")) is not None


def test_the_resolver_counts_every_unique_event_by_its_identity_outcome() -> None:
    resolver = Resolver(ResolverConfig())
    rng = random.Random(3)
    batch = [event(f"e{i}", NOW_MS - 100_000 + i * 10, [("email", f"u{rng.randrange(6)}@example.org")])
             for i in range(40)]
    first = resolver.process(batch + batch[:5], NOW_MS)  # five copies: duplicates are not attributed
    assert sum(first.identity_outcomes.values()) == 40
    assert first.identity_outcomes["new_customer"] == len({e.identifiers for e in batch})
    assert first.identity_outcomes["local"] == 40 - first.identity_outcomes["new_customer"]
    later = resolver.process([event("x", NOW_MS - 200_000, [("email", "u0@example.org")]),
                              event("y", NOW_MS, [("email", "u1@example.org"), ("phone", "+14155550199")])],
                             NOW_MS + 1)
    assert later.identity_outcomes == {"late": 1, "link": 1}


def test_the_front_probe_counts_what_a_front_would_forward_and_what_would_wait_only_once_ready() -> None:
    feed = IdentityFeed(Settings.from_env({}), load_start=None)  # type: ignore[arg-type]
    feed.replica.apply(IdentityChanges(5, {(("email", "a@example.org"),): ("c1", (NOW_MS - 1000, "first"))}))
    known = event("later", NOW_MS, [("email", "a@example.org")])
    before_known = event("earlier", NOW_MS - 5000, [("email", "a@example.org")])  # older than the set: owner
    unknown = event("new", NOW_MS, [("email", "b@example.org")])

    def counts() -> tuple[float, float]:
        return (metrics.FRONT_ANSWERS.labels("local")._value.get(), metrics.FRONT_ANSWERS.labels("owner")._value.get())

    start = counts()
    feed.probe([known, before_known, unknown])
    assert counts() == start  # not ready: nothing counted
    feed.ready.set()
    feed.probe([known, before_known, unknown])
    local, owner = counts()
    assert (local - start[0], owner - start[1]) == (1, 2)


@pytest.mark.parametrize(("aliases", "start", "expected"), [
    ({}, "a", "a"),
    ({"a": "b"}, "a", "b"),
    ({"a": "b", "b": "c", "c": "c"}, "a", "c"),  # an id aliased to itself is current
    ({"a": "b", "b": "a"}, "a", None),
    ({"a": "b", "b": "c", "c": "b"}, "a", None),  # a circle that does not pass through the start
    ({f"c{i}": f"c{i + 1}" for i in range(500)}, "c0", "c500"),  # a long chain is not a circle
])
def test_aliases_are_followed_to_the_current_id_and_a_circle_is_refused(aliases: dict[str, str], start: str,
                                                                       expected: str | None) -> None:
    if expected is None:
        with pytest.raises(AliasCycle):
            follow_aliases(aliases, start)
    else:
        assert follow_aliases(aliases, start) == expected


def test_staleness_is_the_time_since_the_replica_last_held_what_the_topic_held_at_the_previous_poll() -> None:
    now = [100.0]
    feed = IdentityFeed(Settings.from_env({}, topic_prefix="stale"), load_start=None,  # type: ignore[arg-type]
                        clock=lambda: now[0])
    stale = metrics.REPLICA_STALE.labels(feed.settings.identity_changes_topic)
    now[0] = 103.0
    feed._progress(False, 4)  # never caught up: stale since the start
    assert stale._value.get() == 3.0 and not feed.ready.is_set()
    feed._progress(True, 2)  # steady traffic: new messages arrived meanwhile, yet it keeps up
    assert stale._value.get() == 0.0 and feed.ready.is_set() and feed.lag == 2
    now[0] = 110.5
    feed._progress(False, 9)
    assert stale._value.get() == 7.5


def test_the_graphs_time_is_split_by_whether_the_event_needed_the_owner() -> None:
    ticks = iter(range(1_000_000))
    resolver = Resolver(ResolverConfig(), timer=lambda: float(next(ticks)))  # every timed event takes one tick
    rng = random.Random(5)
    batch = [event(f"e{i}", NOW_MS - 100_000 + i * 10, [("email", f"u{rng.randrange(6)}@example.org")])
             for i in range(30)]
    effects = resolver.process(batch + batch[:4], NOW_MS)  # duplicates are never timed
    owner = sum(count for outcome, count in effects.identity_outcomes.items() if outcome != "local")
    assert effects.graph_seconds == {"owner": float(owner), "local": float(30 - owner)}
    assert 0 < owner < 30

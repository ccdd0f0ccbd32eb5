"""cem.domain.front: the first copy of an event id wins, held copies included; what the replica answers is routed
at once with the owner's customer; the rest is held, requested once per set, and routed when the replica has the
owner's version; a restarted front routes a replay as first decided and decides what it held anew."""

from __future__ import annotations

from typing import Any

import pytest

from cem.domain.front import Front, Routed
from cem.domain.identity_owner import IdentityOwner, IdentityRequest
from cem.domain.identity_replica import IdentityReplica, identity_changes
from cem.domain.resolver import DAY_MS, ResolverConfig
from tests.unit.factories import MINUTE_MS, NOW_MS, cid, event

EMAIL = ("email", "ana@example.com")
PHONE = ("phone", "+15550100")
WINDOW = 7 * DAY_MS


def owner_answers(front: Front, owner: IdentityOwner, requests: list[IdentityRequest], now_ms: int) -> None:
    front.replica.apply(identity_changes(owner.process(requests, now_ms)))


def test_an_unknown_set_is_held_and_routed_once_the_replica_has_the_owners_version() -> None:
    front, owner = Front(IdentityReplica(), WINDOW), IdentityOwner(ResolverConfig())
    first = event("e1", NOW_MS, [EMAIL])
    step = front.admit(enumerate([first, first, event("e1", NOW_MS, [EMAIL], fingerprint="other")]), NOW_MS)
    assert (step.routed, step.requests) == ([], [IdentityRequest.of(first)])
    assert (step.duplicates, step.conflicting) == (2, [event("e1", NOW_MS, [EMAIL], fingerprint="other")])
    assert front.release() == []  # the owner has not answered yet
    owner_answers(front, owner, step.requests, NOW_MS + 1)
    assert front.release() == [Routed(first, cid("e1"))]
    assert front.release() == [] and front.held == {}
    assert front.admit([(3, first)], NOW_MS + 2).duplicates == 1  # remembered once routed


def test_a_known_set_is_routed_at_once_unless_the_event_is_older_than_its_first() -> None:
    front, owner = Front(IdentityReplica(), WINDOW), IdentityOwner(ResolverConfig())
    owner_answers(front, owner, [IdentityRequest.of(event("e1", NOW_MS, [EMAIL, PHONE]))], NOW_MS)
    later, earlier = event("e2", NOW_MS + MINUTE_MS, [EMAIL, PHONE]), event("e3", NOW_MS - MINUTE_MS, [EMAIL, PHONE])
    step = front.admit(enumerate([later, earlier]), NOW_MS + 1)
    assert step.routed == [Routed(later, cid("e1"))]
    assert step.requests == [IdentityRequest.of(earlier)]  # it moves the set's first event: the owner recomputes
    owner_answers(front, owner, step.requests, NOW_MS + 2)
    customer = owner.graph.customer_of_set(earlier.identifiers)
    assert customer is not None and front.release() == [Routed(earlier, customer)]


def test_a_restarted_front_replays_its_decisions_and_decides_what_it_held_again() -> None:
    store: dict[str, Any] = {}

    def maps(name: str) -> Any:
        return store.setdefault(name, {})

    owner = IdentityOwner(ResolverConfig())
    front = Front(IdentityReplica(), WINDOW, maps)
    routed, held, copy = event("r1", NOW_MS, [PHONE]), event("h1", NOW_MS, [EMAIL]), event("r1", NOW_MS, [PHONE])
    owner_answers(front, owner, [IdentityRequest.of(routed)], NOW_MS)
    step = front.admit([(10, held), (11, routed), (12, copy)], NOW_MS + 1)
    assert ([r.event.event_id for r in step.routed], step.duplicates) == (["r1"], 1)
    assert front.committable(13) == 10  # the held event's offset: it must be read again after a restart
    assert (set(store["seen"]), store["decisions"]) == ({"r1"}, {"r1": (cid("r1"), 11)})

    owner_answers(front, owner, [], NOW_MS + 2)  # a newer replica: the answer would be the same, but is not asked
    restarted = Front(IdentityReplica(), WINDOW, maps)  # what it held, asked and its replica are gone
    again = restarted.admit([(10, held), (11, routed), (12, copy)], NOW_MS + 3)
    assert (again.routed, again.replayed, again.duplicates) == ([Routed(routed, cid("r1"), replay=True)], 1, 1)
    assert again.requests == [IdentityRequest.of(held)]  # decided anew: it was never routed
    assert restarted.committable(13) == 10
    owner_answers(restarted, owner, again.requests, NOW_MS + 4)
    assert restarted.release() == [Routed(held, cid("h1"))]
    assert restarted.committable(13) == 13 and restarted.decisions == {}  # committed past both decisions


def test_a_set_is_asked_once_with_its_earliest_event_until_the_replica_answers_it() -> None:
    front, owner = Front(IdentityReplica(), WINDOW), IdentityOwner(ResolverConfig())
    late, early = event("e2", NOW_MS + MINUTE_MS, [EMAIL]), event("e1", NOW_MS, [EMAIL])
    first = front.admit(enumerate([late, early, event("e3", NOW_MS + 2 * MINUTE_MS, [EMAIL])]), NOW_MS)
    assert first.requests == [IdentityRequest.of(late), IdentityRequest.of(early)]  # an earlier event asks again
    pending = front.admit([(3, event("e4", NOW_MS + 3 * MINUTE_MS, [EMAIL]))], NOW_MS + 1)
    earlier = front.admit([(4, event("e0", NOW_MS - MINUTE_MS, [EMAIL]))], NOW_MS + 2)
    assert (pending.requests, earlier.requests) == ([], [IdentityRequest("e0", NOW_MS - MINUTE_MS, (EMAIL,))])
    owner_answers(front, owner, first.requests + earlier.requests, NOW_MS + 3)
    assert sorted(r.event.event_id for r in front.release()) == ["e0", "e1", "e2", "e3", "e4"]
    assert front.asked == {}
    again = front.admit([(5, event("e5", NOW_MS + 4 * MINUTE_MS, [EMAIL]))], NOW_MS + 4)
    assert (again.requests, [r.event.event_id for r in again.routed]) == ([], ["e5"])


@pytest.mark.parametrize(("held_at", "unsent_from", "next_read", "expected"), [
    (None, None, 9, 9),  # nothing held, everything acknowledged: the next record to read
    (4, None, 9, 4),  # a held event keeps its record to be read again
    (None, 6, 9, 6),  # a routed event Kafka has not acknowledged keeps its record too
    (4, 2, 9, 2),  # unacknowledged older than held: the older wins
    (2, 4, 9, 2),  # held older than unacknowledged
    (3, 3, 9, 3),
])
def test_the_committable_offset_is_the_oldest_record_a_restart_must_read_again(
        held_at: int | None, unsent_from: int | None, next_read: int, expected: int) -> None:
    front, owner = Front(IdentityReplica(), WINDOW), IdentityOwner(ResolverConfig())
    known = event("k0", NOW_MS, [PHONE])
    owner_answers(front, owner, [IdentityRequest.of(known)], NOW_MS)
    batch = [(offset, event(f"r{offset}", NOW_MS, [PHONE])) for offset in range(next_read) if offset != held_at]
    if held_at is not None:
        batch.append((held_at, event("h", NOW_MS, [EMAIL])))
    front.admit(sorted(batch), NOW_MS + 1)
    assert front.committable(next_read if unsent_from is None else unsent_from) == expected
    # the decisions a restart may repeat are kept from there on, and only those
    assert sorted(offset for _, offset in front.decisions.values()) == \
        [o for o in range(expected, next_read) if o != held_at]

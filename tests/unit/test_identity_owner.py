"""cem.domain.identity_owner: the graph's owner writes exactly the identity rows the single resolver writes for
the same events, and a request it already folded in changes nothing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cem.domain.effects import Effects
from cem.domain.identity_outcome import LOCAL
from cem.domain.identity_owner import IdentityOwner, IdentityRequest
from cem.domain.resolver import Resolver, ResolverConfig
from tests.unit.factories import MINUTE_MS, NOW_MS, event
from tests.unit.strategies import NO_GUARDS, TIGHT, Event, event_lists

TYPES = ["customer_ref", "email", "phone", "device_id", "anonymous_id"]


def identity_rows(effects: Effects) -> tuple[object, ...]:
    return (effects.identity_sets, effects.customer_aliases, effects.customers, effects.links, effects.merges,
            effects.refused_merges, effects.unlinked, effects.shared, effects.first_sets, effects.identity_outcomes,
            effects.recomputes)


@settings(max_examples=120, deadline=None)
@given(events=event_lists(TYPES), limits=st.sampled_from([NO_GUARDS, TIGHT]), cut=st.integers(1, 6))
def test_the_owner_writes_the_single_resolvers_identity_rows(events: list[Event], limits: dict[str, int],
                                                             cut: int) -> None:
    config = ResolverConfig(type_limits=limits, shared_weak_threshold=2)
    resolver, owner = Resolver(config), IdentityOwner(config)
    interactions = [event(event_id, NOW_MS + ms * MINUTE_MS, ids) for event_id, ms, ids in events]
    for start in range(0, len(interactions), cut):
        batch = interactions[start:start + cut]
        now_ms = NOW_MS + start
        expected = resolver.process(batch, now_ms)
        got = owner.process([IdentityRequest.of(e) for e in batch], now_ms)
        assert got.version == expected.version
        assert identity_rows(got) == identity_rows(expected)
        assert (got.interactions, got.sessions, got.journeys) == ([], {}, {})  # the customer partitions' work


def test_a_request_folded_in_already_changes_nothing() -> None:
    owner = IdentityOwner(ResolverConfig())
    request = IdentityRequest.of(event("e1", NOW_MS, [("email", "a@x.io"), ("phone", "+15550100")]))
    first = owner.process([request], NOW_MS)
    again = owner.process([request], NOW_MS + 1)
    assert len(first.customers) == 1 and first.identity_outcomes == {"new_customer": 1}
    assert again.identity_outcomes == {LOCAL: 1}
    assert (again.customers, again.identity_sets, again.customer_aliases, again.links) == ([], {}, {}, [])
    assert again.version > first.version

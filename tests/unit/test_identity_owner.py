"""cem.domain.identity_owner: after every batch the graph's owner holds the single resolver's graph and has
published its identifier sets, and a request it already folded in changes nothing."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cem.domain.identity_outcome import LOCAL
from cem.domain.identity_owner import IdentityOwner, IdentityRequest
from cem.domain.resolver import Resolver, ResolverConfig
from tests.unit.factories import MINUTE_MS, NOW_MS, event
from tests.unit.strategies import NO_GUARDS, TIGHT, Event, event_lists

TYPES = ["customer_ref", "email", "phone", "device_id", "anonymous_id"]


@settings(max_examples=150, deadline=None)
@given(events=event_lists(TYPES), limits=st.sampled_from([NO_GUARDS, TIGHT]), cut=st.integers(1, 6),
       order=st.randoms(use_true_random=False))
def test_after_every_batch_the_owner_holds_the_single_resolvers_graph(events: list[Event], limits: dict[str, int],
                                                                      cut: int, order: random.Random) -> None:
    """The owner folds each batch in event time; the single resolver in arrival order. After each batch both
    graphs give every identifier set seen the same customer, and the owner's published sets (the last word for each
    set) are the resolver's."""
    config = ResolverConfig(type_limits=limits, shared_weak_threshold=2)
    resolver, owner = Resolver(config), IdentityOwner(config)
    interactions = [event(event_id, NOW_MS + ms * MINUTE_MS, ids) for event_id, ms, ids in events]
    order.shuffle(interactions)
    published: dict[object, object] = {}
    written: dict[object, object] = {}
    for start in range(0, len(interactions), cut):
        batch = interactions[start:start + cut]
        expected = resolver.process(batch, NOW_MS + start)
        got = owner.process([IdentityRequest.of(e) for e in batch], NOW_MS + start)
        published.update(got.identity_sets)
        written.update(expected.identity_sets)
        assert got.version == expected.version
        assert {e.identifiers: owner.graph.customer_of_set(e.identifiers) for e in interactions[:start + cut]} == \
            {e.identifiers: resolver.graph.customer_of_set(e.identifiers) for e in interactions[:start + cut]}
        assert (got.interactions, got.sessions, got.journeys) == ([], {}, {})  # the customer partitions' work
    assert published == written


def test_a_request_folded_in_already_changes_nothing() -> None:
    owner = IdentityOwner(ResolverConfig())
    request = IdentityRequest.of(event("e1", NOW_MS, [("email", "a@x.io"), ("phone", "+15550100")]))
    first = owner.process([request], NOW_MS)
    again = owner.process([request], NOW_MS + 1)
    assert len(first.customers) == 1 and first.identity_outcomes == {"new_customer": 1}
    assert again.identity_outcomes == {LOCAL: 1}
    assert (again.customers, again.identity_sets, again.customer_aliases, again.links) == ([], {}, {}, [])
    assert again.version > first.version

"""Hypothesis strategies and limits shared by the property tests of the identity graph and of erasure."""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import strategies as st

from cem.domain.model import Identifier

Event = tuple[str, int, tuple[Identifier, ...]]

POOL = {
    "customer_ref": ["r0", "r1", "r2"],
    "email": ["e0", "e1", "e2", "e3"],
    "phone": ["p0", "p1", "p2"],
    "device_id": ["d0", "d1"],
    "anonymous_id": ["a0", "a1", "a2"],
}


def identifier_sets(types: Iterable[str]) -> st.SearchStrategy[tuple[Identifier, ...]]:
    pool = [(t, v) for t in types for v in POOL[t]]
    return st.lists(st.sampled_from(pool), min_size=1, max_size=4).map(lambda ids: tuple(sorted(set(ids))))


def event_lists(types: Iterable[str]) -> st.SearchStrategy[list[Event]]:
    return st.lists(st.tuples(st.integers(0, 6), identifier_sets(list(types))), min_size=1, max_size=24).map(
        lambda items: [(f"ev{i}", ms, ids) for i, (ms, ids) in enumerate(items)]
    )


NO_GUARDS = {t: 1_000_000 for t in POOL}
TIGHT = {"customer_ref": 1, "email": 2, "phone": 2, "device_id": 1, "anonymous_id": 2}

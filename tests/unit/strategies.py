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


WEAK = frozenset({"device_id", "anonymous_id"})


def reference_shared(events: list[Event], limits: dict[str, int], weak: frozenset[str],
                     weak_threshold: int) -> set[Identifier]:
    """Identifiers whose events carry more values of another type than one customer may hold of it. Against a
    person's identifier, a weak type (device or browser id) needs more than `weak_threshold` values too."""
    values_with: dict[Identifier, dict[str, set[str]]] = {}
    for _, _, ids in events:
        for ident in ids:
            for other_type, other_value in ids:
                if other_type != ident[0]:
                    values_with.setdefault(ident, {}).setdefault(other_type, set()).add(other_value)

    def allowed(ident: Identifier, id_type: str) -> int:
        person_seen_with_weak = ident[0] not in weak and id_type in weak
        return max(limits[id_type], weak_threshold) if person_seen_with_weak else limits[id_type]

    return {
        ident for ident, by_type in values_with.items() for id_type, values in by_type.items()
        if id_type in limits and len(values) > allowed(ident, id_type)
    }

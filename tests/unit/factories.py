"""Small builders shared by the unit tests. No I/O."""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence

from cem.domain.model import Identifier, Interaction

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
# 2026-11-16T12:00:00Z, computed with integer arithmetic (no float timestamps).
NOW_MS = calendar.timegm((2026, 11, 16, 12, 0, 0)) * 1000


def event(
    event_id: str,
    occurred_ms: int,
    identifiers: Sequence[Identifier],
    channel: str = "web",
    type: str = "page_view",
    issue_ref: str | None = None,
    fingerprint: str | None = None,
) -> Interaction:
    """A validated Interaction built directly (bypassing the validator), for the stateful core."""
    return Interaction(
        event_id=event_id,
        channel=channel,
        type=type,
        occurred_ms=occurred_ms,
        identifiers=tuple(sorted(identifiers)),
        fingerprint=fingerprint if fingerprint is not None else f"fp-{event_id}",
        issue_ref=issue_ref,
    )


class UnionFind:
    """An independent union-find used as the oracle for identity grouping."""

    def __init__(self) -> None:
        self.parent: dict[object, object] = {}

    def find(self, x: object) -> object:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: object, b: object) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def components(events: Iterable[tuple[str, Iterable[Identifier]]]) -> set[frozenset[str]]:
    """Events sharing an identifier (transitively) form one group: the expected customers."""
    uf = UnionFind()
    ids: list[str] = []
    for event_id, identifiers in events:
        ids.append(event_id)
        uf.find(("event", event_id))
        for ident in identifiers:
            uf.union(("event", event_id), ("id", ident))
    groups: dict[object, set[str]] = {}
    for event_id in ids:
        groups.setdefault(uf.find(("event", event_id)), set()).add(event_id)
    return {frozenset(g) for g in groups.values()}

"""The identity graph's owner in the partitioned design (docs/scaling.md): the one serial step.

Fronts send it only the events their replica could not answer, as lean requests: the event's id, time and
identifier set, which is all the graph reads. It folds them into the graph and returns the batch's identity
rows; sessions, journeys and interaction rows are the customer partitions' work. A
request it already folded in (a re-sent copy, or one a stale replica sent again) changes nothing.

Within a batch it folds the requests in event-time order. Replicas apply a batch whole, so the order inside it is
invisible, and the graph after the batch does not depend on it (the event-time fold); folding in order spares the
recomputes that requests from different fronts, each asking with its own earliest event, would otherwise cause.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cem.domain.effects import Effects, next_version
from cem.domain.identity import EventKey, IdentitySet
from cem.domain.model import Interaction
from cem.domain.resolver import ResolverConfig, attribute_into, identity_graph
from cem.domain.state_maps import MapFactory, in_memory_maps


@dataclass(frozen=True, slots=True)
class IdentityRequest:
    event_id: str
    occurred_ms: int
    identifiers: IdentitySet

    @classmethod
    def of(cls, event: Interaction) -> IdentityRequest:
        return cls(event.event_id, event.occurred_ms, event.identifiers)

    @property
    def key(self) -> EventKey:
        return self.occurred_ms, self.event_id


class IdentityOwner:
    def __init__(self, config: ResolverConfig, maps: MapFactory = in_memory_maps) -> None:
        self.graph = identity_graph(config, maps)
        self.version = 0

    def process(self, requests: Iterable[IdentityRequest], now_ms: int) -> Effects:
        """One owner version: the identity rows of a batch of requests (their `identity_changes` is what the
        replicas apply)."""
        self.version = next_version(self.version, now_ms)
        effects = Effects(self.version)
        for request in sorted(requests, key=lambda r: r.key):
            attribute_into(self.graph, request.event_id, request.occurred_ms, request.identifiers, effects)
        return effects

"""What one batch of a stage adds to the warehouse: the rows, plus counts for the metrics.

The single resolver fills every field. In the partitioned design the graph's owner fills the identity fields and
each customer partition the interactions, sessions and journeys; the writer takes either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cem.domain.identity import Customer, EventKey, IdentitySet, Link, Merge, RefusedMerge
from cem.domain.journeys import JourneyAlias, ServiceJourney, Session, SessionAlias
from cem.domain.model import Identifier, Interaction
from cem.domain.shared import SharedIdentifier


def next_version(previous: int, now_ms: int, after: int = 0) -> int:
    """A stage's next batch version: above its last one and anything it must supersede (`after`), and at least
    the clock in microseconds, so versions written by another process later still sort after."""
    return max(previous + 1, after + 1, now_ms * 1000)


OWN_VERSIONS = 1000  # writers told apart by a version's last digits: as many customer partitions at most


def own_version(version: int, writer: int) -> int:
    """The first version from `version` on that ends in the writer's own digits (`writer` < OWN_VERSIONS): two
    writers of customer partitions (each holding other partitions, named by its lowest) never write at the same
    version, so a batch's mark at a version is that batch's (sinks.writer.PARTITION_MARK)."""
    return version + (writer - version) % OWN_VERSIONS


@dataclass(frozen=True, slots=True)
class ResolvedInteraction:
    interaction: Interaction
    customer_id: str
    session_id: str
    journey_id: str


@dataclass
class Effects:
    """What one batch adds to the warehouse, plus counts for the metrics."""

    version: int
    interactions: list[ResolvedInteraction] = field(default_factory=list)
    customers: list[Customer] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    refused_merges: list[RefusedMerge] = field(default_factory=list)  # merges a guard refused, with the reason
    customer_aliases: dict[str, str] = field(default_factory=dict)  # historical id -> current id
    # identifier set -> (its customer now, its earliest event): how interaction rows find their customer
    identity_sets: dict[IdentitySet, tuple[str, EventKey]] = field(default_factory=dict)
    # identifier sets seen for the first time in this batch: no interaction row of an earlier batch carries them
    first_sets: set[IdentitySet] = field(default_factory=set)
    recomputes: int = 0
    session_aliases: list[SessionAlias] = field(default_factory=list)
    sessions: dict[str, Session] = field(default_factory=dict)  # latest state of each touched session
    journey_aliases: list[JourneyAlias] = field(default_factory=list)
    journeys: dict[str, ServiceJourney] = field(default_factory=dict)  # latest state of each touched journey
    duplicates: int = 0  # natural and conflicting copies of an event_id already processed
    # Copies whose content differs from the first copy (an event_id collision): the first copy wins, these are
    # dead-lettered as duplicate_conflict.
    conflicting: list[Interaction] = field(default_factory=list)
    unlinked: list[tuple[Identifier, str]] = field(default_factory=list)
    shared: list[SharedIdentifier] = field(default_factory=list)  # identifiers newly marked shared
    # Unique events by identity outcome (cem.domain.identity_outcome): "local", or why the graph changed.
    identity_outcomes: dict[str, int] = field(default_factory=dict)
    # Time the identity graph took, split by "owner" (events that changed it) and "local" (events a replica could
    # have answered); empty unless the resolver was given a timer.
    graph_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def conflicts(self) -> int:
        return len(self.conflicting)
